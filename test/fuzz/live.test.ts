/**
 * Live-socket fuzzing, bounded for CI: mutated ReFlex and NBD streams from
 * many connections against an in-process server while a good client on
 * another tenant verifies everything it reads.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../../src/client/index.ts';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';
import { runLiveFuzz } from './live-fuzz.ts';

const MiB = 1 << 20;
let srv: RunningServer;

describe('live-socket fuzzing', () => {
  before(async () => {
    srv = await startServer(resolveConfig({ memory: '64M', workers: 2, ports: [{ port: 0 }, { port: 0 }], nbdPort: 0, persist: false }, 2));
  });
  after(async () => {
    await srv.close();
  });

  it('survives mutated streams on many connections; the good client sees only correct data', async () => {
    const exits: number[] = [];
    for (const w of srv.workers) w.once('exit', (code) => exits.push(code));
    const s = await runLiveFuzz({
      fuzzPort: srv.bindings[0].port,
      goodPort: srv.bindings[1].port,
      nbdPort: srv.nbdPort,
      durationMs: Number(process.env.LIVE_FUZZ_MS ?? 5000),
      concurrency: 16,
      seed: Number(process.env.FUZZ_SEED ?? 7),
      rss: () => process.memoryUsage.rss(),
    });
    assert.ok(s.connections > 100, `only ${s.connections} attacker connections`);
    assert.equal(s.hung, 0, 'every half-closed attacker is answered and closed');
    assert.equal(s.malformedReplies, 0, 'server responses always frame correctly');
    assert.ok(s.repliesReceived > 0, 'the server answered attackers');
    assert.deepEqual(s.goodErrors, [], 'good client errors');
    assert.equal(s.goodMismatches, 0, 'good client read wrong data');
    assert.ok(s.goodOps > 100, `good client made only ${s.goodOps} ops`);
    assert.deepEqual(exits, [], 'a data-plane worker exited');
    // This process holds the server's two workers (three V8 heaps), the
    // attackers and the 64 MiB memory device whose pages fill as attackers
    // write: growth levels off near 300 MiB (about 265 MiB after 5 s, 300
    // after 15 s); unbounded growth would blow through this.
    const growth = s.rssEnd - s.rssStart;
    assert.ok(growth < 448 * MiB, `RSS grew ${(growth / MiB).toFixed(0)} MiB (${(s.rssStart / MiB).toFixed(0)} -> ${(s.rssEnd / MiB).toFixed(0)})`);
    // Still serving, on both tenants.
    for (const b of srv.bindings) {
      const c = await connect({ port: b.port });
      const data = Buffer.alloc(4096, 0x33);
      await c.write(8 * MiB, data);
      assert.deepEqual(await c.read(8 * MiB, 4096), data);
      await c.close();
    }
  });
});
