/**
 * Load, abuse and graceful shutdown against a server child process, bounded
 * for CI (1,000 held connections; the 10,000-connection run is
 * bench/reliability.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runAbuse } from './abuse.ts';
import { spawnServer } from './server-process.ts';
import { runShutdown } from './shutdown.ts';

const MiB = 1 << 20;

describe('load and abuse', () => {
  it('holds 1,000 connections while slow, non-reading and churning clients run; a good client is not starved', async () => {
    const p = await spawnServer(['--memory', '64M', '--port', '0', '--workers', '2', '--no-persist', '--no-admin'], { fileLimit: 4096 });
    try {
      const r = await runAbuse({ port: p.ports[0], hold: 1000, slow: 10, nonReaders: 2, nonReaderBytes: 4096, churners: 2, phaseMs: 2000, rss: p.rss, sourceAddresses: 2 });
      assert.equal(r.held, 1000, `${r.holdFailures} connections refused`);
      assert.ok(r.stillOpen >= 1000, `only ${r.stillOpen} abusive connections still open at the end`);
      assert.equal(r.goodErrors, 0, 'the good client got errors');
      assert.ok(r.abuseOps > 50, `good client managed only ${r.abuseOps} ops under abuse`);
      // Two shared cores carry the abusers, the server and the good client: a loose bound that still catches starvation.
      assert.ok(r.abuseP99Us < 250_000, `good client's p99 under abuse ${(r.abuseP99Us / 1000).toFixed(1)} ms (alone ${(r.aloneP99Us / 1000).toFixed(2)} ms)`);
      assert.ok(r.churned > 50 && r.slowBytes > 0 && r.nonReaderRequests > 0, 'every kind of abuse ran');
      assert.ok(r.rssPeak - r.rssBefore < 512 * MiB, `server RSS grew ${((r.rssPeak - r.rssBefore) / MiB).toFixed(0)} MiB`);
      assert.ok(p.rss() > 0, 'server still running');
    } finally {
      p.kill('SIGTERM');
      assert.equal(await p.exited, 0, 'server exits cleanly after the abuse');
    }
  });

  it('clients that never read 1 MiB replies cost bounded memory (reply bytes, not request count, throttle them)', async () => {
    const p = await spawnServer(['--memory', '256M', '--port', '0', '--workers', '2', '--no-persist', '--no-admin'], { fileLimit: 4096 });
    try {
      const r = await runAbuse({ port: p.ports[0], hold: 0, slow: 0, nonReaders: 5, nonReaderBytes: MiB, churners: 0, phaseMs: 3000, rss: p.rss });
      assert.ok(r.nonReaderRequests > 0, 'the non-readers sent requests');
      assert.equal(r.goodErrors, 0, 'the good client got errors');
      // 5 connections x 4 MiB of replies in the making, plus buffers and slack.
      assert.ok(r.rssPeak - r.rssBefore < 200 * MiB, `server RSS grew ${((r.rssPeak - r.rssBefore) / MiB).toFixed(0)} MiB`);
    } finally {
      p.kill('SIGTERM');
      assert.equal(await p.exited, 0);
    }
  });

  it('SIGTERM: in-flight requests complete, new ones get ESHUTDOWN, the process exits 0', async () => {
    const r = await runShutdown({ delayUs: 300_000, inFlight: 32 });
    assert.deepEqual(r.inFlightFailed, [], 'in-flight requests failed');
    assert.equal(r.inFlightOk, 32);
    assert.equal(r.lateServed, 0, 'requests after SIGTERM were still served');
    assert.equal(r.lateShutdown + r.lateClosed, r.lateRequests);
    assert.ok(r.lateShutdown > 0, 'late requests are answered ESHUTDOWN while the connection drains');
    assert.equal(r.exitCode, 0);
    assert.ok(r.exitMs < 10_000, `exit took ${r.exitMs.toFixed(0)} ms`);
  });
});
