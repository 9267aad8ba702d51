/**
 * The ReFlex paper's QoS experiment on this machine's disk (`npm run bench:qos`):
 * two latency-critical tenants (one read-only, one 80% reads) with IOPS and
 * p95 objectives, and two best-effort tenants pushing as hard as they can
 * (one reading, one writing), with the scheduler off and then on.
 *
 * LC tenants run the C v1 client in open loop (Poisson arrivals, latency
 * from the intended send time); BE tenants run it in closed loop. C, not
 * the Node generator, because all four clients share one core here and the
 * LC sends must leave on time for the client-side p95 to mean anything. Writes results/qos.json and results/qos.svg.
 *
 *   node bench/qos.ts [--model FILE] [--seconds 20] [--reps 1] [--file PATH]
 *                     [--lc1 IOPS:P95US] [--lc2 IOPS:P95US] [--be-conns 2] [--be-qd 64]
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { barChart } from '../src/report/index.ts';
import { loadDeviceModel } from '../src/control/tenants.ts';
import { tokenRateFor } from '../src/qos/device-model.ts';
import { admit, type TenantSpec } from '../src/qos/admission.ts';
import { buildC } from '../test/helpers/build-c.ts';
import { diskIrqCpu } from './lib/cpus.ts';
import { freePort, runCommand, startChild } from './lib/processes.ts';

// The server sits on the CPU that takes the disk's interrupts; the clients on the other.
const SERVER_CPU = diskIrqCpu();
const CLIENT_CPU = SERVER_CPU === 0 ? 1 : 0;

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: path.join(root, 'config/vm-disk.devmodel') },
    seconds: { type: 'string', default: '20' },
    reps: { type: 'string', default: '1' },
    file: { type: 'string', default: path.join(root, 'data/bench/qos.img') },
    size: { type: 'string', default: String(2 * 2 ** 30) },
    lc1: { type: 'string', default: '4000:1000' },
    lc2: { type: 'string', default: '2000:1500' },
    'be-conns': { type: 'string', default: '2' },
    'be-qd': { type: 'string', default: '64' },
  },
});
const seconds = Number(values.seconds);
// BE pressure per tenant (C client, closed loop): connections × depth.
const BE_CONNS = values['be-conns']!;
const BE_QD = values['be-qd']!;
const reps = Number(values.reps);
const fileSize = Number(values.size);
/** Median of the finite values (a run that produced no number is left out). */
const median = (all: number[]): number => {
  const xs = all.filter(Number.isFinite).sort((a, b) => a - b);
  return xs.length === 0 ? NaN : xs[Math.floor(xs.length / 2)];
};

interface TenantPlan {
  name: string;
  class: 'LC' | 'BE';
  readPct: number;
  iops?: number;
  p95Us?: number;
}

const [lc1Iops, lc1P95] = values.lc1!.split(':').map(Number);
const [lc2Iops, lc2P95] = values.lc2!.split(':').map(Number);
const tenants: TenantPlan[] = [
  { name: 'lc-read', class: 'LC', readPct: 100, iops: lc1Iops, p95Us: lc1P95 },
  { name: 'lc-mixed', class: 'LC', readPct: 80, iops: lc2Iops, p95Us: lc2P95 },
  { name: 'be-read', class: 'BE', readPct: 100 },
  { name: 'be-write', class: 'BE', readPct: 0 },
];

// Admission first: an objective the model cannot promise is not worth measuring.
const model = loadDeviceModel(values.model!);
const admitted: TenantSpec[] = [];
for (const t of tenants) {
  const spec: TenantSpec = t.class === 'LC' ? { kind: 'LC', iops: t.iops!, p95Us: t.p95Us!, readPct: t.readPct } : { kind: 'BE' };
  const a = admit(model, spec, admitted);
  if (!a.admitted) {
    console.error(`bench:qos: ${t.name} refused by the device model ${values.model}: ${a.reason}`);
    process.exit(2);
  }
  admitted.push(spec);
}

/** Real blocks, not holes: reads of a sparse file never reach the disk. */
async function prepareFile(file: string): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  if (fs.existsSync(file) && fs.statSync(file).size >= fileSize && fs.statSync(file).blocks * 512 >= fileSize * 0.99) return;
  process.stderr.write(`bench:qos: filling ${file} (${Math.round(fileSize / 2 ** 20)} MiB) with fio\n`);
  await runCommand(['fio', '--name=fill', `--filename=${file}`, '--rw=write', '--bs=1M', `--size=${fileSize}`, '--direct=1', '--ioengine=psync', '--output-format=terse'], null);
}

interface Outcome {
  name: string;
  iops: number;
  /** Client-side, from the intended send time (open loop) or the send (closed loop). */
  p95Us: number;
  p99Us: number;
  /** Server-side (parse to completion: scheduler queue + device): median of the per-second p95s. */
  serverP95Us: number;
  errors: number;
}

interface StatsJson {
  tenants: Array<{ name: string; series: { t: Array<number | null>; p95Us: Array<number | null> } }>;
}

/** Median over the measured window of each tenant's per-second server-side p95. */
async function serverP95(adminPort: number, fromMs: number, toMs: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/api/stats`);
  const stats = (await res.json()) as StatsJson;
  const out = new Map<string, number>();
  for (const t of stats.tenants) {
    const xs: number[] = [];
    t.series.t.forEach((at, i) => {
      const v = t.series.p95Us[i];
      if (at !== null && v !== null && at >= fromMs && at <= toMs) xs.push(v);
    });
    out.set(t.name, xs.length > 0 ? median(xs) : NaN);
  }
  return out;
}

interface ClientResult {
  iops: number;
  p95_us: number;
  p99_us: number;
  errors: number;
}

/** The C client's one JSON line; a run that printed none is left out of the medians. */
function parseClient(name: string, out: string): ClientResult {
  try {
    return JSON.parse(out) as ClientResult;
  } catch {
    process.stderr.write(`bench:qos: ${name}: the C client printed no result (${JSON.stringify(out.slice(0, 80))}); this run is left out\n`);
    return { iops: NaN, p95_us: NaN, p99_us: NaN, errors: 0 };
  }
}

async function runMode(qos: boolean, client: string, file: string): Promise<Outcome[]> {
  const ports: number[] = [];
  for (let i = 0; i < tenants.length; i++) ports.push(await freePort());
  const cfgFile = path.join(root, 'results', `qos-${qos ? 'on' : 'off'}.json`);
  const part = Math.floor(fileSize / tenants.length / 4096) * 4096;
  fs.writeFileSync(
    cfgFile,
    JSON.stringify({
      device: file,
      deviceModel: values.model,
      workers: 1,
      qos,
      persist: false,
      ports: tenants.map((t, i) => ({
        port: ports[i],
        tenant: t.name,
        class: t.class,
        iops: t.iops,
        p95Us: t.p95Us,
        readPct: t.class === 'LC' ? t.readPct : undefined,
        volumeOffset: i * part,
        volumeSize: part,
      })),
    }),
  );
  const adminPort = await freePort();
  const server = await startChild([path.join(root, 'bin/reflex'), 'serve', '--config', cfgFile, '--admin-port', String(adminPort), '--admin-token', 'bench-qos-token-0123456789'], SERVER_CPU, /worker\(s\)/);
  const windowFrom = Date.now() + 4000;
  try {
    const runs = tenants.map(async (t, i): Promise<Outcome> => {
      if (t.class === 'LC') {
        // Open loop in C: punctual Poisson sends on a core shared with the BE clients.
        const out = await runCommand(
          [client, 'open', '127.0.0.1', String(ports[i]), '2', '64', String(seconds), String(part / 512), String(t.readPct), '8', String(t.iops), '3'],
          CLIENT_CPU,
        );
        const r = parseClient(t.name, out);
        return { name: t.name, iops: r.iops, p95Us: r.p95_us, p99Us: r.p99_us, serverP95Us: NaN, errors: r.errors };
      }
      // BE: closed loop, flat out, after the same warm-up.
      await new Promise((r) => setTimeout(r, 3000));
      const out = await runCommand([client, 'load', '127.0.0.1', String(ports[i]), BE_CONNS, BE_QD, String(seconds), String(part / 512), String(t.readPct), '8'], CLIENT_CPU);
      const r = parseClient(t.name, out);
      return { name: t.name, iops: r.iops, p95Us: r.p95_us, p99Us: r.p99_us, serverP95Us: NaN, errors: r.errors };
    });
    const outcomes = await Promise.all(runs);
    const sp95 = await serverP95(adminPort, windowFrom, Date.now() - 1000);
    for (const o of outcomes) o.serverP95Us = sp95.get(o.name) ?? NaN;
    return outcomes;
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  fs.mkdirSync(path.join(root, 'results'), { recursive: true });
  const client = buildC(path.join(root, 'test/interop/v1client.c'), 'v1client');
  await prepareFile(values.file!);
  const modes: Record<'off' | 'on', Outcome[][]> = { off: [], on: [] };
  for (let r = 0; r < reps; r++) {
    for (const mode of ['off', 'on'] as const) {
      process.stderr.write(`bench:qos: repetition ${r + 1}/${reps}, scheduler ${mode} (${seconds + 3} s)\n`);
      modes[mode].push(await runMode(mode === 'on', client, values.file!));
    }
  }
  const summary = (mode: 'off' | 'on'): Outcome[] =>
    tenants.map((t, i) => ({
      name: t.name,
      iops: median(modes[mode].map((run) => run[i].iops)),
      p95Us: median(modes[mode].map((run) => run[i].p95Us)),
      p99Us: median(modes[mode].map((run) => run[i].p99Us)),
      serverP95Us: median(modes[mode].map((run) => run[i].serverP95Us)),
      errors: modes[mode].reduce((a, run) => a + run[i].errors, 0),
    }));
  const off = summary('off');
  const on = summary('on');
  const lines = [
    'p95: client-side (open loop, from the intended send time) / server-side (scheduler queue + device, median of per-second p95s)',
    'tenant      class objective                  | QoS off: IOPS  p95 client/server  met | QoS on: IOPS  p95 client/server  met',
  ];
  // An objective is met when IOPS reach it and the p95 is within it (server-side: what the scheduler controls).
  const verdict = (t: TenantPlan, o: Outcome, p95: number): string => (t.class === 'BE' ? '  -' : o.iops >= t.iops! * 0.95 && p95 <= t.p95Us! ? 'yes' : ' NO');
  tenants.forEach((t, i) => {
    const obj = t.class === 'LC' ? `${t.iops} IOPS p95<=${t.p95Us}µs ${t.readPct}%r` : `best effort ${t.readPct}%r`;
    const cell = (o: Outcome): string => `${String(Math.round(o.iops)).padStart(12)} ${String(Math.round(o.p95Us)).padStart(8)}/${String(Math.round(o.serverP95Us)).padEnd(8)} ${verdict(t, o, o.serverP95Us)}/${verdict(t, o, o.p95Us).trim()}`;
    lines.push(`${t.name.padEnd(11)} ${t.class.padEnd(5)} ${obj.padEnd(26)} | ${cell(off[i])} | ${cell(on[i])}`);
  });
  lines.push('met: server-side verdict / client-side verdict');
  // The other two statements of the issue: equal BE demand gets equal shares,
  // and with demand above the device rate the scheduler issues (nearly) all of it.
  const be = on.filter((_, i) => tenants[i].class === 'BE').map((o) => o.iops);
  const spread = (Math.max(...be) - Math.min(...be)) / Math.max(...be);
  const tokens = (o: Outcome, t: TenantPlan): number => o.iops * ((t.readPct / 100) * model.readCost4k + (1 - t.readPct / 100) * model.writeCost4k);
  const issued = on.reduce((a, o, i) => a + tokens(o, tenants[i]), 0);
  const strictest = Math.min(...tenants.filter((t) => t.class === 'LC').map((t) => t.p95Us!));
  const rate = tokenRateFor(model, strictest, false);
  lines.push(`QoS on: BE shares ${be.map((x) => Math.round(x)).join(' / ')} IOPS (spread ${(spread * 100).toFixed(1)}%, must be <= 10%); issued ${Math.round(issued)} tokens/s = ${((issued / rate) * 100).toFixed(1)}% of the model's ${Math.round(rate)} at p95 ${strictest} µs (must be >= 90%)`);
  console.log(lines.join('\n'));
  fs.writeFileSync(path.join(root, 'results/qos.json'), JSON.stringify({ model: values.model, seconds, reps, tenants, off, on, runs: modes }, null, 2));
  const iopsChart = barChart({
    title: `QoS on this disk: IOPS per tenant (objective for LC), median of ${reps}`,
    xLabel: 'tenant',
    yLabel: 'IOPS',
    categories: tenants.map((t) => t.name),
    series: [
      { name: 'objective', values: tenants.map((t) => t.iops ?? 0) },
      { name: 'QoS off', values: off.map((o) => o.iops) },
      { name: 'QoS on', values: on.map((o) => o.iops) },
    ],
  });
  const p95Chart = barChart({
    title: 'p95 latency per tenant (objective for LC)',
    xLabel: 'tenant',
    yLabel: 'p95 µs',
    yLog: true,
    categories: tenants.map((t) => t.name),
    series: [
      { name: 'objective', values: tenants.map((t) => t.p95Us ?? 0) },
      { name: 'QoS off, client', values: off.map((o) => o.p95Us) },
      { name: 'QoS on, client', values: on.map((o) => o.p95Us) },
      { name: 'QoS off, server', values: off.map((o) => o.serverP95Us) },
      { name: 'QoS on, server', values: on.map((o) => o.serverP95Us) },
    ],
  });
  fs.writeFileSync(path.join(root, 'results/qos-iops.svg'), iopsChart);
  fs.writeFileSync(path.join(root, 'results/qos-p95.svg'), p95Chart);
  console.log('wrote results/qos.json, results/qos-iops.svg, results/qos-p95.svg');
}

await main();
