/** Small helpers shared by the SVG chart writers. */

/** Escapes text for SVG character data and attribute values. */
export function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Colour-blind-friendly palette (Okabe–Ito), cycled by series index. */
const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#F0E442', '#000000'];

export function colour(i: number): string {
  return PALETTE[i % PALETTE.length];
}

/** A coordinate with at most two decimals: keeps files small and diffable. */
export function px(v: number): string {
  return String(Math.round(v * 100) / 100);
}

export interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

/** Plot area for a chart of the given size, with room for labels and a legend on the right. */
export function frame(width: number, height: number, legendWidth: number): Frame {
  return { width, height, left: 70, right: width - 20 - legendWidth, top: 40, bottom: height - 55 };
}

export function svgOpen(f: Frame, title: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}" font-family="sans-serif" font-size="12">`,
    `<title>${esc(title)}</title>`,
    `<rect x="0" y="0" width="${f.width}" height="${f.height}" fill="#ffffff"/>`,
    `<text x="${px(f.width / 2)}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
  ];
}

export function axisLabels(f: Frame, xLabel: string, yLabel: string): string[] {
  const cy = (f.top + f.bottom) / 2;
  return [
    `<text x="${px((f.left + f.right) / 2)}" y="${px(f.height - 12)}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text x="16" y="${px(cy)}" text-anchor="middle" transform="rotate(-90 16 ${px(cy)})">${esc(yLabel)}</text>`,
  ];
}

/** Legend entries stacked at the top right, outside the plot area. */
export function legend(f: Frame, names: string[], swatch: (i: number, x: number, y: number) => string): string[] {
  const out: string[] = [];
  const x = f.right + 15;
  names.forEach((name, i) => {
    const y = f.top + 10 + i * 20;
    out.push(swatch(i, x, y));
    out.push(`<text x="${px(x + 24)}" y="${px(y + 4)}">${esc(name)}</text>`);
  });
  return out;
}

/** Rough legend width for the longest name (no font metrics available). */
export function legendWidth(names: string[]): number {
  if (names.length === 0) return 0;
  return 40 + 7 * Math.max(...names.map((n) => n.length));
}
