/**
 * Admission through the admin API, end to end: an LC objective that fits is
 * admitted (201, with its rate and a v1 port), and is then met while a
 * best-effort tenant pushes flat out; one that does not fit is refused (422)
 * with the numbers. The device model is small (10,000 reads/s) so the
 * scheduler, not the memory engine, sets the pace.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';
import { buildC } from '../helpers/build-c.ts';

const run = promisify(execFile);
const TOKEN = 'admission-test-token-0123456789';
const MODEL = `read_cost_4KB = 100; write_cost_4KB = 1000; max_token_rate = 1000000;
token_limits = ( { p95_latency_limit = 1000; max_token_rate = 1000000; max_rdonly_token_rate = 1000000; } );`;
let dir: string;
let server: RunningServer;
let client: string;

async function api(method: string, route: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${server.adminPort}${route}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-admit-'));
  fs.writeFileSync(path.join(dir, 'small.devmodel'), MODEL);
  client = buildC(fileURLToPath(new URL('../interop/v1client.c', import.meta.url)), 'v1client');
  server = await startServer(
    resolveConfig({ memory: '64M', workers: 2, deviceModel: path.join(dir, 'small.devmodel'), adminPort: 0, adminToken: TOKEN, dataDir: dir, ports: [{ port: 0, tenant: 'batch', volumeSize: '16M', volumeOffset: 0 }] }, 2),
  );
});

after(async () => {
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

it('an objective that fits is admitted through the API and then met beside a flat-out BE tenant', async () => {
  const made = await api('POST', '/api/tenants', { name: 'web', class: 'LC', iops: 4000, p95Us: 1000, readPct: 100, volumeSize: 16 << 20, port: 0 });
  assert.equal(made.status, 201, JSON.stringify(made.json));
  assert.equal(made.json.admitted, true);
  const port = made.json.port as number;
  assert.ok(Number.isInteger(port) && port > 0, 'a v1 port bound to the new tenant');
  assert.equal(made.json.rate, 400_000, 'the LC reservation: 4,000 reads/s x 100 tokens');

  const load = async (p: number): Promise<{ iops: number; errors: number }> => {
    const { stdout } = await run(client, ['load', '127.0.0.1', String(p), '2', '16', '3', String((16 << 20) / 512), '100', '8']);
    return JSON.parse(stdout) as { iops: number; errors: number };
  };
  const [lc, be] = await Promise.all([load(port), load(server.bindings[0].port)]);
  assert.equal(lc.errors + be.errors, 0);
  assert.ok(lc.iops >= 4000 * 0.95, `LC got ${lc.iops} IOPS for an objective of 4,000`);
  assert.ok(be.iops >= 6000 * 0.7, `BE got ${be.iops} IOPS of the ~6,000 left`);
  assert.ok(lc.iops + be.iops <= 10_000 * 1.15, `total ${lc.iops + be.iops} over the model's 10,000`);
  // The server's own view agrees (what the status page and metrics show).
  const stats = (await (await fetch(`http://127.0.0.1:${server.adminPort}/api/stats`)).json()) as { tenants: Array<{ name: string; totals: { readOps: number } }> };
  const web = stats.tenants.find((t) => t.name === 'web')!;
  assert.ok(web.totals.readOps >= lc.iops * 3 * 0.9, `server counted ${web.totals.readOps} reads for web`);
});

it('an objective that does not fit is refused with the numbers, and nothing is created', async () => {
  const refused = await api('POST', '/api/tenants', { name: 'greedy', class: 'LC', iops: 20000, p95Us: 1000, readPct: 100, volumeSize: 1 << 20 });
  assert.equal(refused.status, 422);
  assert.equal(refused.json.admitted, false);
  assert.match(String(refused.json.error), /needs 2,000,000 tokens\/s .* only [\d,]+ tokens\/s are available/);
  const list = await api('GET', '/api/tenants');
  assert.ok(!JSON.stringify(list.json).includes('greedy'));
});
