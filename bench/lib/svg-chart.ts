/**
 * A small SVG chart writer for benchmark results: grouped bar charts and
 * line charts of named (x, y) series, linear or log axes, with ticks,
 * labels and a legend. No dependencies; output is a standalone SVG string.
 */

export interface Series {
  name: string;
  points: Array<[number, number]>;
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  yLog?: boolean;
  series: Series[];
  width?: number;
  height?: number;
}

export interface BarChart {
  title: string;
  yLabel: string;
  /** Category labels along x. */
  categories: string[];
  /** One bar per category per series (grouped). */
  series: Array<{ name: string; values: number[] }>;
  width?: number;
  height?: number;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
const M = { left: 70, right: 20, top: 40, bottom: 60 };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}K`;
  return String(+v.toPrecision(3));
}

/** Axis mapping plus tick positions for a value range. */
interface Axis {
  map(v: number): number;
  ticks: number[];
}

function linearAxis(min: number, max: number, from: number, to: number): Axis {
  if (max <= min) max = min + 1;
  const raw = (max - min) / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let v = lo; v <= hi + step / 2; v += step) ticks.push(+v.toPrecision(12));
  return { map: (v) => from + ((v - lo) / (hi - lo)) * (to - from), ticks };
}

function logAxis(min: number, max: number, from: number, to: number): Axis {
  const lo = Math.floor(Math.log10(Math.max(min, 1e-12)));
  let hi = Math.ceil(Math.log10(Math.max(max, 1e-12)));
  if (hi === lo) hi = lo + 1;
  const ticks: number[] = [];
  for (let e = lo; e <= hi; e++) ticks.push(10 ** e);
  return { map: (v) => from + ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * (to - from), ticks };
}

function frame(w: number, h: number, title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="${w}" height="${h}" fill="white"/>`,
    `<text x="${w / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

function legend(names: string[], x: number, y: number): string[] {
  return names.flatMap((n, i) => [
    `<rect x="${x}" y="${y + i * 18 - 10}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/>`,
    `<text x="${x + 18}" y="${y + i * 18}">${esc(n)}</text>`,
  ]);
}

function yAxis(axis: Axis, x0: number, x1: number, label: string, h: number): string[] {
  const out: string[] = [];
  for (const t of axis.ticks) {
    const y = axis.map(t).toFixed(1);
    out.push(`<line x1="${x0}" y1="${y}" x2="${x1}" y2="${y}" stroke="#ddd"/>`);
    out.push(`<text x="${x0 - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`);
  }
  out.push(`<text transform="translate(16 ${h / 2}) rotate(-90)" text-anchor="middle">${esc(label)}</text>`);
  return out;
}

export function lineChart(c: LineChart): string {
  const w = c.width ?? 720;
  const h = c.height ?? 440;
  const pts = c.series.flatMap((s) => s.points).filter(([x, y]) => (!c.xLog || x > 0) && (!c.yLog || y > 0));
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const x0 = M.left;
  const x1 = w - M.right - 150;
  const y0 = h - M.bottom;
  const y1 = M.top;
  const xMin = xs.length ? Math.min(...xs) : 0;
  const xMax = xs.length ? Math.max(...xs) : 1;
  const yMax = ys.length ? Math.max(...ys) : 1;
  const yMin = c.yLog ? (ys.length ? Math.min(...ys) : 1) : Math.min(0, ...ys);
  const xa = c.xLog ? logAxis(xMin, xMax, x0, x1) : linearAxis(Math.min(0, xMin), xMax, x0, x1);
  const ya = c.yLog ? logAxis(yMin, yMax, y0, y1) : linearAxis(yMin, yMax, y0, y1);
  const body = yAxis(ya, x0, x1, c.yLabel, h);
  for (const t of xa.ticks) {
    const x = xa.map(t).toFixed(1);
    body.push(`<line x1="${x}" y1="${y0}" x2="${x}" y2="${y1}" stroke="#eee"/>`);
    body.push(`<text x="${x}" y="${y0 + 16}" text-anchor="middle">${fmt(t)}</text>`);
  }
  body.push(`<text x="${(x0 + x1) / 2}" y="${h - 18}" text-anchor="middle">${esc(c.xLabel)}</text>`);
  body.push(`<line x1="${x0}" y1="${y0}" x2="${x1}" y2="${y0}" stroke="black"/><line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y1}" stroke="black"/>`);
  c.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const sp = s.points.filter(([x, y]) => (!c.xLog || x > 0) && (!c.yLog || y > 0)).sort((a, b) => a[0] - b[0]);
    const d = sp.map(([x, y], k) => `${k === 0 ? 'M' : 'L'}${xa.map(x).toFixed(1)},${ya.map(y).toFixed(1)}`).join(' ');
    if (d) body.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const [x, y] of sp) body.push(`<circle cx="${xa.map(x).toFixed(1)}" cy="${ya.map(y).toFixed(1)}" r="3" fill="${color}"><title>${esc(s.name)}: ${fmt(x)}, ${fmt(y)}</title></circle>`);
  });
  body.push(...legend(c.series.map((s) => s.name), x1 + 16, y1 + 10));
  return frame(w, h, c.title, body);
}

export function barChart(c: BarChart): string {
  const w = c.width ?? 720;
  const h = c.height ?? 440;
  const x0 = M.left;
  const x1 = w - M.right - 150;
  const y0 = h - M.bottom;
  const y1 = M.top;
  const all = c.series.flatMap((s) => s.values);
  const ya = linearAxis(0, all.length ? Math.max(...all) : 1, y0, y1);
  const body = yAxis(ya, x0, x1, c.yLabel, h);
  const groupW = (x1 - x0) / Math.max(1, c.categories.length);
  const barW = (groupW * 0.8) / Math.max(1, c.series.length);
  c.categories.forEach((cat, g) => {
    const gx = x0 + g * groupW + groupW * 0.1;
    c.series.forEach((s, i) => {
      const v = s.values[g] ?? 0;
      const top = ya.map(v);
      const x = gx + i * barW;
      body.push(`<rect x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(y0 - top).toFixed(1)}" fill="${COLORS[i % COLORS.length]}"><title>${esc(s.name)} ${esc(cat)}: ${fmt(v)}</title></rect>`);
      body.push(`<text x="${(x + barW / 2 - 1).toFixed(1)}" y="${(top - 4).toFixed(1)}" text-anchor="middle" font-size="10">${fmt(v)}</text>`);
    });
    body.push(`<text x="${(x0 + g * groupW + groupW / 2).toFixed(1)}" y="${y0 + 16}" text-anchor="middle">${esc(cat)}</text>`);
  });
  body.push(`<line x1="${x0}" y1="${y0}" x2="${x1}" y2="${y0}" stroke="black"/><line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y1}" stroke="black"/>`);
  body.push(...legend(c.series.map((s) => s.name), x1 + 16, y1 + 10));
  return frame(w, h, c.title, body);
}
