/**
 * One quick NBD measurement of our server: fio's nbd engine, 4 KiB random
 * reads at the given depth, server pinned to CPU 0 and fio to CPU 1;
 * prints IOPS and IOPS per server core. For A/B checks while tuning:
 *   node bench/lib/nbd-quick.ts QD [SECONDS]
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { processCpuSeconds } from '../../src/loadgen/proc-cpu.ts';
import { freePort, runCommand, startChild } from './processes.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const qd = Number(process.argv[2] ?? 32);
const seconds = Number(process.argv[3] ?? 6);
const port = await freePort();
const nbd = await freePort();
const server = await startChild([process.execPath, path.join(ROOT, 'src/cli/main.ts'), 'serve', '--memory', '1G', '--workers', '1', '--port', String(port), '--nbd-port', String(nbd), '--no-admin', '--no-persist', ...(process.env.QOS ? [] : ['--no-qos']), ...(process.env.COALESCE_US !== undefined ? ['--coalesce-us', process.env.COALESCE_US] : [])], 0, /data-plane worker/);
try {
  const c0 = processCpuSeconds(server.pid);
  const t0 = performance.now();
  const out = await runCommand(['fio', '--name=q', '--ioengine=nbd', `--uri=nbd://127.0.0.1:${nbd}/port-${port}`, '--rw=randread', '--bs=4k', `--iodepth=${qd}`, `--runtime=${seconds}`, '--time_based', '--output-format=json'], 1);
  const wall = (performance.now() - t0) / 1000;
  const cpu = processCpuSeconds(server.pid) - c0;
  const iops = (JSON.parse(out.slice(out.indexOf('{'))) as { jobs: Array<{ read: { iops: number } }> }).jobs[0].read.iops;
  console.log(`qd${qd}: ${Math.round(iops)} IOPS, server CPU ${cpu.toFixed(2)} s over ${wall.toFixed(1)} s, ${Math.round(iops / (cpu / wall))} IOPS per server core`);
} finally {
  await server.stop();
}
