import assert from 'node:assert/strict';
import { WorkerField } from '../../src/dataplane/worker-stats.ts';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { MAX_BODY_BYTES, startAdminServer, type AdminServer } from '../../src/control/admin-api.ts';
import { loadOrCreateAdminToken, tokenMatches } from '../../src/control/admin-token.ts';
import { Sampler } from '../../src/control/sampler.ts';
import { makeControl, simulateReads, type Fixture } from './control-fixture.ts';

const TOKEN = 'test-token-0123456789abcdef';
let fx: Fixture;
let server: AdminServer;
let base: string;
let now = 0;

before(async () => {
  fx = makeControl();
  const sampler = new Sampler(fx.control, { now: () => now });
  server = await startAdminServer({ control: fx.control, host: '127.0.0.1', port: 0, token: TOKEN, sampler });
  base = `http://127.0.0.1:${server.port}`;
});
after(async () => {
  await server.close();
});

interface Res {
  status: number;
  body: any;
  type: string;
}

async function call(method: string, p: string, body?: unknown, opts: { token?: string | null; raw?: string } = {}): Promise<Res> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const token = opts.token === undefined ? TOKEN : opts.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const r = await fetch(base + p, { method, headers, body: opts.raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
  const type = r.headers.get('content-type') ?? '';
  const text = await r.text();
  return { status: r.status, type, body: type.startsWith('application/json') ? JSON.parse(text) : text };
}

test('admin: LC tenant admitted with id, rate, volume, v1 port and a one-time secret', async () => {
  const r = await call('POST', '/api/tenants', { name: 'lc1', class: 'LC', iops: 5000, p95Us: 500, readPct: 100, volumeSize: 1 << 20, port: 0, credential: true });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.admitted, true);
  assert.equal(r.body.tenant.name, 'lc1');
  assert.equal(typeof r.body.tenant.id, 'number');
  assert.equal(r.body.port, 20000);
  assert.equal(r.body.volume.size, 1 << 20);
  assert.match(r.body.secret, /^[0-9a-f]{64}$/);
  assert.ok(r.body.rate > 0 && r.body.deviceRate >= r.body.rate);
  // The secret is not shown again.
  const got = await call('GET', '/api/tenants/lc1');
  assert.equal(got.status, 200);
  assert.equal(got.body.hasCredential, true);
  assert.equal(JSON.stringify(got.body).includes(r.body.secret), false);
  assert.deepEqual(got.body.ports, [20000]);
  const list = await call('GET', '/api/tenants');
  assert.deepEqual(list.body.map((t: { name: string }) => t.name), ['lc1']);
});

test('admin: an objective the device cannot meet is refused with the reason and numbers (422)', async () => {
  const before = fx.applied;
  const r = await call('POST', '/api/tenants', { name: 'greedy', class: 'LC', iops: 2_000_000, p95Us: 500 });
  assert.equal(r.status, 422);
  assert.equal(r.body.admitted, false);
  assert.match(r.body.error, /\d/);
  const strict = await call('POST', '/api/tenants', { name: 'strict', class: 'LC', iops: 10, p95Us: 50 });
  assert.equal(strict.status, 422);
  assert.match(strict.body.error, /50 µs/);
  assert.equal(fx.applied, before, 'a refusal changes nothing');
  assert.equal((await call('GET', '/api/tenants/greedy')).status, 404);
});

test('admin: bad input is a 400 that names the problem, and changes nothing', async () => {
  const cases: Array<[unknown, RegExp, string?]> = [
    [undefined, /JSON/, '{"name": "x",'],
    [undefined, /JSON/, 'not json at all'],
    [[1, 2], /JSON object/],
    ['"str"', /JSON object/],
    [{ name: 'a', class: 'BE', colour: 'red' }, /unknown field "colour"/],
    [{ name: 'a', class: 'XX' }, /"class" must be one of/],
    [{ name: 7, class: 'BE' }, /"name" must be a string/],
    [{ class: 'BE' }, /missing field "name"/],
    [{ name: 'a', class: 'LC', iops: -5, p95Us: 500 }, /"iops" must be an integer/],
    [{ name: 'a', class: 'LC', iops: 1.5, p95Us: 500 }, /"iops" must be an integer/],
    [{ name: 'a', class: 'LC', iops: '5000', p95Us: 500 }, /"iops" must be an integer/],
    [{ name: 'a', class: 'LC', iops: 5000 }, /needs an objective/],
    [{ name: 'a', class: 'BE', iops: 5000 }, /BE tenant has no objective/],
    [{ name: 'a', class: 'LC', iops: 5000, p95Us: 500, readPct: 101 }, /"readPct" must be a number from 0 to 100/],
    [{ name: 'a', class: 'BE', volumeSize: -4096 }, /"volumeSize" must be an integer/],
    [{ name: 'a', class: 'BE', port: 70000 }, /"port" must be an integer/],
    [{ name: 'a', class: 'BE', credential: 'yes' }, /"credential" must be true or false/],
    [{ name: '../etc', class: 'BE' }, /tenant name/],
    [{ name: 'a', class: 'BE', port: 0 }, /a port needs a volume/],
  ];
  for (const [body, re, raw] of cases) {
    const r = await call('POST', '/api/tenants', body, { raw: raw ?? (typeof body === 'string' ? body : undefined) });
    assert.equal(r.status, 400, `${raw ?? JSON.stringify(body)} -> ${r.status} ${JSON.stringify(r.body)}`);
    assert.match(r.body.error, re);
  }
  // Numbers beyond double range or past 2^53 are refused, not rounded.
  for (const raw of ['{"name":"a","class":"BE","volumeSize":1e400}', '{"name":"a","class":"BE","volumeSize":9007199254740993}']) {
    const r = await call('POST', '/api/tenants', undefined, { raw });
    assert.equal(r.status, 400, raw);
  }
  const v = await call('POST', '/api/volumes', { name: 'v', owner: 'lc1', size: -1 });
  assert.equal(v.status, 400);
  const off = await call('POST', '/api/volumes', { name: 'v', owner: 'lc1', size: 4096, offset: 1 << 30 });
  assert.equal(off.status, 400);
  assert.match(off.body.error, /past the end/);
  assert.equal((await call('GET', '/api/tenants/a')).status, 404);
});

test('admin: oversized bodies get 413', async () => {
  const r = await call('POST', '/api/tenants', undefined, { raw: JSON.stringify({ name: 'x'.repeat(MAX_BODY_BYTES), class: 'BE' }) });
  assert.equal(r.status, 413);
});

test('admin: the token guards every /api route but /api/stats; 401 on missing or wrong', async () => {
  const routes: Array<[string, string, unknown?]> = [
    ['GET', '/api/tenants'],
    ['POST', '/api/tenants', { name: 'sneaky', class: 'BE' }],
    ['PATCH', '/api/tenants/lc1', { iops: 1 }],
    ['DELETE', '/api/tenants/lc1'],
    ['POST', '/api/tenants/lc1/credential'],
    ['DELETE', '/api/tenants/lc1/credential'],
    ['GET', '/api/volumes'],
    ['POST', '/api/volumes', { name: 'v', owner: 'lc1', size: 4096 }],
    ['DELETE', '/api/volumes/lc1'],
    ['GET', '/api/ports'],
    ['DELETE', '/api/ports/20000'],
    ['GET', '/api/devices'],
  ];
  for (const token of [null, 'wrong-token-0123456789abcdef', TOKEN + 'x', '']) {
    for (const [method, p, body] of routes) {
      const r = await call(method, p, body, { token });
      assert.equal(r.status, 401, `${method} ${p} with ${token}`);
      assert.match(r.body.error, /admin token/);
    }
  }
  // Nothing changed.
  assert.deepEqual((await call('GET', '/api/tenants')).body.map((t: { name: string }) => t.name), ['lc1']);
  assert.equal((await call('GET', '/api/stats', undefined, { token: null })).status, 200);
  assert.equal((await call('GET', '/metrics', undefined, { token: null })).status, 200);
  const page = await call('GET', '/', undefined, { token: null });
  assert.equal(page.status, 200);
  assert.match(page.type, /text\/html/);
  assert.match(page.body, /<table/);
  assert.doesNotMatch(page.body, /<script[^>]+src=/, 'no external scripts');
});

test('admin: update, credentials, volumes, ports, devices, remove', async () => {
  const up = await call('PATCH', '/api/tenants/lc1', { iops: 8000 });
  assert.equal(up.status, 200, JSON.stringify(up.body));
  assert.equal(up.body.tenant.iops, 8000);
  const tooMuch = await call('PATCH', '/api/tenants/lc1', { iops: 5_000_000 });
  assert.equal(tooMuch.status, 422);
  assert.equal((await call('GET', '/api/tenants/lc1')).body.iops, 8000, 'refused update keeps the old objective');
  assert.equal((await call('PATCH', '/api/tenants/nope', { iops: 1 })).status, 404);
  assert.equal((await call('PATCH', '/api/tenants/lc1', { name: 'renamed' })).status, 400);

  const be = await call('POST', '/api/tenants', { name: 'be1', class: 'BE' });
  assert.equal(be.status, 201);
  const toLc = await call('PATCH', '/api/tenants/be1', { class: 'LC', iops: 100 });
  assert.equal(toLc.status, 400, 'BE to LC needs a full objective');

  const cred = await call('POST', '/api/tenants/be1/credential');
  assert.equal(cred.status, 201);
  assert.match(cred.body.secret, /^[0-9a-f]{64}$/);
  const del = await call('DELETE', '/api/tenants/be1/credential');
  assert.equal(del.status, 200);
  assert.equal(del.body.secret, undefined);
  assert.equal((await call('DELETE', '/api/tenants/be1/credential')).status, 404);

  const vol = await call('POST', '/api/volumes', { name: 'be1-data', owner: 'be1', size: 1 << 20 });
  assert.equal(vol.status, 201);
  assert.equal(vol.body.offset, 1 << 20, 'first fit after lc1');
  assert.equal((await call('POST', '/api/volumes', { name: 'clash', owner: 'be1', size: 4096, offset: 0 })).status, 409);
  const port = await call('POST', '/api/ports', { port: 0, tenant: 'be1', volume: 'be1-data' });
  assert.equal(port.status, 201);
  assert.equal((await call('POST', '/api/ports', { port: port.body.port, tenant: 'be1', volume: 'be1-data' })).status, 409);
  assert.equal((await call('POST', '/api/ports', { port: 30000, tenant: 'be1', volume: 'lc1' })).status, 403);
  assert.equal((await call('GET', '/api/ports')).body.length, 2);
  assert.equal((await call('DELETE', `/api/ports/${port.body.port}`)).status, 200);
  assert.equal((await call('DELETE', '/api/ports/abc')).status, 400);
  assert.equal((await call('GET', '/api/volumes')).body.length, 2);

  const dev = await call('GET', '/api/devices');
  assert.equal(dev.body[0].name, 'default');
  assert.equal(dev.body[0].allocatedBytes, 2 << 20);

  assert.equal((await call('PUT', '/api/tenants')).status, 405);
  assert.equal((await call('GET', '/api/nothing')).status, 404);
  assert.equal((await call('GET', '/elsewhere')).status, 404);

  const rm = await call('DELETE', '/api/tenants/be1');
  assert.equal(rm.status, 200);
  assert.equal((await call('GET', '/api/volumes')).body.length, 1, 'the tenant\'s volume went with it');
  assert.equal((await call('DELETE', '/api/tenants/be1')).status, 404);
});

test('admin: volumes resize in place, and freed bytes are zeroed before the range is reused', async () => {
  fx.zeroed.length = 0;
  const MiB = 1 << 20;
  const t = await call('POST', '/api/tenants', { name: 'rs', class: 'BE', volumeSize: MiB });
  assert.equal(t.status, 201, JSON.stringify(t.body));
  const at: number = t.body.volume.offset;
  assert.equal((await call('POST', '/api/volumes', { name: 'rs-next', owner: 'rs', size: MiB, offset: at + 2 * MiB })).status, 201);
  assert.deepEqual((await call('GET', '/api/volumes/rs')).body, { name: 'rs', device: 'default', owner: 'rs', offset: at, size: MiB });
  assert.equal((await call('GET', '/api/volumes/none')).status, 404);

  const grow = await call('PATCH', '/api/volumes/rs', { size: 2 * MiB });
  assert.equal(grow.status, 200, JSON.stringify(grow.body));
  assert.deepEqual([grow.body.offset, grow.body.size], [at, 2 * MiB]);
  const over = await call('PATCH', '/api/volumes/rs', { size: 3 * MiB });
  assert.equal(over.status, 409);
  assert.match(over.body.error, /rs-next/);
  const applied = fx.applied;
  for (const size of [0, 1000, -512, 'big', 2 ** 60, null]) {
    const r = await call('PATCH', '/api/volumes/rs', { size });
    assert.equal(r.status, 400, `size ${String(size)}: ${JSON.stringify(r.body)}`);
  }
  assert.equal((await call('PATCH', '/api/volumes/rs', {})).status, 400, 'size is required');
  assert.equal((await call('PATCH', '/api/volumes/rs', { size: MiB, owner: 'lc1' })).status, 400, 'only the size can change');
  assert.equal((await call('PATCH', '/api/volumes/none', { size: 4096 })).status, 404);
  assert.equal(fx.applied, applied, 'refused resizes change nothing');
  assert.deepEqual(fx.zeroed, [], 'growing zeroes nothing');

  const shrink = await call('PATCH', '/api/volumes/rs', { size: MiB / 2 });
  assert.equal(shrink.status, 200);
  assert.deepEqual(fx.zeroed, [{ device: 'default', offset: at + MiB / 2, length: 2 * MiB - MiB / 2 }], 'the freed tail is zeroed');

  fx.zeroed.length = 0;
  assert.equal((await call('DELETE', '/api/volumes/rs-next')).status, 200);
  assert.deepEqual(fx.zeroed, [{ device: 'default', offset: at + 2 * MiB, length: MiB }], 'a deleted volume is zeroed');

  // A device that fails to zero keeps the range from every new volume until a retry succeeds.
  fx.zeroError = -5;
  assert.equal((await call('DELETE', '/api/volumes/rs')).status, 200);
  const busy = await call('POST', '/api/volumes', { name: 'again', owner: 'rs', size: 4096, offset: at });
  assert.equal(busy.status, 409);
  assert.match(busy.body.error, /being zeroed/);
  assert.equal((await call('GET', '/api/devices')).body[0].scrubPendingBytes, MiB / 2);
  const elsewhere = await call('POST', '/api/volumes', { name: 'elsewhere', owner: 'rs', size: 4096 });
  assert.equal(elsewhere.status, 201);
  assert.ok(elsewhere.body.offset >= at + MiB / 2 || elsewhere.body.offset + 4096 <= at, 'first fit skips the unscrubbed range');
  fx.zeroError = 0;
  // The next change retries the scrub; then the range is free again.
  assert.equal((await call('DELETE', '/api/volumes/elsewhere')).status, 200);
  assert.equal((await call('POST', '/api/volumes', { name: 'again', owner: 'rs', size: 4096, offset: at })).status, 201);
  assert.equal((await call('DELETE', '/api/tenants/rs')).status, 200);
});

test('admin: /api/stats reports sampled IOPS and p95 against the objective', async () => {
  const id = fx.control.getTenant('lc1')!.id;
  server.sampler.sample();
  simulateReads(fx.counters, id, 2000, 1200);
  now += 1000;
  server.sampler.sample();
  const r = await call('GET', '/api/stats', undefined, { token: null });
  const t = r.body.tenants.find((x: { name: string }) => x.name === 'lc1');
  assert.equal(t.current.iops, 2000);
  assert.ok(t.current.p95Us >= 1200);
  assert.equal(t.objective.p95Us, 500);
  assert.equal(t.current.meetsObjective, false);
  assert.equal(t.series.iops.at(-1), 2000);
  assert.equal(r.body.devices[0].name, 'default');
  // Per-worker coalescing counters, as the fixture's worker wrote them.
  const row = fx.workerStats.row(0);
  row[WorkerField.COALESCE_CHECKS] = 10;
  row[WorkerField.COALESCE_SLEEPS] = 4;
  row[WorkerField.CONNECTIONS_OPENED] = 3;
  row[WorkerField.CONNECTIONS_CLOSED + 1] = 2; // 'error'
  row[WorkerField.DEVICE_IN_FLIGHT] = 128;
  row[WorkerField.DEVICE_AWAITING_SLOT] = 7;
  const w = (await call('GET', '/api/stats', undefined, { token: null })).body.workers;
  assert.deepEqual(w, [
    {
      worker: 0,
      coalesceChecks: 10,
      coalesceSleeps: 4,
      coalesceSleptUs: 0,
      connectionsOpened: 3,
      connectionsClosed: { peer: 0, error: 2, protocol: 0, revoked: 0, timeout: 0, shutdown: 0 },
      deviceInFlight: 128,
      deviceAwaitingSlot: 7,
    },
  ]);
  const metrics = (await call('GET', '/metrics', undefined, { token: null })).body as string;
  assert.match(metrics, /^reflex_worker_device_in_flight\{worker="0"\} 128$/m);
  assert.match(metrics, /^reflex_worker_device_awaiting_slot\{worker="0"\} 7$/m);
});

test('admin token: created once with mode 0600, reused, or given; constant-time compare', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-token-'));
  const t1 = loadOrCreateAdminToken(dir);
  assert.match(t1, /^[0-9a-f]{64}$/);
  assert.equal(fs.statSync(path.join(dir, 'admin.token')).mode & 0o777, 0o600);
  assert.equal(loadOrCreateAdminToken(dir), t1);
  assert.equal(loadOrCreateAdminToken(dir, 'given-token-0123456789'), 'given-token-0123456789');
  assert.throws(() => loadOrCreateAdminToken(dir, 'short'));
  assert.ok(tokenMatches(t1, t1));
  assert.ok(!tokenMatches(t1.slice(1), t1));
});

test('admin over TLS', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
  } catch {
    if (process.env.REFLEX_ALLOW_SKIP === '1') return t.skip('openssl not available');
    throw new Error('openssl is needed to make a test certificate (REFLEX_ALLOW_SKIP=1 to skip)');
  }
  const cert = fs.readFileSync(path.join(dir, 'cert.pem'));
  const s = await startAdminServer({ control: fx.control, host: '127.0.0.1', port: 0, token: TOKEN, tls: { cert, key: fs.readFileSync(path.join(dir, 'key.pem')) } });
  try {
    const https = await import('node:https');
    const body = await new Promise<string>((resolve, reject) => {
      https.get({ host: '127.0.0.1', port: s.port, path: '/api/tenants', ca: cert, headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve(text));
      }).on('error', reject);
    });
    assert.equal(JSON.parse(body)[0].name, 'lc1');
    // Plain HTTP to the TLS port does not get an answer.
    await assert.rejects(new Promise((resolve, reject) => http.get(`http://127.0.0.1:${s.port}/healthz`, resolve).on('error', reject)));
  } finally {
    await s.close();
  }
});
