/**
 * The stats pusher against a fake poster: what it sends, how it reports a
 * failing controller (once, and once more when it recovers), and that a slow
 * controller never has two pushes at once. Config validation of the push
 * settings is here too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pushPayload, StatsPusher, type Poster } from '../../src/control/stats-push.ts';
import { ConfigError, resolveConfig } from '../../src/control/config.ts';
import type { StatsView } from '../../src/control/admin-stats.ts';

const target = { url: 'http://127.0.0.1:9/stats', intervalMs: 1000 };

test('each tick POSTs the snapshot as JSON to the URL', async () => {
  const got: Array<{ url: string; body: unknown; timeoutMs: number }> = [];
  const post: Poster = async (url, body, timeoutMs) => {
    got.push({ url, body: JSON.parse(body), timeoutMs });
    return 204;
  };
  let n = 0;
  const p = new StatsPusher(target, () => ({ n: ++n }), { post, log: () => assert.fail('nothing to report') });
  await p.tick();
  await p.tick();
  assert.deepEqual(got, [
    { url: target.url, body: { n: 1 }, timeoutMs: 1000 },
    { url: target.url, body: { n: 2 }, timeoutMs: 1000 },
  ]);
  assert.equal(p.state.sent, 2);
  assert.equal(p.state.failed, 0);
  assert.ok(p.state.lastSuccessAt !== null);
});

test('a failing controller is reported once, and once more when it works again', async () => {
  const answers: Array<number | Error> = [500, new Error('boom'), 503, 200, 200, 500];
  const post: Poster = async () => {
    const a = answers.shift()!;
    if (a instanceof Error) throw a;
    return a;
  };
  const lines: string[] = [];
  const p = new StatsPusher(target, () => ({}), { post, log: (l) => lines.push(l) });
  for (let i = 0; i < 6; i++) await p.tick();
  assert.equal(p.state.failed, 4);
  assert.equal(p.state.sent, 2);
  assert.equal(p.state.lastError, 'HTTP 500');
  assert.equal(lines.length, 3, lines.join('\n'));
  assert.match(lines[0], /failed: HTTP 500/);
  assert.match(lines[1], /working again/);
  assert.match(lines[2], /failed: HTTP 500/);
});

test('a slow controller never has two pushes in flight: ticks meanwhile are skipped', async () => {
  let inFlight = 0;
  let most = 0;
  let release!: () => void;
  const post: Poster = () => {
    inFlight++;
    most = Math.max(most, inFlight);
    return new Promise((resolve) => {
      release = () => {
        inFlight--;
        resolve(200);
      };
    });
  };
  const p = new StatsPusher(target, () => ({}), { post });
  const first = p.tick();
  const second = p.tick();
  const third = p.tick();
  assert.equal(p.state.skipped, 2);
  release();
  await Promise.all([first, second, third]);
  assert.equal(most, 1);
  assert.equal(p.state.sent, 1);
});

test('a snapshot that throws is a failed push, not a crash', async () => {
  const lines: string[] = [];
  const p = new StatsPusher(target, () => {
    throw new Error('no stats yet');
  }, { post: async () => 200, log: (l) => lines.push(l) });
  await p.tick();
  assert.equal(p.state.failed, 1);
  assert.equal(p.state.lastError, 'no stats yet');
  assert.equal(lines.length, 1);
});

test('stop() aborts a POST to a hung controller at once', async () => {
  let aborted = false;
  const post: Poster = (_url, _body, _timeoutMs, abort) =>
    new Promise((_resolve, reject) => {
      abort.addEventListener('abort', () => {
        aborted = true;
        reject(new Error('aborted'));
      });
    });
  const p = new StatsPusher({ url: target.url, intervalMs: 60_000 }, () => ({}), { post, log: () => {} });
  void p.tick();
  const t0 = performance.now();
  await p.stop();
  assert.ok(aborted, 'the POST in flight was not aborted');
  assert.ok(performance.now() - t0 < 100);
  await p.tick();
  assert.equal(p.state.sent + p.state.failed, 1, 'no push after stop()');
});

test('the pushed document drops the per-second series and names the server', () => {
  const view = {
    now: 1,
    intervalMs: 1000,
    devices: [],
    workers: [],
    tenants: [{ name: 'gold', series: { t: [1], iops: [2], bytesPerSec: [3], p95Us: [4] }, connections: 2 }],
  } as unknown as StatsView;
  const server = { id: 'fs1', host: '127.0.0.1', ports: [1234], nbdPort: null, attachPort: null, adminPort: 7070, startedAt: 0 };
  const doc = pushPayload(server, view) as unknown as { server: unknown; tenants: Array<Record<string, unknown>> };
  assert.deepEqual(doc.server, server);
  assert.equal(doc.tenants[0].name, 'gold');
  assert.equal(doc.tenants[0].connections, 2);
  assert.equal('series' in doc.tenants[0], false);
});

test('push settings are checked: a URL that is not http(s), an interval out of range or without a URL, a bad server id', () => {
  const base = { memory: '16M' };
  assert.deepEqual(resolveConfig({ ...base, pushUrl: 'http://127.0.0.1:8080/in' }, 1).push, { url: 'http://127.0.0.1:8080/in', intervalMs: 1000 });
  assert.equal(resolveConfig(base, 1).push, null);
  for (const [raw, msg] of [
    [{ pushUrl: 'not a url' }, /not a URL/],
    [{ pushUrl: 'ftp://host/x' }, /http/],
    [{ pushUrl: 'http://h/x', pushIntervalMs: 10 }, /100 to 3600000/],
    [{ pushUrl: 'http://h/x', pushIntervalMs: 1.5 }, /integer/],
    [{ pushIntervalMs: 1000 }, /without pushUrl/],
    [{ serverId: 'a b' }, /serverId/],
    [{ serverId: '' }, /serverId/],
    [{ pushUrl: 'http://user:secret@127.0.0.1/x' }, /credentials/],
  ] as const) {
    assert.throws(() => resolveConfig({ ...base, ...raw }, 1), (e: Error) => e instanceof ConfigError && msg.test(e.message), JSON.stringify(raw));
  }
});
