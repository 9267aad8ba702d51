/**
 * The status page in headless Chromium against a real `reflex serve`: it
 * loads, lists the tenants, and its numbers move while clients drive real
 * reads through the data plane. Saves results/status-page.png.
 *
 * Needs Debian's chromium (/usr/bin/chromium) and playwright-core; without
 * chromium the test fails unless REFLEX_ALLOW_SKIP=1.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { connect, type ReflexClient } from '../../src/client/index.ts';
import { ROOT, api, killed, serve } from '../integration/control-helpers.ts';

const CHROMIUM = process.env.REFLEX_CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOT = path.join(ROOT, 'results', 'status-page.png');

/** Reads `len`-byte blocks at queue depth `qd` until `stop.done`; returns how many completed. */
async function drive(client: ReflexClient, span: number, len: number, qd: number, stop: { done: boolean }): Promise<number> {
  let n = 0;
  const lane = async (seed: number): Promise<void> => {
    let x = seed;
    while (!stop.done) {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      await client.read((x % (span / len)) * len, len);
      n++;
    }
  };
  await Promise.all(Array.from({ length: qd }, (_, i) => lane(i + 1)));
  return n;
}

test('status page: loads, shows the tenants, numbers change under load; screenshot saved', async (t) => {
  if (!fs.existsSync(CHROMIUM)) {
    if (process.env.REFLEX_ALLOW_SKIP === '1') return t.skip(`no chromium at ${CHROMIUM}`);
    throw new Error(`no chromium at ${CHROMIUM}: apt-get install -y chromium (or REFLEX_ALLOW_SKIP=1 to skip)`);
  }
  const { chromium } = await import('playwright-core');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-status-'));
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-chromium-'));
  const server = serve(dataDir);
  const stop = { done: false };
  const clients: ReflexClient[] = [];
  let context: Awaited<ReturnType<typeof chromium.launchPersistentContext>> | null = null;
  try {
    const base = await server.admin;
    const token = fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
    // The default tenant holds the whole device; make room for two of our own.
    assert.equal((await api(base, token, 'DELETE', '/api/tenants/tenant-0')).status, 200);
    const web = await api(base, token, 'POST', '/api/tenants', { name: 'web', class: 'LC', iops: 20000, p95Us: 1000, volumeSize: 16 << 20, port: 0 });
    assert.equal(web.status, 201, JSON.stringify(web.body));
    const batch = await api(base, token, 'POST', '/api/tenants', { name: 'batch', class: 'BE', volumeSize: 16 << 20, port: 0 });
    assert.equal(batch.status, 201, JSON.stringify(batch.body));

    for (const port of [web.body.port, batch.body.port]) clients.push(await connect({ host: '127.0.0.1', port, hello: false }));
    const load = [drive(clients[0], 16 << 20, 4096, 2, stop), drive(clients[1], 16 << 20, 32768, 2, stop)];

    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1360, height: 900 },
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(base + '/');
    assert.equal(await page.title(), 'reflex status');
    await page.waitForSelector('tr[data-tenant="web"]', { timeout: 10_000 });
    await page.waitForSelector('tr[data-tenant="batch"]');
    assert.equal(await page.locator('tr[data-tenant="web"] td.class').textContent(), 'LC');
    assert.equal(await page.locator('tr[data-tenant="web"] td.obj-iops').textContent(), '20,000');
    assert.equal(await page.locator('tr[data-tenant="batch"] td.obj-iops').textContent(), '—');

    // The IOPS cell shows a positive number that changes from second to second.
    const seen = new Set<string>();
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && seen.size < 3) {
      const text = (await page.locator('tr[data-tenant="web"] td.iops').textContent()) ?? '';
      if (/^[\d,]+$/.test(text) && Number(text.replace(/,/g, '')) > 0) seen.add(text);
      await page.waitForTimeout(500);
    }
    assert.ok(seen.size >= 2, `IOPS of web changed under load: ${[...seen].join(' ')}`);
    assert.match((await page.locator('tr[data-tenant="web"] td.p95').textContent()) ?? '', /\d+(\.\d+)? (µs|ms)/);
    assert.match((await page.locator('tr[data-tenant="batch"] td.mbs').textContent()) ?? '', /^\d/);
    assert.match((await page.locator('tr[data-tenant="web"] td.state').textContent()) ?? '', /objective/);
    assert.match((await page.locator('#workers').textContent()) ?? '', /^\d+ workers? · (coalesced \d+% of reply turns|no coalescing) · \d+ at the device(, \d+ waiting for a slot)?$/);
    assert.match((await page.locator('#devices').textContent()) ?? '', /^default \((uring ×128|file|memory), /);
    // Charts: an IOPS and a p95 line per tenant, and the objective lines for the LC one.
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('section.card[data-tenant="web"] svg path').length === 2);
    assert.equal(await page.locator('section.card[data-tenant="web"] svg line[stroke-dasharray]').count(), 2);
    assert.equal(await page.locator('section.card[data-tenant="batch"] svg line[stroke-dasharray]').count(), 0);
    // Let the charts gather a few seconds of history before the picture.
    await page.waitForTimeout(3000);
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.ok(fs.statSync(SCREENSHOT).size > 10_000);
    assert.deepEqual(pageErrors, []);

    stop.done = true;
    const [webOps] = await Promise.all(load);
    assert.ok(webOps > 0);
  } finally {
    stop.done = true;
    await context?.close();
    await Promise.allSettled(clients.map((c) => c.close()));
    await killed(server.child);
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
});
