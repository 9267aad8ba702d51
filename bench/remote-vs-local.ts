/**
 * Remote ≈ local, measured (`npm run bench:remote-vs-local`).
 *
 * On one file on this machine's disk, with O_DIRECT, 4 KiB random reads at
 * queue depths 1, 8, 32, 128 and 256, and a 70/30 read/write mix at depth 32:
 *
 *   local   `reflex bench --local FILE`: the server's storage engine driven
 *           directly by the load generator (no network);
 *   remote  the same generator through `reflex serve --device FILE --poll`
 *           (one polling worker, as ReFlex polls; QoS off; read buffers
 *           evicted from the CPU caches where --read-cache-evict's default
 *           says so, which the JSON records), the generator on the other CPU;
 *   remote-c  the same server driven by the C v1 client (test/interop/
 *           v1client.c, closed loop): a generator that is not itself the
 *           bottleneck on its core, as an outside C load generator is;
 *   fio     fio's io_uring engine on the same file. Its latency is fio's
 *           total (submission to completion, --lat_percentiles), which is
 *           what our generator measures (issue to completion), not clat.
 *
 * fio, the local run and the server share the CPU that takes the disk's
 * interrupts (found in /proc/interrupts); the generator gets the other.
 *
 * plus a plain TCP ping-pong of the same size in the same run (the network
 * floor for the depth-1 budget). Each point is the median of --reps runs.
 *
 * Saturated IOPS, per path, is the highest median over the read sweep: the
 * plateau of the IOPS curve. A remote path holds some of its requests in
 * the network and the server, so at one depth its device queue is shorter
 * than local's; depth 256 lets both reach the device's plateau. The
 * same-depth ratios are printed too.
 * Writes results/remote-vs-local.json and results/remote-vs-local.svg
 * (p95 latency against IOPS, four curves).
 *
 *   node bench/remote-vs-local.ts [--seconds 8] [--reps 3] [--file PATH] [--size 2G]
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { lineChart } from '../src/report/index.ts';
import { buildC } from '../test/helpers/build-c.ts';
import { processCpuSeconds } from '../src/loadgen/proc-cpu.ts';
import { diskIrqCpu } from './lib/cpus.ts';
import { underHypervisor } from '../src/storage/hypervisor.ts';
import { freePort, runCommand, startChild } from './lib/processes.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NODE = process.execPath;
const CLI = path.join(ROOT, 'src/cli/main.ts');
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '8' },
    reps: { type: 'string', default: '3' },
    file: { type: 'string', default: path.join(ROOT, 'data/bench/remote-vs-local.img') },
    size: { type: 'string', default: String(2 * 2 ** 30) },
    depths: { type: 'string', default: '1,8,32,128,256' },
  },
});
const DEVICE_CPU = diskIrqCpu();
const CLIENT_CPU = DEVICE_CPU === 0 ? 1 : 0;
const SECONDS = Number(values.seconds);
const REPS = Number(values.reps);
const FILE = path.resolve(values.file!);
const SIZE = Number(values.size);
const DEPTHS = values.depths!.split(',').map(Number);

interface Point {
  iops: number;
  p50Us: number;
  p95Us: number;
  p99Us: number;
  serverCpuSec?: number;
}

interface Workload {
  name: string;
  qd: number;
  readPct: number;
}

const WORKLOADS: Workload[] = [...DEPTHS.map((qd) => ({ name: `randread qd${qd}`, qd, readPct: 100 })), { name: 'rw70/30 qd32', qd: 32, readPct: 70 }];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function medianPoint(ps: Point[]): Point {
  const out: Point = { iops: median(ps.map((p) => p.iops)), p50Us: median(ps.map((p) => p.p50Us)), p95Us: median(ps.map((p) => p.p95Us)), p99Us: median(ps.map((p) => p.p99Us)) };
  if (ps[0].serverCpuSec !== undefined) out.serverCpuSec = median(ps.map((p) => p.serverCpuSec!));
  return out;
}

/** Every block written once: reads of holes never reach the disk. */
async function prepare(): Promise<void> {
  fs.mkdirSync(path.dirname(FILE), { recursive: true });
  if (fs.existsSync(FILE) && fs.statSync(FILE).size >= SIZE && fs.statSync(FILE).blocks * 512 >= SIZE * 0.99) return;
  process.stderr.write(`remote-vs-local: filling ${FILE} (${Math.round(SIZE / 2 ** 20)} MiB) with fio\n`);
  await runCommand(['fio', '--name=fill', `--filename=${FILE}`, '--rw=write', '--bs=1M', `--size=${SIZE}`, '--direct=1', '--ioengine=psync', '--output-format=terse'], null);
}

interface BenchJson {
  results: Array<{ achievedIops: number; errors: number; serverCpuSec?: number; latencyUs: { p50: number; p95: number; p99: number } }>;
}

function fromBench(out: string): Point {
  const r = (JSON.parse(out) as BenchJson).results[0];
  if (r.errors > 0) throw new Error(`the load generator saw ${r.errors} errors`);
  const p: Point = { iops: r.achievedIops, p50Us: r.latencyUs.p50, p95Us: r.latencyUs.p95, p99Us: r.latencyUs.p99 };
  if (r.serverCpuSec !== undefined) p.serverCpuSec = r.serverCpuSec;
  return p;
}

const loadArgs = (w: Workload): string[] => ['--qd', String(w.qd), '--conns', '1', '--read-pct', String(w.readPct), '--size', '4096', '--duration', String(SECONDS), '--warmup', '2', '--json', '--quiet'];

async function local(w: Workload): Promise<Point> {
  const out = await runCommand([NODE, CLI, 'bench', '--local', FILE, ...loadArgs(w)], DEVICE_CPU);
  // On the fs engine the local run would read the page cache: no comparison at all.
  const engine = (JSON.parse(out) as { config: { localEngine?: { engine: string; fallbackReason?: string } } }).config.localEngine;
  if (engine?.engine !== 'uring') throw new Error(`the local run did not use io_uring (${engine?.fallbackReason ?? 'unknown engine'})`);
  return fromBench(out);
}

async function remote(w: Workload, port: number, pid: number): Promise<Point> {
  return fromBench(await runCommand([NODE, CLI, 'bench', '--port', String(port), '--server-pid', String(pid), ...loadArgs(w)], CLIENT_CPU));
}

/** The C v1 client against the server: IOPS, send-to-reply latency, server CPU. */
async function remoteC(client: string, w: Workload, port: number, pid: number): Promise<Point> {
  const cpu0 = processCpuSeconds(pid);
  const out = await runCommand([client, 'load', '127.0.0.1', String(port), '1', String(w.qd), String(SECONDS), String(Math.floor(SIZE / 512)), String(w.readPct), '8', '2'], CLIENT_CPU);
  const r = JSON.parse(out) as { iops: number; p50_us: number; p95_us: number; p99_us: number; errors: number };
  if (r.errors > 0) throw new Error(`remote-c ${w.name}: ${r.errors} errors`);
  return { iops: r.iops, p50Us: r.p50_us, p95Us: r.p95_us, p99Us: r.p99_us, serverCpuSec: processCpuSeconds(pid) - cpu0 };
}

async function fio(w: Workload): Promise<Point> {
  const out = await runCommand(
    [
      'fio', '--name=ref', `--filename=${FILE}`, '--ioengine=io_uring', '--direct=1', '--bs=4k', `--size=${SIZE}`,
      w.readPct === 100 ? '--rw=randread' : '--rw=randrw', `--rwmixread=${w.readPct}`, `--iodepth=${w.qd}`,
      '--time_based', `--runtime=${SECONDS}`, '--ramp_time=2', '--norandommap', '--randrepeat=0', '--lat_percentiles=1', '--output-format=json',
    ],
    DEVICE_CPU,
  );
  const job = (JSON.parse(out.slice(out.indexOf('{'))) as { jobs: Array<{ read: FioDir; write: FioDir }> }).jobs[0];
  // Latency is the reads' (what the objectives speak of); IOPS counts both directions.
  const pct = job.read.lat_ns.percentile;
  return { iops: job.read.iops + job.write.iops, p50Us: pct['50.000000'] / 1000, p95Us: pct['95.000000'] / 1000, p99Us: pct['99.000000'] / 1000 };
}

interface FioDir {
  iops: number;
  lat_ns: { percentile: Record<string, number> };
}

async function pingPong(): Promise<Point> {
  const port = await freePort();
  const child = await startChild([NODE, path.join(ROOT, 'bench/lib/pingpong-server.ts'), String(port), '4096'], DEVICE_CPU, /ready/);
  try {
    return fromBench(await runCommand([NODE, CLI, 'bench', '--port', String(port), '--no-hello', '--span', '1G', ...loadArgs({ name: 'pp', qd: 1, readPct: 100 })], CLIENT_CPU));
  } finally {
    await child.stop();
  }
}

async function main(): Promise<void> {
  fs.mkdirSync(path.join(ROOT, 'results'), { recursive: true });
  await prepare();
  const client = buildC(path.join(ROOT, 'test/interop/v1client.c'), 'v1client');
  const runs: Record<string, { local: Point[]; remote: Point[]; remoteC: Point[]; fio: Point[] }> = {};
  const tcp: Point[] = [];
  for (const w of WORKLOADS) runs[w.name] = { local: [], remote: [], remoteC: [], fio: [] };
  for (let rep = 0; rep < REPS; rep++) {
    process.stderr.write(`remote-vs-local: repetition ${rep + 1}/${REPS}\n`);
    tcp.push(await pingPong());
    for (const w of WORKLOADS) {
      runs[w.name].fio.push(await fio(w));
      runs[w.name].local.push(await local(w));
      const port = await freePort();
      const server = await startChild([NODE, CLI, 'serve', '--device', FILE, '--workers', '1', '--port', String(port), '--no-qos', '--no-admin', '--no-persist', '--poll'], DEVICE_CPU, /data-plane worker/);
      try {
        runs[w.name].remote.push(await remote(w, port, server.pid));
        runs[w.name].remoteC.push(await remoteC(client, w, port, server.pid));
      } finally {
        await server.stop();
      }
      const last = (k: 'local' | 'remote' | 'remoteC' | 'fio'): string => `${Math.round(runs[w.name][k].at(-1)!.iops)}`;
      process.stderr.write(`  ${w.name}: fio ${last('fio')}, local ${last('local')}, remote ${last('remote')}, remote-c ${last('remoteC')} IOPS\n`);
    }
  }
  const table: Array<Record<string, unknown>> = [];
  const tcpP50 = median(tcp.map((p) => p.p50Us));
  for (const w of WORKLOADS) {
    const l = medianPoint(runs[w.name].local);
    const r = medianPoint(runs[w.name].remote);
    const f = medianPoint(runs[w.name].fio);
    const rc = medianPoint(runs[w.name].remoteC);
    table.push({ workload: w.name, fio: f, local: l, remote: r, remoteC: rc, localVsFio: l.iops / f.iops, remoteVsLocal: r.iops / l.iops, remoteCVsLocal: rc.iops / l.iops });
  }
  const lines = [
    'remote: the Node generator (the one the local run uses); remote-c: the C v1 client. Latency in µs; fio\'s is submission to completion.',
    'workload         fio IOPS  p50   p95 | local IOPS  p50   p95 | remote IOPS  p50   p95 | remote-c IOPS  p50   p95 | local/fio remote/local remote-c/local',
  ];
  for (const row of table) {
    const f = row.fio as Point;
    const l = row.local as Point;
    const r = row.remote as Point;
    const rc = row.remoteC as Point;
    const c = (p: Point): string => `${String(Math.round(p.iops)).padStart(8)} ${p.p50Us.toFixed(0).padStart(5)} ${p.p95Us.toFixed(0).padStart(5)}`;
    lines.push(
      `${String(row.workload).padEnd(15)} ${c(f)} | ${c(l).padStart(21)} | ${c(r).padStart(22)} | ${c(rc).padStart(24)} | ${(row.localVsFio as number).toFixed(3).padStart(8)} ${(row.remoteVsLocal as number).toFixed(3).padStart(11)} ${(row.remoteCVsLocal as number).toFixed(3).padStart(14)}`,
    );
  }
  const qd1 = table.find((t) => t.workload === 'randread qd1');
  if (qd1) {
    const l = qd1.local as Point;
    const r = qd1.remote as Point;
    lines.push(`depth 1: remote p50 ${r.p50Us.toFixed(1)} µs vs budget local p50 ${l.p50Us.toFixed(1)} + TCP round trip p50 ${tcpP50.toFixed(1)} + 15 = ${(l.p50Us + tcpP50 + 15).toFixed(1)} µs`);
  }
  const reads = table.filter((t) => String(t.workload).startsWith('randread'));
  const saturated = (k: 'fio' | 'local' | 'remote' | 'remoteC'): number => Math.max(...reads.map((t) => (t[k] as Point).iops));
  const sat = { fio: saturated('fio'), local: saturated('local'), remote: saturated('remote'), remoteC: saturated('remoteC') };
  lines.push(
    `saturated (highest median over depths ${DEPTHS.join('/')}): fio ${Math.round(sat.fio)}, local ${Math.round(sat.local)}, remote ${Math.round(sat.remote)}, remote-c ${Math.round(sat.remoteC)} IOPS; ` +
      `local/fio ${(sat.local / sat.fio).toFixed(3)}, remote/local ${(sat.remote / sat.local).toFixed(3)}, remote-c/local ${(sat.remoteC / sat.local).toFixed(3)}`,
  );
  // The spread behind each median: remote runs on a VM disk vary more than local ones.
  for (const t of reads.slice(-2)) {
    const each = (k: 'local' | 'remote' | 'remoteC'): string => runs[String(t.workload)][k].map((p) => Math.round(p.iops / 100) / 10).join('/');
    lines.push(`  ${t.workload} per repetition (K IOPS): local ${each('local')}, remote ${each('remote')}, remote-c ${each('remoteC')}`);
    // Each repetition runs local and remote back to back, so the ratio within
    // a repetition is free of the drift between repetitions.
    const paired = (k: 'remote' | 'remoteC'): number => {
      const rs = runs[String(t.workload)];
      return median(rs[k].map((p, i) => p.iops / rs.local[i].iops));
    };
    lines.push(`  ${t.workload} median of per-repetition ratios: remote/local ${paired('remote').toFixed(3)}, remote-c/local ${paired('remoteC').toFixed(3)}`);
  }
  console.log(lines.join('\n'));
  const curve = (k: 'fio' | 'local' | 'remote' | 'remoteC'): [number, number][] => reads.map((t) => [(t[k] as Point).iops, (t[k] as Point).p95Us]);
  fs.writeFileSync(
    path.join(ROOT, 'results/remote-vs-local.svg'),
    lineChart({
      title: `4 KiB random reads, O_DIRECT, QD ${DEPTHS.join('/')}: p95 against IOPS (median of ${REPS})`,
      xLabel: 'IOPS',
      yLabel: 'p95 latency (µs)',
      yLog: true,
      series: [
        { name: 'fio io_uring', points: curve('fio') },
        { name: 'reflex local engine', points: curve('local') },
        { name: 'reflex remote (1 server core)', points: curve('remote') },
        { name: 'reflex remote, C client', points: curve('remoteC') },
      ],
    }),
  );
  fs.writeFileSync(path.join(ROOT, 'results/remote-vs-local.json'), JSON.stringify({ deviceCpu: DEVICE_CPU, clientCpu: CLIENT_CPU, serverReadCacheEvict: underHypervisor() ? 'auto: on (hypervisor)' : 'auto: off', file: FILE, seconds: SECONDS, reps: REPS, tcpPingPong: { p50Us: tcpP50, runs: tcp }, saturated: sat, table, runs }, null, 2));
  console.log('wrote results/remote-vs-local.json and results/remote-vs-local.svg');
}

await main();
