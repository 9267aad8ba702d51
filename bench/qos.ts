/**
 * The ReFlex paper's QoS experiment on this machine's disk (`npm run bench:qos`):
 * two latency-critical tenants (one read-only, one 80% reads) with IOPS and
 * p95 objectives, and two best-effort tenants pushing as hard as they can
 * (one reading, one writing), with the scheduler off and then on.
 *
 * LC tenants run the project's open-loop generator (Poisson arrivals,
 * latency from the intended send time); BE tenants run the C v1 client in
 * closed loop. Writes results/qos.json and results/qos.svg.
 *
 *   node bench/qos.ts [--model FILE] [--seconds 20] [--reps 1] [--file PATH]
 *                     [--lc1 IOPS:P95US] [--lc2 IOPS:P95US]
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { barChart } from '../src/report/index.ts';
import { loadDeviceModel } from '../src/control/tenants.ts';
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
  },
});
const seconds = Number(values.seconds);
const reps = Number(values.reps);
const fileSize = Number(values.size);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

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
  p95Us: number;
  p99Us: number;
  errors: number;
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
  const server = await startChild([path.join(root, 'bin/reflex'), 'serve', '--config', cfgFile, '--no-admin'], SERVER_CPU, /worker\(s\)/);
  try {
    const runs = tenants.map(async (t, i): Promise<Outcome> => {
      if (t.class === 'LC') {
        const out = await runCommand(
          [path.join(root, 'bin/reflex'), 'bench', '--port', String(ports[i]), '--iops', String(t.iops), '--read-pct', String(t.readPct), '--conns', '2', '--qd', '64', '--duration', String(seconds), '--warmup', '3', '--json', '--quiet'],
          CLIENT_CPU,
        );
        const row = (JSON.parse(out) as { results: Array<{ achievedIops: number; errors: number; latencyUs: { p95: number; p99: number } }> }).results[0];
        return { name: t.name, iops: row.achievedIops, p95Us: row.latencyUs.p95, p99Us: row.latencyUs.p99, errors: row.errors };
      }
      // BE: closed loop, flat out, after the same warm-up.
      await new Promise((r) => setTimeout(r, 3000));
      // One connection at depth 32 saturates this disk and leaves the LC generators some CPU.
      const out = await runCommand([client, 'load', '127.0.0.1', String(ports[i]), '1', '32', String(seconds), String(part / 512), String(t.readPct), '8'], CLIENT_CPU);
      const r = JSON.parse(out) as { iops: number; p95_us: number; p99_us: number; errors: number };
      return { name: t.name, iops: r.iops, p95Us: r.p95_us, p99Us: r.p99_us, errors: r.errors };
    });
    return await Promise.all(runs);
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
      errors: modes[mode].reduce((a, run) => a + run[i].errors, 0),
    }));
  const off = summary('off');
  const on = summary('on');
  const lines = ['tenant      class objective            | QoS off: IOPS   p95 µs  met | QoS on: IOPS   p95 µs  met'];
  const verdict = (t: TenantPlan, o: Outcome): string => (t.class === 'BE' ? '  -' : o.iops >= t.iops! * 0.95 && o.p95Us <= t.p95Us! ? 'yes' : ' NO');
  tenants.forEach((t, i) => {
    const obj = t.class === 'LC' ? `${t.iops} IOPS p95<=${t.p95Us}µs ${t.readPct}%r` : `best effort ${t.readPct}%r`;
    lines.push(
      `${t.name.padEnd(11)} ${t.class.padEnd(5)} ${obj.padEnd(20)} | ${String(Math.round(off[i].iops)).padStart(12)} ${String(Math.round(off[i].p95Us)).padStart(8)} ${verdict(t, off[i])} | ${String(Math.round(on[i].iops)).padStart(11)} ${String(Math.round(on[i].p95Us)).padStart(8)} ${verdict(t, on[i])}`,
    );
  });
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
      { name: 'QoS off', values: off.map((o) => o.p95Us) },
      { name: 'QoS on', values: on.map((o) => o.p95Us) },
    ],
  });
  fs.writeFileSync(path.join(root, 'results/qos-iops.svg'), iopsChart);
  fs.writeFileSync(path.join(root, 'results/qos-p95.svg'), p95Chart);
  console.log('wrote results/qos.json, results/qos-iops.svg, results/qos-p95.svg');
}

await main();
