/**
 * Per-worker counters in shared memory: a worker's row is a view onto the
 * shared buffer, and bad sizes, workers or fields are refused clearly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WORKER_FIELD_COUNT, WorkerField, WorkerStats } from '../../src/dataplane/worker-stats.ts';

test('a row written by one view is read through another over the same memory', () => {
  const sab = WorkerStats.allocate(3);
  const writer = new WorkerStats(sab, 3).row(2);
  writer[WorkerField.COALESCE_SLEEPS] = 7;
  writer[WorkerField.COALESCE_SLEPT_US] += 280;
  const reader = new WorkerStats(sab, 3);
  assert.equal(reader.get(2, WorkerField.COALESCE_SLEEPS), 7);
  assert.equal(reader.get(2, WorkerField.COALESCE_SLEPT_US), 280);
  assert.equal(reader.get(1, WorkerField.COALESCE_SLEEPS), 0, 'rows do not overlap');
});

test('bad sizes, workers and fields are RangeErrors', () => {
  const sab = WorkerStats.allocate(2);
  assert.throws(() => new WorkerStats(sab, 3), /worker stats: \d+ bytes for 3 workers/);
  const w = new WorkerStats(sab, 2);
  for (const bad of [-1, 2, 1.5, NaN]) assert.throws(() => w.row(bad), RangeError, String(bad));
  for (const bad of [-1, WORKER_FIELD_COUNT]) assert.throws(() => w.get(0, bad), RangeError, String(bad));
  assert.throws(() => w.get(5, 0), RangeError);
});
