/**
 * Line charts as self-contained SVG text: several named series of (x, y)
 * points, linear or log axes, ticks, grid, legend and title. No
 * dependencies, so benchmarks anywhere in the project can write charts.
 *
 * Points that cannot be drawn (non-finite, or <= 0 on a log axis) are
 * dropped, and each series is drawn sorted by x so that a sweep recorded out
 * of order still reads as a curve.
 */
import { formatTick, linearScale, logScale, type Scale } from './axis.ts';
import { axisLabels, colour, esc, frame, legend, legendWidth, px, svgOpen } from './svg.ts';

export interface Series {
  name: string;
  points: [number, number][];
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  xLog?: boolean;
  yLog?: boolean;
  /** Pixels; default 800 × 500. */
  width?: number;
  height?: number;
  /** Draw a marker at every point (default true). */
  markers?: boolean;
}

function drawable(p: [number, number], xLog: boolean, yLog: boolean): boolean {
  const [x, y] = p;
  return Number.isFinite(x) && Number.isFinite(y) && (!xLog || x > 0) && (!yLog || y > 0);
}

function extent(values: number[], fallback: [number, number]): [number, number] {
  if (values.length === 0) return fallback;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

export function lineChart(opts: LineChartOptions): string {
  const xLog = opts.xLog === true;
  const yLog = opts.yLog === true;
  const series = opts.series.map((s) => ({
    name: s.name,
    points: s.points.filter((p) => drawable(p, xLog, yLog)).sort((a, b) => a[0] - b[0]),
  }));
  const names = series.map((s) => s.name);
  const f = frame(opts.width ?? 800, opts.height ?? 500, legendWidth(names));
  const all = series.flatMap((s) => s.points);
  const [x0, x1] = extent(all.map((p) => p[0]), xLog ? [1, 10] : [0, 1]);
  const [y0, y1] = extent(all.map((p) => p[1]), yLog ? [1, 10] : [0, 1]);
  const xs: Scale = xLog ? logScale(x0, x1, f.left, f.right) : linearScale(x0, x1, f.left, f.right, true);
  const ys: Scale = yLog ? logScale(y0, y1, f.bottom, f.top) : linearScale(y0, y1, f.bottom, f.top, true);

  const out = svgOpen(f, opts.title);
  out.push('<g class="grid" stroke="#e0e0e0" stroke-width="1">');
  for (const t of xs.ticks) out.push(`<line x1="${px(xs.map(t))}" y1="${f.top}" x2="${px(xs.map(t))}" y2="${f.bottom}"/>`);
  for (const t of ys.ticks) out.push(`<line x1="${f.left}" y1="${px(ys.map(t))}" x2="${f.right}" y2="${px(ys.map(t))}"/>`);
  out.push('</g>');
  out.push(`<rect x="${f.left}" y="${f.top}" width="${f.right - f.left}" height="${f.bottom - f.top}" fill="none" stroke="#333333"/>`);
  out.push('<g class="ticks">');
  for (const t of xs.ticks) {
    out.push(`<text x="${px(xs.map(t))}" y="${f.bottom + 16}" text-anchor="middle">${esc(formatTick(t))}</text>`);
  }
  for (const t of ys.ticks) {
    out.push(`<text x="${f.left - 6}" y="${px(ys.map(t) + 4)}" text-anchor="end">${esc(formatTick(t))}</text>`);
  }
  out.push('</g>');
  out.push(...axisLabels(f, opts.xLabel + (xLog ? ' (log)' : ''), opts.yLabel + (yLog ? ' (log)' : '')));

  series.forEach((s, i) => {
    const c = colour(i);
    out.push(`<g class="series" data-name="${esc(s.name)}">`);
    if (s.points.length > 0) {
      const d = s.points.map((p, j) => `${j === 0 ? 'M' : 'L'}${px(xs.map(p[0]))},${px(ys.map(p[1]))}`).join(' ');
      out.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="2"/>`);
      if (opts.markers !== false) {
        for (const p of s.points) out.push(`<circle cx="${px(xs.map(p[0]))}" cy="${px(ys.map(p[1]))}" r="3" fill="${c}"/>`);
      }
    }
    out.push('</g>');
  });
  out.push(
    ...legend(f, names, (i, x, y) => `<line x1="${x}" y1="${y}" x2="${x + 18}" y2="${y}" stroke="${colour(i)}" stroke-width="3"/>`),
  );
  out.push('</svg>');
  return out.join('\n') + '\n';
}
