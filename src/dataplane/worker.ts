/**
 * A data-plane worker thread: it owns one engine instance, listens on every
 * configured port itself (SO_REUSEPORT, so the kernel spreads connections
 * over workers), and runs request -> gate -> engine -> reply without handing
 * work to another thread.
 */
import net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import type { PortBinding } from '../control/config.ts';
import { openEngine } from '../storage/open-engine.ts';
import { DataPlane } from './data-plane.ts';
import { QosGate } from './qos-gate.ts';
import { ReflexConnection } from './reflex-connection.ts';
import { Field, TenantCounters } from './tenant-counters.ts';
import type { ExportedVolume } from './front-end.ts';
import type { WorkerInit, WorkerReply, WorkerCommand } from './worker-messages.ts';

/** NBD's default maximum payload: clients that never ask for block sizes may send this much. */
const NBD_MAX_PAYLOAD = 32 << 20;

async function main(init: WorkerInit): Promise<void> {
  const port = parentPort!;
  const { engine, fallbackReason } = await openEngine(init.device, { memoryStore: init.memoryStore, engine: init.engine });
  const counters = new TenantCounters(init.countersSab, init.bindings.length, init.workerCount, init.workerIndex);
  const plane = new DataPlane(engine, counters);
  let gate: QosGate | null = null;
  const rebalance = (): void => {
    gate?.rebalance(
      (t) => counters.local(t, Field.CONNECTIONS),
      (t) => counters.total(t, Field.CONNECTIONS),
      init.workerCount,
    );
  };
  if (init.qos !== null) {
    gate = new QosGate({
      cost: { readCost4k: init.qos.readCost4k, writeCost4k: init.qos.writeCost4k },
      bucket: init.qos.bucket,
      workerIndex: init.workerIndex,
      tenants: init.qos.tenants,
      nowMs: performance.now(),
    });
    plane.gate = gate;
    rebalance();
    // Other workers' connection counts change too: follow them.
    setInterval(rebalance, 10).unref();
  }
  const sockets = new Set<net.Socket>();
  let draining = false;
  const servers: net.Server[] = [];

  const listenOne = (binding: PortBinding, tenant: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const server = net.createServer({ noDelay: true }, (socket) => {
        sockets.add(socket);
        new ReflexConnection(socket, {
          plane,
          tenant,
          volume: binding.volume,
          sectorSize: init.sectorSize,
          maxRequestBytes: init.maxRequestBytes,
          maxOutstanding: init.maxOutstanding,
          onClose: () => {
            sockets.delete(socket);
            rebalance();
          },
          isDraining: () => draining,
        });
        rebalance();
      });
      server.once('error', reject);
      server.listen({ port: binding.port, host: init.host, reusePort: true, backlog: 4096 }, () => {
        server.off('error', reject);
        servers.push(server);
        resolve((server.address() as net.AddressInfo).port);
      });
    });

  const ports: number[] = [];
  for (let i = 0; i < init.bindings.length; i++) ports.push(await listenOne(init.bindings[i], i));

  // The NBD front end: same plane, same tenants; the export name picks the volume.
  let nbdPort: number | null = null;
  if (init.nbdPort !== null) {
    const { NbdConnection } = await import('../nbd/nbd-connection.ts');
    const volumes = new Map<string, ExportedVolume>();
    init.bindings.forEach((b, i) => volumes.set(b.tenant.name, { name: b.tenant.name, tenant: i, offset: b.volume.offset, size: b.volume.size }));
    const server = net.createServer({ noDelay: true }, (socket) => {
      sockets.add(socket);
      new NbdConnection(socket, {
        plane,
        volumes,
        maxRequestBytes: NBD_MAX_PAYLOAD,
        maxOutstanding: init.maxOutstanding,
        isDraining: () => draining,
        onClose: () => {
          sockets.delete(socket);
          rebalance();
        },
        onAttach: () => rebalance(),
      });
    });
    nbdPort = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: init.nbdPort!, host: init.host, reusePort: true, backlog: 4096 }, () => {
        server.off('error', reject);
        servers.push(server);
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  port.on('message', async (msg: WorkerCommand) => {
    if (msg.type === 'rates') {
      gate?.setRates(msg.rates);
      rebalance();
      return;
    }
    if (msg.type === 'drain') {
      // Stop accepting, answer new requests with ESHUTDOWN, let in-flight ones finish.
      draining = true;
      for (const s of servers) s.close();
      const deadline = Date.now() + msg.timeoutMs;
      while (engine.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      for (const s of sockets) s.end();
      await engine.close();
      const reply: WorkerReply = { type: 'drained' };
      port.postMessage(reply);
    }
  });
  const ready: WorkerReply = { type: 'ready', ports, nbdPort, engine: engine.name, size: engine.size, fallbackReason };
  port.postMessage(ready);
}

main(workerData as WorkerInit).catch((err: Error) => {
  const reply: WorkerReply = { type: 'failed', message: err.message };
  parentPort!.postMessage(reply);
});
