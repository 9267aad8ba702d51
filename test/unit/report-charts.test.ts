import { test } from 'node:test';
import assert from 'node:assert/strict';
import { barChart, lineChart } from '../../src/report/index.ts';
import { formatTick, linearScale, logScale, niceStep } from '../../src/report/axis.ts';

/** Tag balance and attribute sanity: enough to catch a malformed document without an XML parser. */
function assertWellFormed(svg: string): void {
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)([^>]*?)(\/?)>/g)) {
    const [, close, name, , selfClose] = m;
    if (selfClose === '/') continue;
    if (close === '/') assert.equal(stack.pop(), name, `unbalanced </${name}>`);
    else stack.push(name);
  }
  assert.deepEqual(stack, []);
  for (const m of svg.matchAll(/\s(?:x|y|x1|x2|y1|y2|cx|cy|width|height|r)="([^"]*)"/g)) {
    assert.ok(Number.isFinite(Number(m[1])), `non-numeric coordinate ${m[0]}`);
  }
  for (const m of svg.matchAll(/\sd="([^"]*)"/g)) {
    for (const n of m[1].match(/-?[\d.]+(?:e-?\d+)?/g) ?? []) assert.ok(Number.isFinite(Number(n)));
    assert.doesNotMatch(m[1], /NaN|Infinity/);
  }
}

test('lineChart draws one path per non-empty series with its name in the legend', () => {
  const svg = lineChart({
    title: 'p95 vs load',
    xLabel: 'weighted IOPS',
    yLabel: 'p95 (µs)',
    series: [
      { name: 'read-only', points: [[1000, 100], [5000, 120], [9000, 400]] },
      { name: '70% reads', points: [[800, 110], [4000, 150], [8000, 600]] },
      { name: 'empty', points: [] },
    ],
  });
  assertWellFormed(svg);
  for (const name of ['read-only', '70% reads', 'empty', 'p95 vs load', 'weighted IOPS', 'p95 (µs)']) assert.ok(svg.includes(name), name);
  assert.equal(svg.match(/<path /g)?.length, 2);
  assert.equal(svg.match(/<circle /g)?.length, 6);
});

test('lineChart escapes markup in names and drops undrawable points', () => {
  const svg = lineChart({
    title: 'a <b> & "c"',
    xLabel: 'x',
    yLabel: 'y',
    yLog: true,
    series: [{ name: '<evil>', points: [[1, 10], [2, 0], [3, NaN], [4, 1000], [Infinity, 5]] }],
  });
  assertWellFormed(svg);
  assert.ok(svg.includes('&lt;evil&gt;') && !svg.includes('<evil>'));
  assert.ok(svg.includes('a &lt;b&gt; &amp; &quot;c&quot;'));
  assert.equal(svg.match(/<circle /g)?.length, 2);
  assert.ok(svg.includes('y (log)'));
});

test('lineChart sorts points by x so that the path runs left to right', () => {
  const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points: [[3, 1], [1, 2], [2, 3]] }] });
  const d = /<path d="([^"]*)"/.exec(svg)?.[1] ?? '';
  const xs = [...d.matchAll(/[ML](-?[\d.]+),/g)].map((m) => Number(m[1]));
  assert.equal(xs.length, 3);
  assert.deepEqual([...xs].sort((a, b) => a - b), xs);
});

test('lineChart with log axes and a single point still renders', () => {
  const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', xLog: true, yLog: true, series: [{ name: 'one', points: [[50, 50]] }] });
  assertWellFormed(svg);
  assert.equal(svg.match(/<circle /g)?.length, 1);
});

test('barChart draws one rect per finite value, grouped by category', () => {
  const svg = barChart({
    title: 'size scaling',
    xLabel: 'request size',
    yLabel: 'tokens/s relative to 4 KiB',
    categories: ['4K', '8K', '16K'],
    series: [
      { name: 'measured', values: [1, 0.95, 1.1] },
      { name: 'ideal', values: [1, 1, NaN] },
    ],
  });
  assertWellFormed(svg);
  assert.ok(svg.includes('measured') && svg.includes('ideal') && svg.includes('16K'));
  // 5 bars plus the plot frame and the two legend swatches and the background.
  assert.equal(svg.match(/<rect /g)?.length, 5 + 1 + 2 + 1);
  assert.throws(() => barChart({ title: 't', xLabel: 'x', yLabel: 'y', categories: ['a'], series: [{ name: 's', values: [1, 2] }] }), /categories/);
});

test('axis helpers: nice steps, ticks cover the domain, log decades, compact labels', () => {
  assert.equal(niceStep(100, 5), 20);
  assert.equal(niceStep(7, 5), 2);
  const s = linearScale(3, 97, 0, 100, true);
  assert.equal(s.ticks[0], 0);
  assert.ok(s.ticks[s.ticks.length - 1] >= 97);
  assert.equal(s.map(s.ticks[0]), 0);
  assert.equal(s.map(s.ticks[s.ticks.length - 1]), 100);
  const l = logScale(30, 5000, 0, 300);
  assert.ok(l.ticks.includes(10) && l.ticks.includes(10000));
  assert.ok(Math.abs(l.map(100) - 100) < 1e-9);
  assert.equal(formatTick(1500), '1500');
  assert.equal(formatTick(25000), '25k');
  assert.equal(formatTick(2_000_000), '2M');
  assert.equal(formatTick(0.25), '0.25');
});
