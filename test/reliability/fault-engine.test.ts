/**
 * FaultEngine around MemoryEngine: the requests a spec picks fail with the
 * right errno and never reach the device; every other request passes through
 * with its data intact; completions never happen inside submit.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Errno, newRequest, Op, type Engine, type IoRequest, type OpCode } from '../../src/storage/engine.ts';
import { FaultEngine, parseFaultSpec } from '../../src/storage/fault-engine.ts';
import { MemoryEngine } from '../../src/storage/memory-engine.ts';

const MiB = 1 << 20;

/** Submits one request and resolves with it once completed; checks it did not complete synchronously. */
function io(e: Engine, op: OpCode, offset: number, length: number, buf: Buffer | null = null): Promise<IoRequest> {
  return new Promise((resolve) => {
    const r = newRequest();
    r.op = op;
    r.offset = offset;
    r.length = length;
    r.buf = buf ?? (op === Op.READ || op === Op.WRITE ? Buffer.alloc(length) : null);
    r.result = 1; // sentinel: the engine must set it
    let submitted = false;
    r.ctx = (done: IoRequest) => {
      assert.ok(submitted, 'completed inside submit');
      resolve(done);
    };
    e.submit(r);
    submitted = true;
    e.kick();
  });
}

function wrap(spec: Parameters<typeof parseFaultSpec>[0] | object, size = 4 * MiB): { mem: MemoryEngine; fe: FaultEngine } {
  const mem = new MemoryEngine(size);
  const fe = new FaultEngine(mem, typeof spec === 'string' ? parseFaultSpec(spec) : spec);
  fe.onComplete = (r) => (r.ctx as (r: IoRequest) => void)(r);
  return { mem, fe };
}

describe('parseFaultSpec', () => {
  it('parses every key, size suffixes and both range forms', () => {
    const s = parseFaultSpec('read-error=0.01, write-error=0.5,delay-us=500,full-after=64M,fail=0-4096,fail=1M+8K,unsupported=trim/write-zeroes,seed=7');
    assert.deepEqual(s, {
      readErrorRate: 0.01,
      writeErrorRate: 0.5,
      delayUs: 500,
      fullAfterBytes: 64 * MiB,
      failOffsets: [
        [0, 4096],
        [MiB, MiB + 8192],
      ],
      unsupported: ['trim', 'write-zeroes'],
      seed: 7,
    });
    assert.deepEqual(parseFaultSpec(''), {});
  });

  it('rejects unknown keys, bad rates, bad sizes and empty ranges', () => {
    for (const bad of ['bogus=1', 'read-error=1.5', 'read-error=', 'write-error=-0.1', 'delay-us=abc', 'full-after=12Q', 'fail=10-10', 'fail=20-10', 'fail=5', 'noequals', 'unsupported=flush', 'unsupported=', 'unsupported=trim/']) {
      assert.throws(() => parseFaultSpec(bad), RangeError, bad);
    }
  });
});

describe('FaultEngine', () => {
  it('passes everything through untouched with an empty spec', async () => {
    const { mem, fe } = wrap({});
    const data = Buffer.alloc(8192, 0xab);
    assert.equal((await io(fe, Op.WRITE, 4096, 8192, data)).result, 0);
    const back = await io(fe, Op.READ, 4096, 8192);
    assert.equal(back.result, 0);
    assert.deepEqual(back.buf, data);
    assert.equal(mem.inFlight, 0);
    assert.equal(fe.inFlight, 0);
    assert.equal(fe.name, 'memory+faults');
    assert.equal(fe.size, mem.size);
    assert.equal(fe.stats.passed, 2);
  });

  it('fails requests touching a bad range with EIO and leaves the device unchanged', async () => {
    const { mem, fe } = wrap('fail=64K-128K');
    const probe = Buffer.from(mem.store).subarray(60 * 1024, 132 * 1024);
    // Overlaps on both edges and inside; touching the edges from outside passes.
    for (const [off, len] of [
      [60 * 1024, 8192],
      [64 * 1024, 512],
      [100 * 1024, 4096],
      [127 * 1024, 4096],
    ]) {
      const w = await io(fe, Op.WRITE, off, len, Buffer.alloc(len, 0xee));
      assert.equal(w.result, Errno.EIO, `write ${off}+${len}`);
      assert.equal((await io(fe, Op.READ, off, len)).result, Errno.EIO, `read ${off}+${len}`);
      assert.equal((await io(fe, Op.TRIM, off, len)).result, Errno.EIO, `trim ${off}+${len}`);
    }
    assert.ok(probe.every((b) => b === 0), 'a failed write reached the device');
    assert.equal((await io(fe, Op.WRITE, 60 * 1024, 4096, Buffer.alloc(4096, 1))).result, 0);
    assert.equal((await io(fe, Op.WRITE, 128 * 1024, 4096, Buffer.alloc(4096, 2))).result, 0);
    assert.equal((await io(fe, Op.FLUSH, 0, 0)).result, 0, 'flush is never failed');
    assert.equal(fe.stats.rangeErrors, 12);
  });

  it('injects read and write errors at about the configured rates, reproducibly per seed', async () => {
    const run = async (seed: number): Promise<number[]> => {
      const { fe } = wrap({ readErrorRate: 0.2, writeErrorRate: 0.1, seed });
      const out: number[] = [];
      for (let i = 0; i < 2000; i++) {
        const op = i % 2 === 0 ? Op.READ : Op.WRITE;
        out.push((await io(fe, op, (i % 64) * 512, 512)).result);
      }
      return out;
    };
    const a = await run(42);
    assert.deepEqual(await run(42), a, 'same seed, same faults');
    assert.notDeepEqual(await run(43), a, 'another seed, other faults');
    const readFails = a.filter((r, i) => i % 2 === 0 && r === Errno.EIO).length;
    const writeFails = a.filter((r, i) => i % 2 === 1 && r === Errno.EIO).length;
    // 1000 draws each: binomial sd ~ 12.6 and 9.5; allow about 4 sd.
    assert.ok(readFails > 150 && readFails < 250, `read failures ${readFails}/1000 at rate 0.2`);
    assert.ok(writeFails > 60 && writeFails < 140, `write failures ${writeFails}/1000 at rate 0.1`);
    assert.ok(a.every((r) => r === 0 || r === Errno.EIO));
  });

  it('a failed write does not reach the device; a good one after it does', async () => {
    const { mem, fe } = wrap({ writeErrorRate: 1 });
    assert.equal((await io(fe, Op.WRITE, 0, 512, Buffer.alloc(512, 9))).result, Errno.EIO);
    assert.equal(Buffer.from(mem.store)[0], 0);
    const read = await io(fe, Op.READ, 0, 512);
    assert.equal(read.result, 0, 'reads are unaffected by the write rate');
  });

  it('returns ENOSPC for writes past the byte budget, and only for those', async () => {
    const { fe } = wrap('full-after=16K');
    const results: number[] = [];
    for (let i = 0; i < 6; i++) results.push((await io(fe, Op.WRITE, i * 4096, 4096, Buffer.alloc(4096, i))).result);
    assert.deepEqual(results, [0, 0, 0, 0, Errno.ENOSPC, Errno.ENOSPC]);
    assert.equal((await io(fe, Op.READ, 0, 4096)).result, 0);
    assert.equal((await io(fe, Op.FLUSH, 0, 0)).result, 0);
    assert.equal(fe.stats.enospc, 2);
  });

  it('delays requests by at least delay-us and keeps their data', async () => {
    const { fe } = wrap('delay-us=20000');
    const data = Buffer.alloc(4096, 0x5a);
    const t0 = performance.now();
    const [w] = await Promise.all([io(fe, Op.WRITE, 0, 4096, data), Promise.resolve().then(() => assert.equal(fe.inFlight, 1))]);
    const elapsed = performance.now() - t0;
    assert.equal(w.result, 0);
    assert.ok(elapsed >= 19, `completed after ${elapsed.toFixed(1)} ms, delay 20 ms`);
    const r = await io(fe, Op.READ, 0, 4096);
    assert.deepEqual(r.buf, data);
    assert.equal(fe.stats.delayed, 2);
    assert.equal(fe.inFlight, 0);
  });

  it('close waits for held requests', async () => {
    const { fe } = wrap('delay-us=5000');
    let done = 0;
    fe.onComplete = () => done++;
    for (let i = 0; i < 10; i++) {
      const r = newRequest();
      r.op = Op.WRITE;
      r.offset = i * 512;
      r.length = 512;
      r.buf = Buffer.alloc(512);
      fe.submit(r);
    }
    await fe.close();
    await new Promise((r) => setImmediate(r));
    assert.equal(done, 10);
  });
});
