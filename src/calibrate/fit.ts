/**
 * From sweep measurements to a device model. Pure: numbers in, numbers out.
 *
 * Each sweep point is one open-loop step: a read fraction, a request size,
 * the offered and achieved rate, and the p95 read latency. Points with the
 * same read fraction and size form a *curve* (p95 against load).
 *
 * Write cost. ReFlex's premise is that, once writes are charged the right
 * number of tokens, tail latency depends on the token rate alone, whatever
 * the mix. So the fitted write cost is the one that makes the curves of the
 * different mixes overlap when plotted against weighted IOPS (4 KiB
 * read-equivalents per second): for several p95 levels we find the load at
 * which each curve crosses the level, weight it by the candidate cost, and
 * pick the cost (grid search, log-spaced) that minimizes the spread of the
 * logs of those weighted loads.
 *
 * Token limits. For each p95 limit, the read-only column is the read-only
 * curve's crossing rate; the mixed column is the *lowest* crossing rate
 * among the mixed curves (the model is a promise, so it takes the worst
 * mix). A curve that never reached the limit contributes its saturation
 * rate. Rows are made non-decreasing in the limit and capped by the
 * overall max_token_rate, the highest weighted token rate achieved.
 */
import { PAGE_BYTES, pages4k } from '../qos/cost.ts';
import type { DeviceModel, TokenLimit } from '../qos/device-model.ts';
import { assert } from '../util/assert.ts';

export interface SweepPoint {
  readFraction: number;
  sizeBytes: number;
  targetIops: number;
  /** Achieved requests/s. */
  iops: number;
  /** p95 read latency, µs (for write-only points: the write p95). */
  p95Us: number;
}

export interface Curve {
  readFraction: number;
  sizeBytes: number;
  /** Sorted by offered load; x = achieved IOPS and y = p95 both made non-decreasing. */
  points: { iops: number; p95Us: number }[];
}

export const DEFAULT_READ_COST = 100;

/** Groups points into curves, ordered by offered load, noise flattened into monotone curves. */
export function buildCurves(points: SweepPoint[]): Curve[] {
  const groups = new Map<string, SweepPoint[]>();
  for (const p of points) {
    if (!(Number.isFinite(p.iops) && Number.isFinite(p.p95Us)) || p.iops <= 0 || p.p95Us <= 0) continue;
    const key = `${p.readFraction}/${p.sizeBytes}`;
    let g = groups.get(key);
    if (g === undefined) groups.set(key, (g = []));
    g.push(p);
  }
  const curves: Curve[] = [];
  for (const g of groups.values()) {
    g.sort((a, b) => a.targetIops - b.targetIops);
    dropIsolatedSpikes(g);
    let maxX = 0;
    let maxY = 0;
    // Latency under more load is never really lower, nor throughput under more offered load:
    // a dip is noise, and a running maximum keeps the interpolation single-valued.
    const pts = g.map((p) => {
      maxX = Math.max(maxX, p.iops);
      maxY = Math.max(maxY, p.p95Us);
      return { iops: maxX, p95Us: maxY };
    });
    curves.push({ readFraction: g[0].readFraction, sizeBytes: g[0].sizeBytes, points: pts });
  }
  curves.sort((a, b) => a.sizeBytes - b.sizeBytes || b.readFraction - a.readFraction);
  return curves;
}

/** A step whose p95 is more than this × the lowest p95 at any higher load is a stall, not a trend. */
const SPIKE_FACTOR = 2;

/**
 * Removes, in place, points (sorted by offered load) whose p95 exceeds
 * SPIKE_FACTOR × the lowest p95 measured at a higher load. Tail latency does
 * not fall when load rises, so such a point caught a transient stall (a
 * neighbour's I/O, a host flush, a GC pause); left in, the running maximum
 * below would carry it across the whole curve.
 */
function dropIsolatedSpikes(g: SweepPoint[]): void {
  let laterMin = Infinity;
  const keep: boolean[] = new Array(g.length);
  for (let i = g.length - 1; i >= 0; i--) {
    keep[i] = !(g[i].p95Us > SPIKE_FACTOR * laterMin);
    laterMin = Math.min(laterMin, g[i].p95Us);
  }
  let w = 0;
  for (let i = 0; i < g.length; i++) if (keep[i]) g[w++] = g[i];
  g.length = w;
}

/**
 * The achieved IOPS at which a curve's p95 reaches `levelUs`, interpolated
 * linearly between the two points around it. 0: the curve is above the
 * level from its first point. null: it never reached the level.
 */
export function crossingIops(curve: Curve, levelUs: number): number | null {
  const pts = curve.points;
  if (pts.length === 0) return null;
  if (pts[0].p95Us >= levelUs) return 0;
  for (let i = 1; i < pts.length; i++) {
    const a = pts[i - 1];
    const b = pts[i];
    if (b.p95Us >= levelUs) {
      const f = (levelUs - a.p95Us) / (b.p95Us - a.p95Us);
      return a.iops + f * (b.iops - a.iops);
    }
  }
  return null;
}

/** Tokens for one request of this curve's mix and size, at the given costs. */
export function tokensPerRequest(readFraction: number, sizeBytes: number, readCost4k: number, writeCost4k: number): number {
  return pages4k(sizeBytes) * (readFraction * readCost4k + (1 - readFraction) * writeCost4k);
}

/** Requests/s expressed as 4 KiB read-equivalents per second (tokens / read cost). */
export function weightedIops(iops: number, readFraction: number, sizeBytes: number, readCost4k: number, writeCost4k: number): number {
  return (iops * tokensPerRequest(readFraction, sizeBytes, readCost4k, writeCost4k)) / readCost4k;
}

function saturation(c: Curve): number {
  return c.points.length === 0 ? 0 : c.points[c.points.length - 1].iops;
}

export interface WriteCostFit {
  writeCost4k: number;
  /** Mean variance of log(weighted crossing load) across curves, at the fitted cost. */
  spread: number;
  /** p95 levels used for the fit, µs. */
  levelsUs: number[];
  /** 'overlap': curves crossed common levels; 'saturation': fell back to matching saturation rates. */
  method: 'overlap' | 'saturation' | 'none';
}

function logVariance(xs: number[]): number {
  const ls = xs.map(Math.log);
  const mean = ls.reduce((s, v) => s + v, 0) / ls.length;
  return ls.reduce((s, v) => s + (v - mean) ** 2, 0) / ls.length;
}

/** p95 levels every 4 KiB curve spans: from the highest unloaded p95 to the lowest loaded one. */
export function commonLevels(curves: Curve[], count = 8): number[] {
  if (curves.length < 2) return [];
  let lo = 0;
  let hi = Infinity;
  for (const c of curves) {
    lo = Math.max(lo, c.points[0].p95Us);
    hi = Math.min(hi, c.points[c.points.length - 1].p95Us);
  }
  lo *= 1.05;
  hi *= 0.95;
  if (!(hi > lo)) return [];
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(lo * (hi / lo) ** (count === 1 ? 0.5 : i / (count - 1)));
  return out;
}

/**
 * Fits write_cost_4KB from the 4 KiB curves (see the file comment). The
 * search covers [minCost, maxCost] in steps of 1%.
 */
export function fitWriteCost(points: SweepPoint[], readCost4k = DEFAULT_READ_COST, minCost = readCost4k, maxCost = 100 * readCost4k): WriteCostFit {
  const curves = buildCurves(points).filter((c) => c.sizeBytes === PAGE_BYTES);
  const mixed = curves.filter((c) => c.readFraction < 1);
  if (mixed.length === 0) return { writeCost4k: readCost4k, spread: 0, levelsUs: [], method: 'none' };
  const levels = commonLevels(curves);
  // Per level, each curve's crossing load; only levels with a mixed curve and another curve inform the cost.
  const table: { c: Curve; x: number }[][] = [];
  for (const L of levels) {
    const row: { c: Curve; x: number }[] = [];
    for (const c of curves) {
      const x = crossingIops(c, L);
      if (x !== null && x > 0) row.push({ c, x });
    }
    if (row.length >= 2 && row.some((e) => e.c.readFraction < 1)) table.push(row);
  }
  if (table.length === 0) return { ...saturationFit(curves, readCost4k, minCost, maxCost), levelsUs: [] };
  let best = { w: minCost, spread: Infinity };
  for (let w = minCost; w <= maxCost * 1.0001; w *= 1.01) {
    let total = 0;
    for (const row of table) total += logVariance(row.map((e) => weightedIops(e.x, e.c.readFraction, e.c.sizeBytes, readCost4k, w)));
    const spread = total / table.length;
    if (spread < best.spread) best = { w, spread };
  }
  return { writeCost4k: Math.round(best.w), spread: best.spread, levelsUs: levels, method: 'overlap' };
}

/**
 * Fallback when the curves share no p95 range: the cost at which each mix's
 * saturation rate, weighted, equals the read-only saturation rate (median over mixes).
 */
function saturationFit(curves: Curve[], readCost4k: number, minCost: number, maxCost: number): Omit<WriteCostFit, 'levelsUs'> {
  const ro = curves.find((c) => c.readFraction === 1);
  if (ro === undefined) return { writeCost4k: readCost4k, spread: 0, method: 'none' };
  const s0 = saturation(ro);
  const ws = curves
    .filter((c) => c.readFraction < 1 && saturation(c) > 0)
    .map((c) => (readCost4k * (s0 / saturation(c) - c.readFraction)) / (1 - c.readFraction))
    .sort((a, b) => a - b);
  if (ws.length === 0) return { writeCost4k: readCost4k, spread: 0, method: 'none' };
  const median = ws[Math.floor(ws.length / 2)];
  return { writeCost4k: Math.round(Math.min(maxCost, Math.max(minCost, median))), spread: 0, method: 'saturation' };
}

/** Round p95 limits a model is commonly asked about, µs. */
const CANDIDATE_LEVELS_US = [
  50, 75, 100, 150, 200, 250, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000, 7500, 10_000, 15_000, 20_000,
  30_000, 50_000, 100_000,
];

export interface ModelFit {
  model: DeviceModel;
  writeCost: WriteCostFit;
  /** p95 of the lightest read-only 4 KiB step, µs. */
  unloadedP95Us: number;
  sizes: SizeScaling[];
  curves: Curve[];
}

export interface FitModelOptions {
  readCost4k?: number;
  /** p95 limits for the rows; default: chosen from the unloaded p95. */
  levelsUs?: number[];
  /** Most rows when choosing levels. Default 6. */
  maxRows?: number;
  /** Use this write cost instead of fitting one. */
  writeCost4k?: number;
}

/** Token rate (tokens/s) at which a curve reaches `levelUs`; its saturation rate if it never did. */
function curveRateAt(c: Curve, levelUs: number, readCost4k: number, writeCost4k: number): number {
  const x = crossingIops(c, levelUs) ?? saturation(c);
  return x * tokensPerRequest(c.readFraction, c.sizeBytes, readCost4k, writeCost4k);
}

/** The whole fit: write cost, token limit rows, overall maximum, size scaling. */
export function fitDeviceModel(points: SweepPoint[], opts: FitModelOptions = {}): ModelFit {
  const readCost4k = opts.readCost4k ?? DEFAULT_READ_COST;
  const curves = buildCurves(points);
  const four = curves.filter((c) => c.sizeBytes === PAGE_BYTES);
  const ro = four.find((c) => c.readFraction === 1);
  assert(ro !== undefined, 'fit: the sweep has no read-only 4 KiB curve');
  const mixed = four.filter((c) => c.readFraction < 1);
  const writeCost = opts.writeCost4k !== undefined
    ? { writeCost4k: opts.writeCost4k, spread: 0, levelsUs: [], method: 'none' as const }
    : fitWriteCost(points, readCost4k);
  const w = writeCost.writeCost4k;
  const unloadedP95Us = ro.points[0].p95Us;

  let maxTokenRate = 0;
  for (const c of four) {
    maxTokenRate = Math.max(maxTokenRate, saturation(c) * tokensPerRequest(c.readFraction, c.sizeBytes, readCost4k, w));
  }
  maxTokenRate = Math.round(maxTokenRate);
  assert(maxTokenRate > 0, 'fit: no positive rate measured');

  const rowAt = (L: number): TokenLimit => {
    const rdonly = curveRateAt(ro, L, readCost4k, w);
    const mix = mixed.length === 0 ? rdonly : Math.min(...mixed.map((c) => curveRateAt(c, L, readCost4k, w)));
    return { p95LatencyUs: L, maxTokenRate: mix, maxReadOnlyTokenRate: rdonly };
  };

  const rows: TokenLimit[] = [];
  const maxRows = opts.maxRows ?? 6;
  const levels = opts.levelsUs ?? CANDIDATE_LEVELS_US.filter((L) => L >= 1.5 * unloadedP95Us);
  for (const L of levels) {
    const r = rowAt(L);
    if (!(r.maxTokenRate > 0 && r.maxReadOnlyTokenRate > 0)) continue;
    const prev = rows[rows.length - 1];
    const row: TokenLimit = {
      p95LatencyUs: L,
      maxTokenRate: Math.round(Math.min(maxTokenRate, Math.max(r.maxTokenRate, prev?.maxTokenRate ?? 0))),
      maxReadOnlyTokenRate: Math.round(Math.min(maxTokenRate, Math.max(r.maxReadOnlyTokenRate, prev?.maxReadOnlyTokenRate ?? 0))),
    };
    rows.push(row);
    if (opts.levelsUs === undefined) {
      // Once both columns sit at saturation, looser limits add nothing.
      const satRo = saturation(ro) * readCost4k;
      const satMix = mixed.length === 0 ? satRo : Math.min(...mixed.map((c) => saturation(c) * tokensPerRequest(c.readFraction, c.sizeBytes, readCost4k, w)));
      if ((row.maxReadOnlyTokenRate >= 0.995 * satRo || row.maxReadOnlyTokenRate >= maxTokenRate) && (row.maxTokenRate >= 0.995 * satMix || row.maxTokenRate >= maxTokenRate)) break;
      if (rows.length >= maxRows) break;
    }
  }
  if (rows.length === 0) {
    // Even the loosest level was missed by some mix: promise only the read-only rate at twice the unloaded p95.
    const L = Math.ceil((2 * unloadedP95Us) / 10) * 10;
    const r = rowAt(L);
    const rd = Math.max(1, Math.round(r.maxReadOnlyTokenRate));
    rows.push({ p95LatencyUs: L, maxTokenRate: Math.max(1, Math.round(r.maxTokenRate)), maxReadOnlyTokenRate: rd });
  }

  return {
    model: { readCost4k, writeCost4k: w, maxTokenRate, tokenLimits: rows },
    writeCost,
    unloadedP95Us,
    sizes: sizeScaling(points, readCost4k),
    curves,
  };
}

export interface SizeScaling {
  sizeBytes: number;
  /** Highest achieved read IOPS at this size. */
  saturationIops: number;
  /** saturationIops × the size's token cost. */
  tokenRate: number;
  /** tokenRate / the 4 KiB token rate: near 1 when cost scales linearly with size. */
  relativeTo4k: number;
}

/** Saturation token rate of read-only curves per request size, relative to 4 KiB. */
export function sizeScaling(points: SweepPoint[], readCost4k = DEFAULT_READ_COST): SizeScaling[] {
  const ro = buildCurves(points).filter((c) => c.readFraction === 1);
  const base = ro.find((c) => c.sizeBytes === PAGE_BYTES);
  const baseRate = base === undefined ? NaN : saturation(base) * readCost4k;
  return ro
    .map((c) => {
      const tokenRate = saturation(c) * pages4k(c.sizeBytes) * readCost4k;
      return { sizeBytes: c.sizeBytes, saturationIops: saturation(c), tokenRate, relativeTo4k: tokenRate / baseRate };
    })
    .sort((a, b) => a.sizeBytes - b.sizeBytes);
}
