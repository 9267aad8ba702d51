/**
 * The status page served at GET / on the admin port: one self-contained HTML
 * document (no external scripts, fonts or styles, so it works on an isolated
 * admin network) that polls GET /api/stats every second and draws
 *  - a table of tenants: class, objective, current IOPS and p95, bandwidth,
 *    connections, queue, errors, refusals, and whether p95 is within the
 *    objective over the last second;
 *  - per tenant, live SVG charts of IOPS and p95 with the objective drawn as
 *    a dashed line.
 * Tenant names are inserted with textContent only (never as HTML).
 */

const STYLE = `
:root { --fg:#1d2330; --muted:#6b7385; --line:#e3e6ec; --bg:#f6f7f9; --card:#fff;
  --blue:#2f6fde; --red:#d8413a; --green:#1f9d55; --amber:#c98a06; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; align-items:baseline; gap:16px; padding:14px 24px; background:var(--card); border-bottom:1px solid var(--line); }
header h1 { margin:0; font-size:18px; font-weight:650; }
header .sub { color:var(--muted); }
header .live { margin-left:auto; color:var(--muted); font-variant-numeric:tabular-nums; }
header .live.stale { color:var(--red); }
main { padding:18px 24px; max-width:1400px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px; margin-bottom:18px; }
h2 { font-size:13px; text-transform:uppercase; letter-spacing:.06em; color:var(--muted); margin:0 0 10px; font-weight:600; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { text-align:right; padding:6px 10px; border-bottom:1px solid var(--line); white-space:nowrap; }
th { font-weight:600; color:var(--muted); font-size:12px; }
th:first-child, td:first-child, th.l, td.l { text-align:left; }
tr:last-child td { border-bottom:none; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; }
.ok { background:#e3f5ea; color:var(--green); } .over { background:#fde8e7; color:var(--red); }
.idle { background:#eef0f4; color:var(--muted); } .be { background:#eef3fd; color:var(--blue); }
.grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(620px, 1fr)); gap:18px; }
.card h3 { margin:0 0 6px; font-size:15px; } .card h3 span { color:var(--muted); font-weight:400; font-size:13px; margin-left:6px; }
.charts { display:grid; grid-template-columns:1fr 1fr; gap:10px; }
.chart .title { font-size:12px; color:var(--muted); margin-bottom:2px; }
svg { width:100%; height:auto; display:block; }
svg text { font-size:10px; fill:var(--muted); font-variant-numeric:tabular-nums; }
.empty { color:var(--muted); padding:8px 0; }
`;

const SCRIPT = `
const W = 300, H = 130, L = 44, R = 8, T = 8, B = 18, SPAN_S = 300;
const NS = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);
const num = (v, d = 0) => v === null || v === undefined ? '—' : v.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const us = (v) => v === null || v === undefined ? '—' : v >= 10000 ? num(v / 1000, 1) + ' ms' : num(v) + ' µs';
const mbs = (v) => v === null || v === undefined ? '—' : num(v / 1e6, 1);

function el(tag, attrs, text) {
  const e = tag.startsWith('svg:') ? document.createElementNS(NS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Gridline step: 1, 2, 2.5 or 5 times a power of ten, about a quarter of the range. */
function niceStep(v) {
  const raw = v > 0 ? v / 4 : 0.25;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5]) if (m * p >= raw) return m * p;
  return 10 * p;
}

/**
 * Line chart of one series with an optional objective line. The time axis
 * covers the history there is (at least a minute, at most SPAN_S seconds),
 * so a fresh server's first seconds are not squeezed into one edge.
 */
function drawChart(svg, t, ys, objective, color, fmtY) {
  svg.replaceChildren();
  const now = Date.now();
  const oldest = t.length > 0 ? (now - t[0]) / 1000 : 0;
  const span = Math.min(SPAN_S, Math.max(60, Math.ceil(oldest / 60) * 60));
  let max = objective || 0;
  for (const y of ys) if (y !== null && y > max) max = y;
  const step = niceStep(max * 1.1);
  const top = Math.max(step, Math.ceil((max * 1.1) / step) * step);
  const x = (ms) => L + (W - L - R) * (1 - Math.min(span, Math.max(0, (now - ms) / 1000)) / span);
  const y = (v) => T + (H - T - B) * (1 - v / top);
  for (let v = 0; v <= top + step / 2; v += step) {
    svg.append(el('svg:line', { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: '#e3e6ec' }));
    svg.append(el('svg:text', { x: L - 4, y: y(v) + 3, 'text-anchor': 'end' }, fmtY(v)));
  }
  for (let i = 0; i <= 5; i++) {
    const s = Math.round((span * (5 - i)) / 5);
    svg.append(el('svg:text', { x: x(now - s * 1000), y: H - 4, 'text-anchor': s === 0 ? 'end' : i === 0 ? 'start' : 'middle' }, s === 0 ? 'now' : '-' + s + 's'));
  }
  let d = '', pen = false;
  for (let i = 0; i < t.length; i++) {
    if (ys[i] === null || now - t[i] > span * 1000) { pen = false; continue; }
    d += (pen ? 'L' : 'M') + x(t[i]).toFixed(1) + ' ' + y(ys[i]).toFixed(1);
    pen = true;
  }
  if (d) svg.append(el('svg:path', { d, fill: 'none', stroke: color, 'stroke-width': 1.6, 'stroke-linejoin': 'round' }));
  if (objective) {
    svg.append(el('svg:line', { x1: L, x2: W - R, y1: y(objective), y2: y(objective), stroke: '#d8413a', 'stroke-dasharray': '5 4', 'stroke-width': 1.2 }));
    svg.append(el('svg:text', { x: W - R - 2, y: y(objective) - 3, 'text-anchor': 'end', style: 'fill:#d8413a' }, 'objective'));
  }
}

function badge(t) {
  if (t.class === 'BE') return el('span', { class: 'badge be' }, 'best effort');
  if (t.current.meetsObjective === null) return el('span', { class: 'badge idle' }, 'idle');
  return t.current.meetsObjective ? el('span', { class: 'badge ok' }, 'within objective') : el('span', { class: 'badge over' }, 'over objective');
}

// Receive coalescing since start: the share of reply turns followed by a sleep.
function renderWorkers(workers) {
  const checks = workers.reduce((a, w) => a + w.coalesceChecks, 0);
  const sleeps = workers.reduce((a, w) => a + w.coalesceSleeps, 0);
  const n = workers.length + ' worker' + (workers.length === 1 ? '' : 's');
  const atDevice = workers.reduce((a, w) => a + w.deviceInFlight, 0);
  const waiting = workers.reduce((a, w) => a + w.deviceAwaitingSlot, 0);
  $('workers').textContent = n + (checks > 0 ? ' · coalesced ' + num((100 * sleeps) / checks, 0) + '% of reply turns' : ' · no coalescing') +
    ' · ' + atDevice + ' at the device' + (waiting > 0 ? ', ' + waiting + ' waiting for a slot' : '');
}

function renderTable(tenants) {
  const body = $('tenant-rows');
  body.replaceChildren();
  if (tenants.length === 0) {
    const tr = el('tr'); const td = el('td', { colspan: 12, class: 'empty l' }, 'No tenants registered.'); tr.append(td); body.append(tr);
    return;
  }
  for (const t of tenants) {
    const tr = el('tr', { 'data-tenant': t.name });
    const cells = [
      ['name l', t.name], ['class l', t.class],
      ['obj-iops', t.objective ? num(t.objective.iops) : '—'], ['obj-p95', t.objective ? us(t.objective.p95Us) : '—'],
      ['iops', num(t.current.iops)], ['p95', us(t.current.p95Us)], ['mbs', mbs(t.current.bytesPerSec)],
      ['conns', num(t.connections)], ['queued', num(t.queued)], ['errors', num(t.errors)], ['refused', num(t.refused)],
    ];
    for (const [cls, text] of cells) tr.append(el('td', { class: cls }, text));
    const st = el('td', { class: 'state l' }); st.append(badge(t)); tr.append(st);
    body.append(tr);
  }
}

const cards = new Map();
function renderCharts(tenants) {
  const grid = $('charts');
  const names = new Set(tenants.map((t) => t.name));
  for (const [name, c] of cards) if (!names.has(name)) { c.card.remove(); cards.delete(name); }
  for (const t of tenants) {
    let c = cards.get(t.name);
    if (!c) {
      const card = el('section', { class: 'card', 'data-tenant': t.name });
      const h = el('h3', {}, t.name); const sub = el('span'); h.append(sub); card.append(h);
      const charts = el('div', { class: 'charts' });
      const mk = (title) => { const box = el('div', { class: 'chart' }); box.append(el('div', { class: 'title' }, title)); const svg = el('svg:svg', { viewBox: '0 0 ' + W + ' ' + H }); box.append(svg); charts.append(box); return svg; };
      c = { card, sub, iops: mk('IOPS'), p95: mk('p95 latency (µs)') };
      card.append(charts); grid.append(card); cards.set(t.name, c);
    }
    c.sub.textContent = t.objective ? 'LC · objective ' + num(t.objective.iops) + ' IOPS at p95 ≤ ' + us(t.objective.p95Us) : 'BE · best effort';
    drawChart(c.iops, t.series.t, t.series.iops, t.objective && t.objective.iops, '#2f6fde', (v) => v >= 10000 ? num(v / 1000, v % 1000 === 0 ? 0 : 1) + 'k' : num(v));
    drawChart(c.p95, t.series.t, t.series.p95Us, t.objective && t.objective.p95Us, '#c98a06', (v) => num(v, v % 1 === 0 ? 0 : 1));
  }
}

let last = 0;
async function tick() {
  try {
    const r = await fetch('/api/stats', { cache: 'no-store' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    const s = await r.json();
    last = Date.now();
    $('devices').textContent = s.devices.map((d) => d.name + ' (' + d.engine + (d.queueDepth !== null ? ' ×' + d.queueDepth : '') + ', ' + num(d.size / 2 ** 30, 1) + ' GiB, ' + num(d.deviceRateTokensPerSec / 1e6, 1) + 'M tokens/s)').join(' · ');
    renderWorkers(s.workers);
    renderTable(s.tenants);
    renderCharts(s.tenants);
  } catch (err) {
    $('live').textContent = 'no data: ' + err.message;
  }
  const age = (Date.now() - last) / 1000;
  $('live').className = 'live' + (age > 3 ? ' stale' : '');
  if (last) $('live').textContent = age > 3 ? 'last update ' + Math.round(age) + ' s ago' : 'live · ' + new Date(last).toLocaleTimeString();
}
tick();
setInterval(tick, 1000);
`;

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>reflex status</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>reflex</h1><span class="sub" id="devices">loading…</span><span class="sub" id="workers"></span><span class="live" id="live">connecting…</span></header>
<main>
<section>
<h2>Tenants</h2>
<table>
<thead><tr><th>Tenant</th><th class="l">Class</th><th>Objective IOPS</th><th>Objective p95</th><th>IOPS</th><th>p95 (1 s)</th><th>MB/s</th><th>Conns</th><th>Queue</th><th>Errors</th><th>Refused</th><th class="l">State</th></tr></thead>
<tbody id="tenant-rows"></tbody>
</table>
</section>
<div class="grid" id="charts"></div>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
