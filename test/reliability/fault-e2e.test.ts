/**
 * Fault injection end to end (`faults` in the server config): device errors
 * reach the client as EIO / ENOSPC responses, requests outside the faulty
 * range and other tenants are untouched, and the server counts the errors.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type ReflexClient } from '../../src/client/index.ts';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';
import { Field } from '../../src/dataplane/tenant-counters.ts';

const KiB = 1024;
const MiB = 1 << 20;

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

function tenantId(srv: RunningServer, i: number): number {
  return srv.control.registry.tenants.get(srv.bindings[i].tenant.name)!.id;
}

describe('fault injection through the server', () => {
  let srv: RunningServer;
  let a: ReflexClient;
  let b: ReflexClient;

  before(async () => {
    // Tenant 0's volume starts at device offset 0, so the bad range is in it; tenant 1's is not.
    srv = await startServer(resolveConfig({ memory: '64M', workers: 2, ports: [{ port: 0 }, { port: 0 }], persist: false, faults: 'fail=0-64K' }, 2));
    assert.equal(srv.bindings[0].volume.offset, 0);
    assert.ok(srv.bindings[1].volume.offset >= 64 * KiB);
    a = await connect({ port: srv.bindings[0].port, connections: 2 });
    b = await connect({ port: srv.bindings[1].port, connections: 2 });
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await srv?.close();
  });

  it('requests touching the bad range fail with EIO; the rest of the volume works', async () => {
    const data = Buffer.alloc(4 * KiB, 0x42);
    assert.equal(await code(a.read(0, 4 * KiB)), 'EIO');
    assert.equal(await code(a.write(60 * KiB, Buffer.alloc(8 * KiB))), 'EIO', 'a write straddling the end of the range');
    assert.equal(await code(a.write(32 * KiB, data)), 'EIO');
    assert.equal(await code(a.write(MiB, data)), 'OK');
    assert.deepEqual(await a.read(MiB, 4 * KiB), data);
    assert.equal(await code(a.write(64 * KiB, data)), 'OK', 'the first byte past the range');
    assert.equal(await code(a.flush()), 'OK');
  });

  it('interleaved good and bad requests on one connection: only the bad ones fail', async () => {
    const ops: Array<Promise<string>> = [];
    for (let i = 0; i < 64; i++) {
      const bad = i % 3 === 0;
      const off = bad ? (i % 16) * 4 * KiB : 2 * MiB + i * 4 * KiB;
      ops.push(code(i % 2 === 0 ? a.write(off, Buffer.alloc(4 * KiB, i)) : a.read(off, 4 * KiB)));
    }
    const results = await Promise.all(ops);
    results.forEach((r, i) => assert.equal(r, i % 3 === 0 ? 'EIO' : 'OK', `request ${i}`));
  });

  it('another tenant is unaffected, and the error counters count only the faulty tenant', async () => {
    const errorsBefore = srv.counters.total(tenantId(srv, 0), Field.ERRORS);
    for (let i = 0; i < 10; i++) assert.equal(await code(a.read(i * 512, 512)), 'EIO');
    const data = Buffer.alloc(64 * KiB, 0x17);
    for (let off = 0; off < 256 * KiB; off += 64 * KiB) {
      await b.write(off, data);
      assert.deepEqual(await b.read(off, 64 * KiB), data);
    }
    assert.equal(srv.counters.total(tenantId(srv, 0), Field.ERRORS) - errorsBefore, 10);
    assert.equal(srv.counters.total(tenantId(srv, 1), Field.ERRORS), 0);
  });
});

describe('ENOSPC through the server', () => {
  it('writes past the budget fail with ENOSPC; reads still work', async () => {
    // One worker, so the per-engine byte budget is the server's.
    const srv = await startServer(resolveConfig({ memory: '16M', workers: 1, ports: [{ port: 0 }], persist: false, faults: 'full-after=64K,seed=3' }, 1));
    const c = await connect({ port: srv.bindings[0].port });
    try {
      const results: string[] = [];
      for (let i = 0; i < 20; i++) results.push(await code(c.write(i * 4 * KiB, Buffer.alloc(4 * KiB, i + 1))));
      assert.deepEqual(results, [...Array(16).fill('OK'), ...Array(4).fill('ENOSPC')]);
      assert.deepEqual(await c.read(15 * 4 * KiB, 4 * KiB), Buffer.alloc(4 * KiB, 16));
      assert.deepEqual(await c.read(16 * 4 * KiB, 4 * KiB), Buffer.alloc(4 * KiB), 'the refused write did not land');
    } finally {
      await c.close();
      await srv.close();
    }
  });
});
