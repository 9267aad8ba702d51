/**
 * `reflex calibrate PATH`: measures a device and writes its device model
 * (ReFlex .devmodel and JSON), the raw sweep, and charts. See
 * src/calibrate/calibrate.ts for the method.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseSize } from '../control/config.ts';
import { calibrate, defaultPlan, quickPlan } from '../calibrate/calibrate.ts';
import { openCalibrationDevice } from '../calibrate/open-device.ts';
import { devModelText, modelJsonText, overlapChart, sizeChart, sweepJsonText } from '../calibrate/outputs.ts';
import { UsageError } from './usage-error.ts';

const HELP = `usage: reflex calibrate PATH [options]

Measures the file or block device PATH and writes a device model: the token
rate it sustains for each p95 read-latency limit, and the write cost.
PATH's contents are overwritten (an existing PATH needs --force).

  --size SIZE          bytes to use from offset 0 (required when PATH is created; default: all of it)
  --precondition       after the sequential fill, random 4 KiB writes until throughput is steady
  --steady-seconds S   time cap for those random writes (default 60; --quick: 3)
  --quick              short steps (tests, CI): about 10-20 s of measuring
  --step-seconds N     measured seconds per load step (default 2; --quick: 0.3)
  --repeat N           run every step N times and keep the median (default 1)
  --engine E           auto | uring | fs (default auto; fs measures the page cache)
  --out FILE           model file (default results/calibration.devmodel); its JSON form goes
                       next to it with the extension .json
  --json FILE          raw sweep JSON (default: FILE.devmodel -> FILE.sweep.json)
  --chart FILE.svg     p95 vs weighted IOPS, one curve per mix (default: next to --out);
                       the size-scaling bar chart goes to FILE-sizes.svg
  --force              allow overwriting an existing PATH
  --quiet              no progress lines
`;

function positiveNumber(flag: string, text: string): number {
  const v = Number(text);
  if (!Number.isFinite(v) || v <= 0) throw new UsageError(`${flag}: expected a positive number, got "${text}"`);
  return v;
}

function sizeFlag(flag: string, text: string): number {
  try {
    return parseSize(text, flag);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** `a/b.devmodel` + suffix -> `a/b` + suffix. */
function sibling(file: string, suffix: string): string {
  return file.replace(/\.devmodel$/, '') + suffix;
}

function write(file: string, text: string): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, text);
}

export async function run(argv: string[]): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: {
        size: { type: 'string' },
        precondition: { type: 'boolean' },
        'steady-seconds': { type: 'string' },
        quick: { type: 'boolean' },
        'step-seconds': { type: 'string' },
        repeat: { type: 'string' },
        engine: { type: 'string' },
        out: { type: 'string' },
        json: { type: 'string' },
        chart: { type: 'string' },
        force: { type: 'boolean' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: true,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError('calibrate: expected exactly one PATH (a file or block device)');
  const target = path.resolve(positionals[0]);
  const quick = values.quick === true;
  const engineKind = values.engine ?? 'auto';
  if (engineKind !== 'auto' && engineKind !== 'uring' && engineKind !== 'fs') throw new UsageError(`--engine: expected auto, uring or fs, got "${engineKind}"`);
  const size = values.size === undefined ? undefined : sizeFlag('--size', values.size);
  if (size !== undefined && size < 1024 * 1024) throw new UsageError('--size: calibrate needs at least 1 MiB');
  const exists = fs.existsSync(target);
  if (exists && values.force !== true) throw new UsageError(`calibrate overwrites ${target}; pass --force to use an existing file or device`);
  if (!exists && size === undefined) throw new UsageError(`${target} does not exist: pass --size to create it`);
  const stepSeconds = values['step-seconds'] === undefined ? undefined : positiveNumber('--step-seconds', values['step-seconds']);
  const repeat = values.repeat === undefined ? 1 : Math.round(positiveNumber('--repeat', values.repeat));
  const steadySeconds = values['steady-seconds'] === undefined ? (quick ? 3 : 60) : positiveNumber('--steady-seconds', values['steady-seconds']);
  const out = values.out ?? path.join('results', 'calibration.devmodel');
  const jsonOut = values.json ?? sibling(out, '.sweep.json');
  const chartOut = values.chart ?? sibling(out, '.svg');
  const sizesChartOut = chartOut.replace(/\.svg$/, '') + '-sizes.svg';
  const modelJsonOut = sibling(out, '.json');
  const log = values.quiet === true ? (): void => {} : (line: string): void => void process.stderr.write(line + '\n');

  const dev = await openCalibrationDevice(target, size === undefined ? { engine: engineKind } : { size, engine: engineKind });
  try {
    const align = Math.max(4096, dev.engine.blockSize);
    const span = Math.floor((size ?? dev.engine.size) / align) * align;
    if (span < 1024 * 1024) throw new UsageError(`${target}: ${dev.engine.size} bytes is too small to calibrate (1 MiB at least)`);
    if (!dev.direct) log(`warning: ${dev.note ?? 'no O_DIRECT'}: reads may be served by the page cache, so the model will not describe the device`);
    const plan = quick ? quickPlan(span, stepSeconds) : defaultPlan(span, stepSeconds);
    plan.repeat = repeat;
    // A created or sparse file must be written first: reads of holes never reach the device.
    plan.fill = values.precondition === true || dev.created || dev.allocatedBytes < 0.9 * span;
    if (plan.fill && values.precondition !== true) log('the span is not fully allocated: filling it first so that reads reach the device');
    plan.steadyMaxMs = values.precondition === true ? steadySeconds * 1000 : 0;
    log(`calibrating ${target} (${dev.engine.name}, ${dev.direct ? 'O_DIRECT' : 'buffered'}), span ${(span / 2 ** 20).toFixed(0)} MiB`);

    const cal = await calibrate(dev.engine, plan, log);
    const name = path.basename(target);
    write(out, devModelText(cal, target, dev.direct));
    write(modelJsonOut, modelJsonText(cal));
    write(jsonOut, sweepJsonText(cal, target, dev.direct));
    write(chartOut, overlapChart(cal, name));
    write(sizesChartOut, sizeChart(cal, name));

    const m = cal.fit.model;
    console.log(`saturation: ${m.maxTokenRate} tokens/s (${Math.round(m.maxTokenRate / m.readCost4k)} 4 KiB reads/s)`);
    console.log(`write cost: ${m.writeCost4k} tokens (${(m.writeCost4k / m.readCost4k).toFixed(1)}× a read; ${cal.fit.writeCost.method} fit)`);
    console.log(`unloaded p95: ${Math.round(cal.fit.unloadedP95Us)} µs`);
    console.log('p95 limit µs  max_token_rate  max_rdonly_token_rate');
    for (const r of m.tokenLimits) console.log(`${String(r.p95LatencyUs).padStart(12)}  ${String(r.maxTokenRate).padStart(14)}  ${String(r.maxReadOnlyTokenRate).padStart(21)}`);
    console.log(`size scaling: ${cal.fit.sizes.map((s) => `${s.sizeBytes / 1024} KiB ${s.relativeTo4k.toFixed(2)}`).join(', ')}`);
    console.log(`wrote ${out}, ${modelJsonOut}, ${jsonOut}, ${chartOut}, ${sizesChartOut} (${(cal.elapsedMs / 1000).toFixed(0)} s)`);
    return 0;
  } finally {
    await dev.engine.close();
  }
}
