import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { loadUring } from '../../src/storage/uring-native.ts';
import { UringEngine } from '../../src/storage/uring-engine.ts';

test('REFLEX_NO_URING=1 forces the fallback with a reason', () => {
  const saved = process.env.REFLEX_NO_URING;
  process.env.REFLEX_NO_URING = '1';
  try {
    const r = loadUring();
    assert.equal(r.ok, false);
    assert.ok(!r.ok && /REFLEX_NO_URING/.test(r.reason), 'reason names the variable');
    assert.throws(() => UringEngine.open('/nonexistent', {}), /io_uring unavailable: .*REFLEX_NO_URING/);
  } finally {
    if (saved === undefined) delete process.env.REFLEX_NO_URING;
    else process.env.REFLEX_NO_URING = saved;
  }
});

test('loadUring never throws and reports ok or a reason', () => {
  const r = loadUring();
  if (r.ok) {
    assert.equal(r.native.probe(), 0);
    assert.equal(typeof r.native.Ring, 'function');
  } else {
    assert.ok(r.reason.length > 0);
  }
});

test('a fresh process with REFLEX_NO_URING=1 sees the fallback', () => {
  const url = new URL('../../src/storage/uring-native.ts', import.meta.url).href;
  const code = `import(${JSON.stringify(url)}).then(m => console.log(JSON.stringify(m.loadUring())))`;
  const out = spawnSync(process.execPath, ['-e', code], {
    env: { ...process.env, REFLEX_NO_URING: '1' },
    encoding: 'utf8',
  });
  assert.equal(out.status, 0, out.stderr);
  const parsed = JSON.parse(out.stdout) as { ok: boolean; reason: string };
  assert.equal(parsed.ok, false);
  assert.match(parsed.reason, /REFLEX_NO_URING=1/);
});

test('alloc returns zeroed buffers with distinct table ids', { skip: !loadUring().ok && 'io_uring unavailable' }, () => {
  const r = loadUring();
  assert.ok(r.ok);
  const [a, ida] = r.native.alloc(8192);
  const [b, idb] = r.native.alloc(4096);
  assert.equal(a.length, 8192);
  assert.equal(b.length, 4096);
  assert.notEqual(ida, idb);
  assert.ok(a.every((x) => x === 0));
});
