/**
 * Crash safety, bounded for CI: a few SIGKILLs of a file-backed server
 * process during mixed writes, reads and flushes; every acknowledged write
 * must read back after the restart. The long run is bench/reliability.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runCrashTrials, runRegistryCrash } from './crash-trials.ts';

describe('crash safety (SIGKILL)', () => {
  it('keeps every acknowledged write across 5 kills', async () => {
    const r = await runCrashTrials({ trials: 5, clients: 3, lanesPerClient: 4, blocksPerLane: 16, minRunMs: 150, maxRunMs: 700, seed: Number(process.env.CRASH_SEED ?? 11) });
    assert.equal(r.trials, 5);
    assert.ok(r.acknowledgedWrites > 500, `only ${r.acknowledgedWrites} acknowledged writes`);
    assert.ok(r.flushesCompleted > 0 && r.readsVerified > 0, 'reads and flushes were mixed in');
    assert.equal(r.readMismatches, 0, 'a read during the run returned something other than the last acknowledged write');
    assert.equal(r.lost, 0, `lost acknowledged writes:\n${r.lossDetails.join('\n')}`);
  });

  it('the checker notices a damaged block (self-test)', async () => {
    const r = await runCrashTrials({ trials: 1, clients: 1, lanesPerClient: 2, blocksPerLane: 8, minRunMs: 200, maxRunMs: 300, seed: 5, corruptOneAcked: true });
    assert.equal(r.lost, 1, r.lossDetails.join('\n'));
  });

  it('a tenant created through the admin API, and its data, survive a SIGKILL (persistence on)', async () => {
    const r = await runRegistryCrash();
    assert.ok(r.tenantCreated, r.note ?? 'tenant not created');
    assert.ok(r.tenantRestored, 'tenant gone after restart');
    assert.ok(r.portRestored, 'port binding gone after restart');
    assert.ok(r.dataRestored, 'data written through the tenant port gone after restart');
  });
});
