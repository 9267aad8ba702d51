/**
 * What a calibration leaves behind: the model in both formats, the raw
 * sweep as JSON, and charts. The main chart plots p95 read latency against
 * weighted IOPS (4 KiB read-equivalents/s at the fitted write cost), one
 * curve per mix: if the write cost is right, the curves lie on each other.
 */
import { formatDeviceModelJson, formatDevModel } from '../qos/device-model.ts';
import { barChart } from '../report/bar-chart.ts';
import { lineChart } from '../report/line-chart.ts';
import { mixName, toSweepPoint, type Calibration } from './calibrate.ts';
import { weightedIops } from './fit.ts';

export function overlapChart(c: Calibration, title: string): string {
  const m = c.fit.model;
  const series = c.plan.readFractions.map((r) => ({
    name: mixName(r),
    points: c.steps
      .filter((s) => s.readFraction === r && s.sizeBytes === 4096)
      .map((s): [number, number] => [weightedIops(s.achievedIops, r, 4096, m.readCost4k, m.writeCost4k), toSweepPoint(s).p95Us]),
  }));
  return lineChart({
    title: `${title}: p95 read latency vs weighted IOPS (write cost ${m.writeCost4k / m.readCost4k}× read)`,
    xLabel: 'weighted IOPS (4 KiB read-equivalents/s)',
    yLabel: 'p95 read latency (µs)',
    series,
    yLog: true,
  });
}

export function sizeChart(c: Calibration, title: string): string {
  const sizes = c.fit.sizes;
  return barChart({
    title: `${title}: saturation token rate by read size, relative to 4 KiB`,
    xLabel: 'read size',
    yLabel: 'token rate / 4 KiB token rate',
    categories: sizes.map((s) => `${s.sizeBytes / 1024} KiB`),
    series: [
      { name: 'measured', values: sizes.map((s) => s.relativeTo4k) },
      { name: 'linear cost', values: sizes.map(() => 1) },
    ],
  });
}

export function modelComment(c: Calibration, device: string, direct: boolean): string {
  const f = c.fit;
  const lines = [
    `Calibrated by 'reflex calibrate' on ${device}, ${new Date().toISOString()}.`,
    `Span ${(c.plan.spanBytes / 2 ** 20).toFixed(0)} MiB, ${c.steps.length} steps of ${c.plan.stepMs / 1000} s, ${direct ? 'O_DIRECT' : 'BUFFERED (page cache: not a device measurement)'}.`,
    `Unloaded p95 ${Math.round(f.unloadedP95Us)} us; write cost fitted by ${f.writeCost.method}.`,
    `Size scaling (saturation tokens vs 4 KiB): ${f.sizes.map((s) => `${s.sizeBytes / 1024}K ${s.relativeTo4k.toFixed(2)}`).join(', ')}.`,
  ];
  return lines.join('\n');
}

export function devModelText(c: Calibration, device: string, direct: boolean): string {
  return formatDevModel(c.fit.model, modelComment(c, device, direct));
}

export function modelJsonText(c: Calibration): string {
  return formatDeviceModelJson(c.fit.model);
}

/** The raw sweep: every step, every probe, the fit's intermediate results, and the model. */
export function sweepJsonText(c: Calibration, device: string, direct: boolean): string {
  return JSON.stringify(
    {
      device,
      direct,
      plan: c.plan,
      preconditionMs: Math.round(c.preconditionMs),
      steady: c.steady,
      elapsedMs: Math.round(c.elapsedMs),
      probes: c.probes,
      steps: c.steps,
      fit: { writeCost: c.fit.writeCost, unloadedP95Us: c.fit.unloadedP95Us, sizes: c.fit.sizes, curves: c.fit.curves },
      model: c.fit.model,
    },
    null,
    2,
  ) + '\n';
}
