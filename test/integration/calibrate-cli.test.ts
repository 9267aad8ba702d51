import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from '../../src/cli/calibrate.ts';
import { UsageError } from '../../src/cli/usage-error.ts';
import { parseDevModel, parseDeviceModelJson } from '../../src/qos/device-model.ts';

/**
 * A directory on a real disk: O_DIRECT and the measurement mean nothing on
 * tmpfs, so prefer the repository's (git-ignored) data/ folder.
 */
function diskDir(): string {
  const repoData = path.resolve(import.meta.dirname, '../../data');
  fs.mkdirSync(repoData, { recursive: true });
  return fs.mkdtempSync(path.join(repoData, 'calibrate-test-'));
}

test('calibrate --quick writes a parseable model with monotone rows, both formats, sweep and charts', { timeout: 90_000 }, async () => {
  const dir = diskDir();
  const saved = { log: console.log, err: process.stderr.write };
  const stdout: string[] = [];
  const stderr: string[] = [];
  try {
    console.log = (...a: unknown[]): void => void stdout.push(a.join(' '));
    process.stderr.write = ((chunk: string): boolean => (stderr.push(String(chunk)), true)) as typeof process.stderr.write;
    const out = path.join(dir, 'dev.devmodel');
    const started = Date.now();
    const rc = await run([path.join(dir, 'dev.img'), '--size', '32M', '--quick', '--out', out]);
    console.log = saved.log;
    process.stderr.write = saved.err;
    assert.equal(rc, 0);
    assert.ok(Date.now() - started < 60_000, 'quick calibration should take well under a minute');

    const model = parseDevModel(fs.readFileSync(out, 'utf8'), out);
    assert.equal(model.readCost4k, 100);
    assert.ok(model.writeCost4k >= 100, `write cost ${model.writeCost4k}`);
    assert.ok(model.maxTokenRate > 0);
    assert.ok(model.tokenLimits.length >= 1);
    for (let i = 1; i < model.tokenLimits.length; i++) {
      const [a, b] = [model.tokenLimits[i - 1], model.tokenLimits[i]];
      assert.ok(b.p95LatencyUs > a.p95LatencyUs);
      assert.ok(b.maxTokenRate >= a.maxTokenRate, 'mixed column must not decrease');
      assert.ok(b.maxReadOnlyTokenRate >= a.maxReadOnlyTokenRate, 'read-only column must not decrease');
    }
    for (const r of model.tokenLimits) assert.ok(r.maxTokenRate <= model.maxTokenRate && r.maxReadOnlyTokenRate <= model.maxTokenRate);
    assert.deepEqual(parseDeviceModelJson(fs.readFileSync(path.join(dir, 'dev.json'), 'utf8')), model);

    const sweep = JSON.parse(fs.readFileSync(path.join(dir, 'dev.sweep.json'), 'utf8'));
    const fractions = new Set(sweep.steps.map((s: { readFraction: number }) => s.readFraction));
    assert.deepEqual([...fractions].sort(), [0.5, 0.7, 0.9, 1]);
    assert.ok(sweep.steps.some((s: { sizeBytes: number }) => s.sizeBytes === 32768));
    for (const s of sweep.steps) assert.ok(s.achievedIops > 0 && s.read.p95 > 0, JSON.stringify(s));

    const chart = fs.readFileSync(path.join(dir, 'dev.svg'), 'utf8');
    for (const name of ['read-only', '90% reads', '70% reads', '50% reads']) assert.ok(chart.includes(name), name);
    assert.ok((chart.match(/<path /g) ?? []).length >= 4);
    assert.ok(fs.readFileSync(path.join(dir, 'dev-sizes.svg'), 'utf8').includes('32 KiB'));

    assert.ok(stderr.some((l) => /\[\d+\/\d+\] read-only \d+ IOPS: achieved \d+, p95 \d+ µs/.test(l)), 'progress lines on stderr');
    assert.ok(stderr.some((l) => /sequential fill 100%/.test(l)), 'a created file is filled first');
    assert.ok(stdout.some((l) => /^write cost: \d+ tokens/.test(l)));
  } finally {
    console.log = saved.log;
    process.stderr.write = saved.err;
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('calibrate refuses bad usage with UsageError', async () => {
  const dir = diskDir();
  try {
    const existing = path.join(dir, 'exists.img');
    fs.writeFileSync(existing, 'x');
    await assert.rejects(run([]), UsageError);
    await assert.rejects(run([existing]), /--force/);
    await assert.rejects(run([path.join(dir, 'new.img')]), /--size/);
    await assert.rejects(run([path.join(dir, 'new.img'), '--size', 'lots']), UsageError);
    await assert.rejects(run([path.join(dir, 'new.img'), '--size', '64M', '--engine', 'magic']), UsageError);
    await assert.rejects(run([path.join(dir, 'new.img'), '--size', '64M', '--bogus']), UsageError);
    await assert.rejects(run([path.join(dir, 'new.img'), '--size', '64M', '--step-seconds', '-1']), UsageError);
    assert.ok(!fs.existsSync(path.join(dir, 'new.img')), 'nothing is created on a usage error');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
