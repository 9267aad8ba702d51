/**
 * `reflex bench` as a user runs it (a child process), against the real
 * server started in this process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { useMemoryServer } from '../helpers/memory-server.ts';

const CLI = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const server = useMemoryServer();

function run(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { timeout: 60_000, env }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const bench = (args: string[]): ReturnType<typeof run> => run([CLI, 'bench', '--port', String(server.port), ...args]);

test('closed loop for 1 s reports IOPS and latencies as JSON', async () => {
  const r = await bench(['--conns', '2', '--qd', '8', '--duration', '1', '--warmup', '0.2', '--read-pct', '70', '--json', '--server-pid', String(process.pid)]);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { config: { span: number; sectorSize: number }; results: Array<{ achievedIops: number; completed: number; errors: number; latencyUs: { p50: number; p99: number }; serverCpuSec: number }> };
  assert.equal(out.config.span, 64 * 2 ** 20, 'span defaults to the volume size from HELLO');
  assert.equal(out.results.length, 1);
  const row = out.results[0];
  assert.ok(row.achievedIops > 0);
  assert.ok(row.completed > 0);
  assert.equal(row.errors, 0);
  assert.ok(row.latencyUs.p50 > 0 && row.latencyUs.p99 >= row.latencyUs.p50);
  assert.ok(row.serverCpuSec > 0, 'the server (this process) used CPU in the window');
});

test('an open-loop sweep gives one row per rate, near the requested rate', async () => {
  const r = await bench(['--sweep', '500,1000', '--duration', '1', '--warmup', '0.2', '--threads', '2', '--conns', '2', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { results: Array<{ requestedIops: number; achievedIops: number }> };
  assert.deepEqual(out.results.map((x) => x.requestedIops), [500, 1000]);
  for (const row of out.results) assert.ok(Math.abs(row.achievedIops / row.requestedIops - 1) < 0.3, `achieved ${row.achievedIops} of ${row.requestedIops}`);
});

/** Runs `fn` with a sparse file of `size` bytes in a fresh directory, removed afterwards. */
async function withImage(size: number, fn: (file: string) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-bench-local-'));
  try {
    const file = path.join(dir, 'local.img');
    fs.writeFileSync(file, Buffer.alloc(0));
    fs.truncateSync(file, size);
    await fn(file);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('--local drives a file through the engine in closed loop (reaping) and open loop (event loop)', async () => {
  await withImage(16 * 2 ** 20, async (file) => {
    for (const mode of [['--qd', '1'], ['--qd', '16'], ['--iops', '2000', '--qd', '16']]) {
      const r = await run([CLI, 'bench', '--local', file, ...mode, '--duration', '1', '--warmup', '0.2', '--read-pct', '70', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const row = (JSON.parse(r.stdout) as { results: Array<{ achievedIops: number; completed: number; errors: number }> }).results[0];
      assert.equal(row.errors, 0, mode.join(' '));
      assert.ok(row.completed > 500, `${mode.join(' ')}: ${row.completed} completed`);
    }
  });
});

test('--local says which engine ran, and warns once when it fell back to the fs engine', async () => {
  await withImage(4 * 2 ** 20, async (file) => {
    const args = [CLI, 'bench', '--local', file, '--qd', '4', '--duration', '0.3', '--warmup', '0', '--json', '--quiet'];
    type Out = { config: { localEngine: { engine: string; queueDepth?: number; fallbackReason?: string } } };
    const forced = await run(args, { ...process.env, REFLEX_NO_URING: '1' });
    assert.equal(forced.code, 0, forced.stderr);
    const warnings = forced.stderr.split('\n').filter((l) => l.startsWith('warning:'));
    assert.equal(warnings.length, 1, forced.stderr);
    assert.match(warnings[0], /io_uring engine unavailable \(io_uring disabled by REFLEX_NO_URING=1\); using Node's fs engine/);
    const fell = (JSON.parse(forced.stdout) as Out).config.localEngine;
    assert.equal(fell.engine, 'file');
    assert.match(fell.fallbackReason ?? '', /REFLEX_NO_URING/);
    const env = { ...process.env };
    delete env.REFLEX_NO_URING;
    const plain = await run([...args, '--queue-depth', '12'], env);
    assert.equal(plain.code, 0, plain.stderr);
    const engine = (JSON.parse(plain.stdout) as Out).config.localEngine;
    if (engine.engine === 'uring') {
      assert.doesNotMatch(plain.stderr, /warning:/);
      assert.equal(engine.queueDepth, 12, 'the ring has the slots asked for');
    } else assert.match(plain.stderr, /warning: io_uring engine unavailable/, 'a fallback is never silent');
  });
});

test('bad flags are usage errors', async () => {
  const r = await bench(['--qd', 'lots']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--qd/);
  const stray = await bench(['--queue-depth', '64']);
  assert.equal(stray.code, 2);
  assert.match(stray.stderr, /--queue-depth is for --local runs/);
  const tooDeep = await run([CLI, 'bench', '--local', 'nowhere.img', '--queue-depth', '5000']);
  assert.equal(tooDeep.code, 2);
  assert.match(tooDeep.stderr, /--queue-depth/);
});
