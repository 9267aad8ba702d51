/**
 * Grouped bar charts as self-contained SVG text: one group per category,
 * one bar per series within each group, a linear or log value axis.
 */
import { assert } from '../util/assert.ts';
import { formatTick, linearScale, logScale, type Scale } from './axis.ts';
import { axisLabels, colour, esc, frame, legend, legendWidth, px, svgOpen } from './svg.ts';

export interface BarSeries {
  name: string;
  /** One value per category, in category order. */
  values: number[];
}

export interface BarChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  categories: string[];
  series: BarSeries[];
  yLog?: boolean;
  width?: number;
  height?: number;
}

export function barChart(opts: BarChartOptions): string {
  for (const s of opts.series) {
    assert(s.values.length === opts.categories.length, `barChart: series '${s.name}' has ${s.values.length} values for ${opts.categories.length} categories`);
  }
  const yLog = opts.yLog === true;
  const ok = (v: number): boolean => Number.isFinite(v) && (!yLog || v > 0);
  const names = opts.series.map((s) => s.name);
  const f = frame(opts.width ?? 800, opts.height ?? 500, legendWidth(names));
  const vals = opts.series.flatMap((s) => s.values.filter(ok));
  const lo = vals.length ? Math.min(...vals) : yLog ? 1 : 0;
  const hi = vals.length ? Math.max(...vals) : yLog ? 10 : 1;
  const ys: Scale = yLog ? logScale(lo, hi, f.bottom, f.top) : linearScale(lo, hi, f.bottom, f.top, true);
  // Bars grow from zero on a linear axis and from the bottom decade on a log axis.
  const base = yLog ? f.bottom : ys.map(0);

  const out = svgOpen(f, opts.title);
  out.push('<g class="grid" stroke="#e0e0e0" stroke-width="1">');
  for (const t of ys.ticks) out.push(`<line x1="${f.left}" y1="${px(ys.map(t))}" x2="${f.right}" y2="${px(ys.map(t))}"/>`);
  out.push('</g>');
  out.push(`<rect x="${f.left}" y="${f.top}" width="${f.right - f.left}" height="${f.bottom - f.top}" fill="none" stroke="#333333"/>`);
  out.push('<g class="ticks">');
  for (const t of ys.ticks) out.push(`<text x="${f.left - 6}" y="${px(ys.map(t) + 4)}" text-anchor="end">${esc(formatTick(t))}</text>`);
  const groupW = (f.right - f.left) / Math.max(1, opts.categories.length);
  opts.categories.forEach((c, i) => {
    out.push(`<text x="${px(f.left + groupW * (i + 0.5))}" y="${f.bottom + 16}" text-anchor="middle">${esc(c)}</text>`);
  });
  out.push('</g>');
  out.push(...axisLabels(f, opts.xLabel, opts.yLabel + (yLog ? ' (log)' : '')));

  const nSeries = Math.max(1, opts.series.length);
  const barW = (groupW * 0.8) / nSeries;
  opts.series.forEach((s, si) => {
    out.push(`<g class="series" data-name="${esc(s.name)}" fill="${colour(si)}">`);
    s.values.forEach((v, ci) => {
      if (!ok(v)) return;
      const x = f.left + groupW * ci + groupW * 0.1 + barW * si;
      const y = ys.map(v);
      const top = Math.min(y, base);
      out.push(`<rect x="${px(x)}" y="${px(top)}" width="${px(barW)}" height="${px(Math.abs(base - y))}"><title>${esc(`${s.name} ${opts.categories[ci]}: ${v}`)}</title></rect>`);
    });
    out.push('</g>');
  });
  out.push(...legend(f, names, (i, x, y) => `<rect x="${x}" y="${y - 6}" width="18" height="12" fill="${colour(i)}"/>`));
  out.push('</svg>');
  return out.join('\n') + '\n';
}
