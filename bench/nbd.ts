/**
 * NBD front-end benchmark: fio's nbd engine (libnbd), 4 KiB random reads at
 * iodepth 1 and 32, against three servers, each pinned to CPU 0 with fio on
 * CPU 1:
 *   reflex    `reflex serve --memory 1G --workers 1 --nbd-port P`
 *   nbdkit    `nbdkit -f memory 1G` (default thread pool)
 *   qemu-nbd  a 1 GiB raw file (page cache)
 *   node-floor bench/lib/nbd-floor-server.ts: reads answered from a Buffer
 *           with nothing else, the least a Node.js event-loop server can
 *           spend per request (a reference, not a product)
 * Reported per run: IOPS, completion latency p50/p99 (fio JSON), server CPU
 * seconds from /proc/PID/stat (utime + stime, all threads) over the run,
 * and IOPS per server core = IOPS / (CPU seconds / wall seconds). Medians
 * over the repetitions.
 *
 * Writes results/nbd.json and results/nbd.svg.
 * Run: node bench/nbd.ts [--seconds N] [--reps N]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { barChart } from '../src/report/bar-chart.ts';
import { freePort, runCommand } from './lib/processes.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = path.join(ROOT, 'bin/reflex');
const SERVER_CPU = 0;
const CLIENT_CPU = 1;
const CLK_TCK = 100; // Linux USER_HZ: /proc/PID/stat times are in 1/100 s

function argNumber(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} needs a positive number`);
  return v;
}
const SECONDS = argNumber('--seconds', 10);
const REPS = argNumber('--reps', 3);
const DEPTHS = [1, 32];

interface Server {
  name: string;
  pid: number;
  uri: string;
  stop(): Promise<void>;
}

/** Starts `cmd` on SERVER_CPU and waits until the port accepts connections. */
async function startPinned(name: string, cmd: string[], port: number, exportName: string): Promise<Server> {
  const child: ChildProcess = spawn('taskset', ['-c', String(SERVER_CPU), ...cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}: ${err}`);
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name}: port ${port} not open after 30 s: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    name,
    // taskset execs the command, so this is the server's own pid.
    pid: child.pid!,
    uri: `nbd://127.0.0.1:${port}/${exportName}`,
    stop: () =>
      new Promise<void>((done) => {
        if (child.exitCode !== null || child.signalCode !== null) return done();
        const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.once('exit', () => {
          clearTimeout(kill);
          done();
        });
        child.kill('SIGTERM');
      }),
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** utime + stime of every thread of `pid`, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces; fields after ')' are fixed.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

interface FioRead {
  iops: number;
  clat_ns: { percentile?: Record<string, number> };
}

interface Run {
  iops: number;
  p50Us: number;
  p99Us: number;
  serverCpuSec: number;
  wallSec: number;
  iopsPerServerCore: number;
}

async function fio(server: Server, depth: number): Promise<Run> {
  const before = cpuSeconds(server.pid);
  const t0 = performance.now();
  const out = await runCommand([
    'fio', '--name=nbd-randread', '--ioengine=nbd', `--uri=${server.uri}`,
    '--rw=randread', '--bs=4k', '--size=1g', `--iodepth=${depth}`,
    '--time_based', `--runtime=${SECONDS}`, '--ramp_time=1', '--output-format=json',
  ], CLIENT_CPU);
  const wallSec = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(server.pid) - before;
  const job = (JSON.parse(out.slice(out.indexOf('{'))) as { jobs: { error: number; read: FioRead }[] }).jobs[0];
  if (job.error !== 0) throw new Error(`fio error ${job.error} against ${server.name}`);
  const pct = job.read.clat_ns.percentile ?? {};
  // CPU is sampled over fio's whole life (connect, ramp, run); so is the wall time.
  const busyCores = cpu / wallSec;
  return {
    iops: job.read.iops,
    p50Us: (pct['50.000000'] ?? NaN) / 1000,
    p99Us: (pct['99.000000'] ?? NaN) / 1000,
    serverCpuSec: cpu,
    wallSec,
    iopsPerServerCore: busyCores > 0 ? job.read.iops / busyCores : NaN,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

type Starter = () => Promise<Server>;

async function main(): Promise<void> {
  for (const tool of ['fio', 'nbdkit', 'qemu-nbd', 'taskset']) {
    try {
      await runCommand(['sh', '-c', `command -v ${tool}`], null);
    } catch {
      throw new Error(`${tool} is not installed (needs fio, nbdkit, qemu-utils, util-linux)`);
    }
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-bench-nbd-'));
  const image = path.join(tmp, 'qemu.img');
  // Written, not sparse, so qemu-nbd reads data pages like the others read memory.
  await runCommand(['dd', 'if=/dev/zero', `of=${image}`, 'bs=1M', 'count=1024', 'status=none'], null);

  const starters: [string, Starter][] = [
    ['reflex', async () => {
      const port = await freePort();
      return startPinned('reflex', [CLI, 'serve', '--memory', '1G', '--workers', '1', '--port', String(await freePort()), '--nbd-port', String(port), '--no-admin', '--no-persist'], port, '');
    }],
    ['nbdkit', async () => {
      const port = await freePort();
      return startPinned('nbdkit', ['nbdkit', '-f', '-i', '127.0.0.1', '-p', String(port), '--exit-with-parent', 'memory', '1G'], port, '');
    }],
    ['qemu-nbd', async () => {
      const port = await freePort();
      return startPinned('qemu-nbd', ['qemu-nbd', '-f', 'raw', '-b', '127.0.0.1', '-p', String(port), '-t', '-x', 'disk', image], port, 'disk');
    }],
    ['node-floor', async () => {
      const port = await freePort();
      return startPinned('node-floor', [process.execPath, path.join(ROOT, 'bench/lib/nbd-floor-server.ts'), String(port), String(2 ** 30)], port, '');
    }],
  ];

  const results: Record<string, Record<string, { median: Run; runs: Run[] }>> = {};
  try {
    for (const [name, start] of starters) {
      results[name] = {};
      for (const depth of DEPTHS) {
        const runs: Run[] = [];
        for (let rep = 0; rep < REPS; rep++) {
          // A fresh server per run: no state carried over between repetitions.
          const server = await start();
          try {
            runs.push(await fio(server, depth));
          } finally {
            await server.stop();
          }
          const r = runs[runs.length - 1];
          console.log(`${name.padEnd(9)} qd${String(depth).padEnd(3)} rep ${rep + 1}: ${Math.round(r.iops)} IOPS, p50 ${r.p50Us.toFixed(1)} us, p99 ${r.p99Us.toFixed(1)} us, server CPU ${r.serverCpuSec.toFixed(2)} s, ${Math.round(r.iopsPerServerCore)} IOPS/core`);
        }
        const med = (k: keyof Run) => median(runs.map((r) => r[k]));
        results[name][`qd${depth}`] = {
          median: { iops: med('iops'), p50Us: med('p50Us'), p99Us: med('p99Us'), serverCpuSec: med('serverCpuSec'), wallSec: med('wallSec'), iopsPerServerCore: med('iopsPerServerCore') },
          runs,
        };
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  const perCore = (name: string, depth: number): number => results[name][`qd${depth}`].median.iopsPerServerCore;
  const ratio = (depth: number): number => perCore('reflex', depth) / perCore('nbdkit', depth);
  const summary = {
    benchmark: 'nbd',
    description: 'fio nbd engine, 4 KiB random reads, server pinned to CPU 0, fio to CPU 1',
    seconds: SECONDS,
    repetitions: REPS,
    host: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', kernel: os.release() },
    results,
    reflexVsNbdkitIopsPerCore: Object.fromEntries(DEPTHS.map((d) => [`qd${d}`, ratio(d)])),
    // The runtime's ceiling: no Node.js event-loop server can beat node-floor per core.
    nodeFloorVsNbdkitIopsPerCore: Object.fromEntries(DEPTHS.map((d) => [`qd${d}`, perCore('node-floor', d) / perCore('nbdkit', d)])),
    reflexVsNodeFloorIopsPerCore: Object.fromEntries(DEPTHS.map((d) => [`qd${d}`, perCore('reflex', d) / perCore('node-floor', d)])),
    target: 'reflex >= 1.5x nbdkit IOPS per server core',
  };
  fs.mkdirSync(path.join(ROOT, 'results'), { recursive: true });
  fs.writeFileSync(path.join(ROOT, 'results/nbd.json'), JSON.stringify(summary, null, 2) + '\n');

  const names = starters.map(([n]) => n);
  const svg = barChart({
    title: 'NBD, 4 KiB random reads: IOPS per server core (median)',
    xLabel: 'fio iodepth',
    yLabel: 'IOPS per server core',
    categories: DEPTHS.map((d) => `QD${d}`),
    series: names.map((n) => ({ name: n, values: DEPTHS.map((d) => results[n][`qd${d}`].median.iopsPerServerCore) })),
  });
  fs.writeFileSync(path.join(ROOT, 'results/nbd.svg'), svg);
  for (const d of DEPTHS) {
    console.log(
      `QD${d}: IOPS per server core, reflex / nbdkit = ${ratio(d).toFixed(2)}x; node-floor / nbdkit = ${(perCore('node-floor', d) / perCore('nbdkit', d)).toFixed(2)}x; ` +
        `reflex / node-floor = ${(perCore('reflex', d) / perCore('node-floor', d)).toFixed(2)}x`,
    );
  }
  console.log('wrote results/nbd.json and results/nbd.svg');
}

await main();
