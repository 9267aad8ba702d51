/**
 * The calibration run: preconditioning, then one sweep per curve (read-only
 * 4 KiB, each read/write mix at 4 KiB, read-only at larger sizes), then the
 * fit. Each curve starts with a short closed-loop probe of its capacity;
 * its open-loop steps are placed at fractions of that capacity and the
 * curve ends once the device stops keeping up (achieved < 90% of the
 * target) or the p95 explodes.
 */
import type { Engine } from '../storage/engine.ts';
import { assert } from '../util/assert.ts';
import { runClosedLoop } from './closed-loop.ts';
import { fitDeviceModel, type ModelFit, type SweepPoint } from './fit.ts';
import { runOpenLoop, type OpenLoopResult } from './open-loop.ts';
import { fillSequential, randomWritesUntilSteady, type Progress } from './precondition.ts';

export interface CalibrationPlan {
  /** Bytes from offset 0 that the sweep touches. */
  spanBytes: number;
  /** Measured length of each open-loop step. */
  stepMs: number;
  /** Unmeasured lead-in of each step. */
  warmupMs: number;
  /** Closed-loop capacity probe per curve. */
  probeMs: number;
  /** Read fractions of the 4 KiB curves; 1 (read-only) must be among them. */
  readFractions: number[];
  /** Extra read-only request sizes for the size-scaling check. */
  sizes: number[];
  /** Load steps as fractions of the probed capacity, 4 KiB curves. */
  ladder: number[];
  /** Load steps for the size curves (only their saturation matters). */
  sizeLadder: number[];
  /** Each step is run this many times; the median (by p95) is kept. */
  repeat: number;
  /** Sequential fill before the sweep. */
  fill: boolean;
  /** Random writes until steady after the fill; 0 = skip. */
  steadyMaxMs: number;
  maxOutstanding: number;
}

/** Full run: about 2-3 minutes on a 2 GiB span. */
export function defaultPlan(spanBytes: number, stepSeconds = 2): CalibrationPlan {
  return {
    spanBytes,
    stepMs: stepSeconds * 1000,
    warmupMs: Math.min(300, stepSeconds * 150),
    probeMs: 1000,
    readFractions: [1, 0.9, 0.7, 0.5],
    sizes: [8192, 16384, 32768],
    ladder: [0.05, 0.2, 0.4, 0.55, 0.7, 0.8, 0.9, 1.0, 1.15],
    sizeLadder: [0.4, 0.8, 1.0, 1.2],
    repeat: 1,
    fill: false,
    steadyMaxMs: 0,
    maxOutstanding: 256,
  };
}

/** Short steps for tests and CI: about 10-20 s in all. */
export function quickPlan(spanBytes: number, stepSeconds = 0.3): CalibrationPlan {
  return {
    ...defaultPlan(spanBytes, stepSeconds),
    warmupMs: 50,
    probeMs: 250,
    ladder: [0.1, 0.5, 0.8, 1.0, 1.2],
    sizeLadder: [0.8, 1.2],
    steadyMaxMs: 0,
  };
}

export interface StepRecord extends OpenLoopResult {
  /** Closed-loop capacity the step's rate was derived from. */
  probedIops: number;
}

export interface Calibration {
  plan: CalibrationPlan;
  steps: StepRecord[];
  probes: { readFraction: number; sizeBytes: number; iops: number }[];
  fit: ModelFit;
  preconditionMs: number;
  steady: boolean | null;
  elapsedMs: number;
}

/** A curve is over when the device no longer keeps up or the tail runs away. */
const KEEP_UP = 0.9;
const P95_EXPLODED = 30;
/** Extra steps (×1.25 each) when the ladder ends before the device saturates. */
const MAX_EXTENSIONS = 3;

export function toSweepPoint(s: OpenLoopResult): SweepPoint {
  const p95 = s.read.count > 0 ? s.read.p95 : s.write.p95;
  return { readFraction: s.readFraction, sizeBytes: s.sizeBytes, targetIops: s.targetIops, iops: s.achievedIops, p95Us: p95 };
}

export function mixName(readFraction: number): string {
  return readFraction === 1 ? 'read-only' : `${Math.round(readFraction * 100)}% reads`;
}

export async function calibrate(engine: Engine, plan: CalibrationPlan, log: Progress): Promise<Calibration> {
  assert(plan.readFractions.includes(1), 'calibration plan needs the read-only curve');
  assert(plan.spanBytes <= engine.size, 'calibration span beyond the device');
  const t0 = performance.now();
  let steady: boolean | null = null;
  if (plan.fill) await fillSequential(engine, plan.spanBytes, log);
  if (plan.steadyMaxMs > 0) steady = (await randomWritesUntilSteady(engine, plan.spanBytes, { maxMs: plan.steadyMaxMs }, log)).steady;
  const preconditionMs = performance.now() - t0;

  const curves = [
    ...plan.readFractions.map((r) => ({ readFraction: r, sizeBytes: 4096, ladder: plan.ladder })),
    ...plan.sizes.map((s) => ({ readFraction: 1, sizeBytes: s, ladder: plan.sizeLadder })),
  ];
  // Planned steps; a curve that saturates early removes its remaining steps, an extension adds one.
  let total = curves.reduce((n, c) => n + c.ladder.length, 0);
  let stepNo = 0;
  const steps: StepRecord[] = [];
  const probes: Calibration['probes'] = [];

  for (const c of curves) {
    const label = `${mixName(c.readFraction)}${c.sizeBytes === 4096 ? '' : ` ${c.sizeBytes / 1024} KiB`}`;
    const probe = await runClosedLoop(engine, {
      qd: 32,
      sizeBytes: c.sizeBytes,
      readFraction: c.readFraction,
      maxMs: plan.probeMs,
      nextOffset: randomOffsets(plan.spanBytes, c.sizeBytes, engine.blockSize),
    });
    if (probe.errors > 0) throw new Error(`calibration: ${probe.errors} requests failed while probing ${label}`);
    probes.push({ readFraction: c.readFraction, sizeBytes: c.sizeBytes, iops: probe.iops });
    log(`probe ${label}: ${Math.round(probe.iops)} IOPS at queue depth 32`);

    let firstP95 = 0;
    const ladder = [...c.ladder];
    for (let i = 0; i < ladder.length; i++) {
      stepNo++;
      const target = Math.max(10, Math.round(ladder[i] * probe.iops));
      const s = await medianStep(engine, plan, c.readFraction, c.sizeBytes, target);
      if (s.errors > 0) throw new Error(`calibration: ${s.errors} requests failed at ${label} ${target} IOPS`);
      steps.push({ ...s, probedIops: probe.iops });
      const p95 = toSweepPoint(s).p95Us;
      if (i === 0) firstP95 = p95;
      log(`[${stepNo}/${total}] ${label} ${target} IOPS: achieved ${Math.round(s.achievedIops)}, p95 ${Math.round(p95)} µs` +
        (s.missed > 0 ? `, ${s.missed} missed` : ''));
      const saturated = s.achievedIops < KEEP_UP * target || p95 > P95_EXPLODED * firstP95;
      if (saturated) {
        total -= ladder.length - 1 - i;
        break;
      }
      // The probe underestimated capacity (open loop can have more in flight): keep climbing a little.
      if (i === ladder.length - 1 && ladder.length < c.ladder.length + MAX_EXTENSIONS) {
        ladder.push(ladder[i] * 1.25);
        total++;
      }
    }
  }

  const fit = fitDeviceModel(steps.map(toSweepPoint));
  return { plan, steps, probes, fit, preconditionMs, steady, elapsedMs: performance.now() - t0 };
}

/** Runs one step `plan.repeat` times and keeps the run with the median p95. */
async function medianStep(engine: Engine, plan: CalibrationPlan, readFraction: number, sizeBytes: number, iops: number): Promise<OpenLoopResult> {
  const runs: OpenLoopResult[] = [];
  for (let k = 0; k < Math.max(1, plan.repeat); k++) {
    runs.push(
      await runOpenLoop(engine, {
        iops,
        durationMs: plan.stepMs,
        warmupMs: plan.warmupMs,
        readFraction,
        sizeBytes,
        spanBytes: plan.spanBytes,
        maxOutstanding: plan.maxOutstanding,
      }),
    );
  }
  runs.sort((a, b) => toSweepPoint(a).p95Us - toSweepPoint(b).p95Us);
  return runs[Math.floor(runs.length / 2)];
}

function randomOffsets(spanBytes: number, sizeBytes: number, blockSize: number): () => number {
  const align = Math.max(4096, blockSize);
  const positions = Math.floor((spanBytes - sizeBytes) / align) + 1;
  assert(positions >= 1, 'span smaller than one request');
  return () => Math.floor(Math.random() * positions) * align;
}
