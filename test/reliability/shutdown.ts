/**
 * Graceful shutdown of a server process: requests in flight when SIGTERM
 * arrives complete normally; requests sent after it are answered ESHUTDOWN
 * (or find the connection closed); the process exits by itself, with 0.
 *
 * The device is slowed with the fault engine's delay (`faults` in the
 * config), so requests are reliably still in flight when the signal lands.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '../../src/client/index.ts';
import { spawnServer } from './server-process.ts';

export interface ShutdownReport {
  inFlight: number;
  inFlightOk: number;
  inFlightFailed: string[];
  lateRequests: number;
  /** Late requests answered ESHUTDOWN. */
  lateShutdown: number;
  /** Late requests that found the connection closed. */
  lateClosed: number;
  /** Late requests that were served anyway (should be 0). */
  lateServed: number;
  exitCode: number | string;
  exitMs: number;
}

export async function runShutdown(o: { delayUs?: number; inFlight?: number } = {}): Promise<ShutdownReport> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-shutdown-'));
  const config = path.join(dir, 'config.json');
  fs.writeFileSync(config, JSON.stringify({ memory: '64M', workers: 2, persist: false, dataDir: dir, ports: [{ port: 0 }], faults: `delay-us=${o.delayUs ?? 300000}` }));
  const server = await spawnServer(['--config', config, '--no-admin']);
  const report: ShutdownReport = { inFlight: o.inFlight ?? 32, inFlightOk: 0, inFlightFailed: [], lateRequests: 0, lateShutdown: 0, lateClosed: 0, lateServed: 0, exitCode: -1, exitMs: 0 };
  try {
    const c = await connect({ port: server.ports[0], timeoutMs: 20000 });
    const data = Buffer.alloc(4096, 0x77);
    const first = Array.from({ length: report.inFlight }, (_, i) =>
      c.write(i * 4096, data).then(
        () => void report.inFlightOk++,
        (err: { code?: string }) => void report.inFlightFailed.push(String(err.code ?? err)),
      ),
    );
    await new Promise((r) => setTimeout(r, 50)); // on the wire, held by the slow device
    const t0 = performance.now();
    server.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 50)); // the workers are draining now
    const late = Array.from({ length: 8 }, (_, i) =>
      c.read(i * 4096, 4096).then(
        () => void report.lateServed++,
        (err: { code?: string }) => {
          if (err.code === 'ESHUTDOWN') report.lateShutdown++;
          else report.lateClosed++;
        },
      ),
    );
    report.lateRequests = late.length;
    await Promise.all([...first, ...late]);
    c.destroy();
    report.exitCode = await server.exited;
    report.exitMs = performance.now() - t0;
  } finally {
    server.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return report;
}
