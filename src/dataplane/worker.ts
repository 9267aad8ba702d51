/**
 * A data-plane worker thread: one engine instance per device, the listeners
 * for every data port (SO_REUSEPORT, so the kernel spreads connections over
 * workers), and request -> gate -> engine -> reply without handing work to
 * another thread.
 *
 * The control plane posts a `PlaneState` after every change; `apply` makes
 * this worker's listeners, tenants, volumes and credentials match it, and
 * closes connections whose tenant or volume went away.
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { parentPort, workerData } from 'node:worker_threads';
import { openEngine } from '../storage/open-engine.ts';
import { Errno } from '../storage/engine.ts';
import { Coalescer, strictestObjective } from './coalescing.ts';
import { countClose, DEVICE_SAMPLE_MS, WorkerField, WorkerStats, type CloseReason } from './worker-stats.ts';
import { sleepUs } from '../util/precise-sleep.ts';
import { reapReady } from '../storage/reap-ready.ts';
import { DataPlane } from './data-plane.ts';
import { stillCovers, stillServes, type ExportedVolume } from './front-end.ts';
import type { NbdConnection } from '../nbd/nbd-connection.ts';
import type { PlaneState } from './plane-state.ts';
import { QosGate } from './qos-gate.ts';
import { ReflexConnection, type Binding } from './reflex-connection.ts';
import { Field, TenantCounters } from './tenant-counters.ts';
import type { WorkerCommand, WorkerInit, WorkerReply } from './worker-messages.ts';

/** NBD's default maximum payload: clients that never ask for block sizes may send this much. */
const NBD_MAX_PAYLOAD = 32 << 20;

/**
 * Reaps per device per polling turn (see reapReady): a full ring of 128
 * takes up to 7 at 20 completions each. The bound keeps a device that
 * completes as fast as it is refilled from starving the sockets.
 */
const REAPS_PER_TURN = 8;

interface DeviceRuntime {
  plane: DataPlane;
  gate: QosGate | null;
}

async function main(init: WorkerInit): Promise<void> {
  const port = parentPort!;
  const counters = new TenantCounters(init.countersSab, init.tenantCapacity, init.workerCount, init.workerIndex);
  const devices: DeviceRuntime[] = [];
  const engineNames: string[] = [];
  let fallbackReason: string | undefined;
  for (const d of init.devices) {
    const opened = await openEngine(d.spec, { memoryStore: d.memoryStore, engine: init.engine, faults: init.faults ?? undefined, queueDepth: init.queueDepth, evictReadBuffers: init.evictReadBuffers });
    fallbackReason ??= opened.fallbackReason;
    engineNames.push(opened.engine.name);
    const plane = new DataPlane(opened.engine, counters);
    let gate: QosGate | null = null;
    if (d.qos !== null) {
      gate = new QosGate({
        cost: { readCost4k: d.qos.readCost4k, writeCost4k: d.qos.writeCost4k },
        bucket: d.qos.bucket,
        workerIndex: init.workerIndex,
        nowMs: performance.now(),
      });
      plane.gate = gate;
    }
    devices.push({ plane, gate });
  }
  const home = devices[0].plane;
  let coalescer: Coalescer | null = null;
  // This worker's row of shared counters (coalescing, connections).
  const stats = new WorkerStats(init.workerStatsSab, init.workerCount).row(init.workerIndex);
  /**
   * Counts a data connection's end; while draining, the server ended it.
   * Once drained, the connections still open are counted at once as ended
   * by shutdown (the thread is terminated before their sockets report it).
   */
  let counting = true;
  const closed = (reason: CloseReason): void => {
    if (counting) countClose(stats, draining && reason === 'peer' ? 'shutdown' : reason);
  };
  // Receive coalescing, one per worker, shared by its planes; never while polling.
  if (init.coalesceUs > 0 && !init.poll && sleepUs !== null) {
    coalescer = new Coalescer(init.coalesceUs, sleepUs, stats);
    for (const d of devices) d.plane.coalescer = coalescer;
  }

  let state: PlaneState = { tenants: [], volumes: [], credentials: [], ports: [] };
  const tenantDevice = new Map<number, number>();
  const secrets = new Map<number, string>();
  const volumes = new Map<string, ExportedVolume>();
  const tenantByName = new Map<string, number>();
  const conns = new Set<ReflexConnection>();
  const nbdConns = new Set<NbdConnection>();
  const sockets = new Set<net.Socket>();
  const listeners = new Map<number, net.Server>();
  let draining = false;

  const rebalance = (): void => {
    for (const d of devices) d.gate?.rebalance((t) => counters.local(t, Field.CONNECTIONS), (t) => counters.total(t, Field.CONNECTIONS), init.workerCount);
  };
  // Other workers' connection counts change too: follow them.
  setInterval(rebalance, 10).unref();
  // Queue depth per tenant, for metrics.
  setInterval(() => {
    for (const t of state.tenants) counters.set(t.id, Field.QUEUED, devices[t.device]?.gate?.queuedOf(t.id) ?? 0);
  }, 250).unref();

  const bindingFor = (tenant: number, volumeName: string): Binding | null => {
    const v = volumes.get(volumeName);
    const dev = tenantDevice.get(tenant);
    if (v === undefined || dev === undefined || v.tenant !== tenant) return null;
    return { tenant, volume: { name: v.name, offset: v.offset, size: v.size }, plane: devices[dev].plane };
  };

  const pemTls = init.tls ? { cert: fs.readFileSync(init.tls.cert), key: fs.readFileSync(init.tls.key) } : null;
  const nbdTls = pemTls ? tls.createSecureContext(pemTls) : null;
  // TLS 1.3 only: its PSK handshake needs no certificate and keeps forward secrecy (psk_dhe_ke).
  const pskTls = tls.createSecureContext({ minVersion: 'TLSv1.3' });
  // allowHalfOpen: a client that half-closes still gets the replies it is
  // owed; the connections end the socket themselves once those are out
  // (Node's default would end it at once, and later replies would be lost).
  const makeServer = (onSocket: (s: net.Socket) => void): net.Server =>
    pemTls ? tls.createServer({ ...pemTls, allowHalfOpen: true }, onSocket) : net.createServer({ noDelay: true, allowHalfOpen: true }, onSocket);

  const listen = (server: net.Server, p: number): Promise<number> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: p, host: init.host, reusePort: true, backlog: 4096 }, () => {
        server.off('error', reject);
        resolve((server.address() as net.AddressInfo).port);
      });
    });

  const accept = (socket: net.Socket, fixed: { tenant: number; volume: string } | null): void => {
    sockets.add(socket);
    const binding = fixed === null ? null : bindingFor(fixed.tenant, fixed.volume);
    if (fixed !== null && binding === null) {
      sockets.delete(socket);
      socket.destroy();
      return;
    }
    let self: ReflexConnection | null = null;
    stats[WorkerField.CONNECTIONS_OPENED]++;
    self = new ReflexConnection(socket, {
      binding,
      home,
      sectorSize: init.sectorSize,
      maxRequestBytes: init.maxRequestBytes,
      maxOutstanding: init.maxOutstanding,
      lookup: (tenantName, volumeName) => {
        const id = tenantByName.get(tenantName);
        if (id === undefined) return null;
        const secret = secrets.get(id);
        const b = bindingFor(id, volumeName);
        return secret === undefined || b === null ? null : { binding: b, secret };
      },
      onBind: (c, b) => {
        if (b === null) conns.delete(c);
        else conns.add(c);
        rebalance();
      },
      onClose: (reason) => {
        sockets.delete(socket);
        if (self !== null) conns.delete(self);
        closed(reason);
      },
      isDraining: () => draining,
    });
  };

  /** Makes listeners, tenants, volumes and credentials match the control plane's state. */
  const apply = async (next: PlaneState): Promise<string[]> => {
    const problems: string[] = [];
    state = next;
    coalescer?.policy.setStrictestObjective(strictestObjective(next.tenants));
    tenantDevice.clear();
    tenantByName.clear();
    for (const t of next.tenants) {
      tenantDevice.set(t.id, t.device);
      tenantByName.set(t.name, t.id);
    }
    secrets.clear();
    for (const c of next.credentials) secrets.set(c.tenant, c.secret);
    volumes.clear();
    for (const v of next.volumes) volumes.set(v.name, { name: v.name, tenant: v.owner, offset: v.offset, size: v.size, plane: devices[v.device].plane });
    devices.forEach((d, i) => {
      if (d.gate === null) return;
      const orphans = d.gate.sync(next.tenants.filter((t) => t.device === i).map((t) => ({ id: t.id, kind: t.kind, rate: t.rate })));
      for (const r of orphans) {
        r.result = Errno.ECANCELED;
        d.plane.engine.onComplete(r);
      }
    });
    rebalance();
    // Connections whose tenant or volume is gone, moved or shrunk lose their
    // access; native connections to a grown volume reach the new range at
    // once (and are told, if they asked). NBD clients learn sizes only when
    // negotiating, so theirs keep the size they negotiated.
    const revoked: Array<{ readonly inFlight: number }> = [];
    for (const c of [...conns]) {
      const b = c.boundTo;
      if (b === null) continue;
      const now = bindingFor(b.tenant, b.volume.name);
      if (now === null || now.plane !== b.plane || !stillCovers(b.volume, now.volume)) {
        c.revoke();
        revoked.push(c);
      } else if (now.volume.size > b.volume.size) c.grown(now);
    }
    for (const c of [...nbdConns]) {
      const v = c.boundVolume;
      if (v === null) continue;
      const kept = stillServes(v, volumes.get(v.name)) && tenantDevice.has(v.tenant);
      // A tenant that now has a credential is reachable only by sessions that proved it.
      if (!kept || (secrets.has(v.tenant) && c.authTenant !== v.tenant)) {
        c.revoke();
        revoked.push(c);
      }
    }
    // v1 ports: open new ones, close the ones no longer bound.
    const wanted = new Map(next.ports.map((p) => [p.port, p]));
    for (const [p, server] of listeners) {
      if (!wanted.has(p)) {
        server.close();
        listeners.delete(p);
      }
    }
    for (const p of next.ports) {
      if (listeners.has(p.port)) continue;
      const fixed = { tenant: p.tenant, volume: p.volume };
      const server = makeServer((s) => accept(s, fixed));
      try {
        await listen(server, p.port);
        listeners.set(p.port, server);
      } catch (err) {
        problems.push(`port ${p.port}: ${(err as Error).message}`);
      }
    }
    // v1 connections on a port that now names another tenant or volume keep their old binding until they reconnect.
    // The control plane zeroes a freed range once every worker has applied
    // the change: requests the cut connections still have queued or at the
    // device must land first, or one could write into the range after its
    // zeroing, where the next volume would find it.
    if (!(await settle(() => revoked.some((c) => c.inFlight > 0), REVOKE_SETTLE_MS))) {
      console.warn(`reflex: requests of cut connections still in flight after ${REVOKE_SETTLE_MS} ms; freed ranges are zeroed anyway`);
    }
    return problems;
  };

  const extra: net.Server[] = [];
  let attachPort: number | null = null;
  if (init.attachPort !== null) {
    const server = makeServer((s) => accept(s, null));
    attachPort = await listen(server, init.attachPort);
    extra.push(server);
  }

  // The NBD front end: same planes, same tenants; the export name picks the volume.
  let nbdPort: number | null = null;
  if (init.nbdPort !== null) {
    const { NbdConnection } = await import('../nbd/nbd-connection.ts');
    // NBD negotiates TLS in-band (STARTTLS), so its listener is plain TCP.
    const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
      sockets.add(socket);
      stats[WorkerField.CONNECTIONS_OPENED]++;
      const conn: NbdConnection = new NbdConnection(socket, {
        plane: home,
        tls: nbdTls,
        pskTls,
        credentials: secrets,
        tenantByName,
        volumes,
        maxRequestBytes: NBD_MAX_PAYLOAD,
        maxOutstanding: init.maxOutstanding,
        handshakeTimeoutMs: init.nbdHandshakeTimeoutMs,
        isDraining: () => draining,
        onClose: (reason) => {
          sockets.delete(socket);
          nbdConns.delete(conn);
          closed(reason);
          rebalance();
        },
        onAttach: () => rebalance(),
      });
      nbdConns.add(conn);
    });
    nbdPort = await listen(server, init.nbdPort);
    extra.push(server);
  }

  const problems = await apply(init.state);
  if (problems.length > 0) throw new Error(problems.join('; '));

  port.on('message', async (msg: WorkerCommand) => {
    if (msg.type === 'state') {
      const reply: WorkerReply = { type: 'applied', seq: msg.seq, problems: await apply(msg.state) };
      port.postMessage(reply);
      return;
    }
    if (msg.type === 'zero') {
      const d = devices[msg.device];
      const error = d === undefined ? Errno.EINVAL : await d.plane.zeroRange(msg.offset, msg.length);
      const reply: WorkerReply = { type: 'zeroed', seq: msg.seq, error };
      port.postMessage(reply);
      return;
    }
    if (msg.type === 'drain') {
      // Stop accepting, answer new requests with ESHUTDOWN, let in-flight ones finish.
      draining = true;
      for (const s of [...listeners.values(), ...extra]) s.close();
      const inFlight = (): number => devices.reduce((a, d) => a + d.plane.engine.inFlight + (d.gate?.queued ?? 0), 0);
      await settle(() => inFlight() > 0, msg.timeoutMs);
      // Let the last replies reach their sockets before closing them.
      await new Promise((r) => setImmediate(r));
      for (const s of sockets) s.end();
      counting = false;
      for (let i = 0; i < sockets.size; i++) countClose(stats, 'shutdown');
      for (const d of devices) {
        d.plane.closing = true;
        await d.plane.engine.close();
      }
      stats[WorkerField.DEVICE_IN_FLIGHT] = 0;
      stats[WorkerField.DEVICE_AWAITING_SLOT] = 0;
      const reply: WorkerReply = { type: 'drained' };
      port.postMessage(reply);
    }
  });
  if (init.poll) {
    // Polling, as ReFlex does: the loop never blocks in epoll, so neither a
    // request nor a disk completion waits for the CPU to wake from idle
    // (tens of µs on a VM). Each turn polls the sockets (epoll with a zero
    // timeout) and takes completions straight from each ring, so the
    // kernel need not signal an eventfd for them; when polling stops
    // (drain) the eventfd takes over again.
    const engines = devices.map((d) => d.plane.engine).filter((e) => e.reap !== undefined && e.setEventLoopNotify !== undefined);
    for (const e of engines) e.setEventLoopNotify!(false);
    // A polling worker has the CPU to spare for one io_uring_enter per
    // request, and the device sees requests trickle in as from fio, not in
    // plugged clumps of a socket read's worth (see Engine.setSubmitEach).
    if (!init.submitBatch) for (const e of engines) e.setSubmitEach?.(true);
    // kick() after each reap: a completion frees a ring slot that the
    // engine refills from its overflow queue, and that refill must go in
    // now (while draining, nothing else would ever submit it).
    const spin = (): void => {
      if (draining) {
        // Completions already in the queue do not signal the eventfd once
        // it is back on: take them all (reap gives one batch per call).
        for (const e of engines) {
          e.setEventLoopNotify!(true);
          let got: number;
          do {
            got = e.reap!(0);
            e.kick();
          } while (got > 0);
        }
        return;
      }
      for (let i = 0; i < engines.length; i++) reapReady(engines[i], REAPS_PER_TURN);
      setImmediate(spin);
    };
    setImmediate(spin);
  }
  // Device gauges for /metrics: what the rings hold, and what waits for a slot.
  const sampleDevices = (): void => {
    let at = 0;
    let waiting = 0;
    for (const d of devices) {
      const e = d.plane.engine;
      const w = e.awaitingSlot ?? 0;
      at += e.inFlight - w;
      waiting += w;
    }
    stats[WorkerField.DEVICE_IN_FLIGHT] = at;
    stats[WorkerField.DEVICE_AWAITING_SLOT] = waiting;
  };
  setInterval(sampleDevices, DEVICE_SAMPLE_MS).unref();
  const queueDepths = devices.map((d) => d.plane.engine.queueDepth ?? null);
  const ready: WorkerReply = { type: 'ready', nbdPort, attachPort, engines: engineNames, queueDepths, fallbackReason };
  port.postMessage(ready);
}


/** Polls until `busy()` turns false or `ms` pass; true when it turned false. */
async function settle(busy: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (busy() && Date.now() < until) await new Promise((r) => setTimeout(r, 2));
  return !busy();
}

/** How long applying a change waits for the requests of the connections it cut. */
const REVOKE_SETTLE_MS = 30_000;

main(workerData as WorkerInit).catch((err: Error) => {
  const reply: WorkerReply = { type: 'failed', message: err.message };
  parentPort!.postMessage(reply);
});
