import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { randomBytes, randomInt } from 'node:crypto';
import { Errno, Op, newRequest } from '../../src/storage/engine.ts';
import type { IoRequest, OpCode } from '../../src/storage/engine.ts';
import { loadUring } from '../../src/storage/uring-native.ts';
import { UringEngine } from '../../src/storage/uring-engine.ts';
import { reapReady } from '../../src/storage/reap-ready.ts';

const skip = loadUring().ok ? false : `io_uring unavailable: ${(loadUring() as { reason: string }).reason}`;
let dir = '';

before(() => {
  // A disk-backed directory: O_DIRECT needs a filesystem that supports it.
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-uring-'));
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function open(name: string, size: number, queueDepth = 32): UringEngine {
  const e = UringEngine.open(path.join(dir, name), { create: true, size, queueDepth });
  e.onComplete = (req) => (req.ctx as (r: IoRequest) => void)(req);
  return e;
}

function io(e: UringEngine, op: OpCode, offset: number, length: number, buf: Buffer | null, fua = false): Promise<number> {
  return new Promise((resolve) => {
    const r = newRequest();
    r.op = op;
    r.offset = offset;
    r.length = length;
    r.buf = buf;
    r.fua = fua;
    r.ctx = (done: IoRequest) => resolve(done.result);
    e.submit(r);
  });
}

test('a queue depth that is not a power of two opens and fills every slot', { skip }, async () => {
  // The kernel rounds the SQ up (12 -> 16); the descriptor array must cover it.
  const e = open('depth12.img', 1 << 20, 12);
  const bufs = Array.from({ length: 40 }, () => e.allocBuffer(4096));
  const reads = bufs.map((b, i) => io(e, Op.READ, (i % 256) * 4096, 4096, b));
  e.kick();
  assert.equal(e.queueDepth, 12);
  assert.equal(e.awaitingSlot, 28, 'requests beyond the ring depth wait in the overflow');
  assert.deepEqual(await Promise.all(reads), reads.map(() => 0));
  assert.equal(e.inFlight, 0);
  await e.close();
});

test('random aligned writes read back identical, more requests than ring slots', { skip }, async () => {
  const size = 8 << 20;
  const e = open('integrity.img', size, 8);
  assert.equal(e.blockSize % 512, 0);
  const model = Buffer.alloc(size);
  for (let round = 0; round < 20; round++) {
    // Non-overlapping extents so concurrent completion order cannot matter.
    const taken: [number, number][] = [];
    const writes: Promise<number>[] = [];
    while (taken.length < 24) {
      const len = randomInt(1, 129) * 512;
      const off = randomInt(0, (size - len) / 512 + 1) * 512;
      if (taken.some(([o, l]) => off < o + l && o < off + len)) continue;
      taken.push([off, len]);
      const buf = e.allocBuffer(len);
      randomBytes(len).copy(buf);
      buf.copy(model, off);
      writes.push(io(e, Op.WRITE, off, len, buf, round % 5 === 0));
    }
    e.kick();
    assert.ok(e.inFlight > 8, 'overflow beyond the ring depth is in flight');
    assert.deepEqual(await Promise.all(writes), writes.map(() => 0));
    const reads = taken.map(async ([off, len]) => {
      const buf = e.allocBuffer(len);
      const p = io(e, Op.READ, off, len, buf);
      return { off, len, buf, res: await p };
    });
    e.kick();
    for (const { off, len, buf, res } of await Promise.all(reads)) {
      assert.equal(res, 0);
      assert.ok(buf.equals(model.subarray(off, off + len)), `mismatch at ${off}+${len}`);
    }
  }
  assert.equal(e.inFlight, 0);
  await e.close();
  assert.ok(fs.readFileSync(path.join(dir, 'integrity.img')).equals(model), 'file matches the model');
});

test('completions never arrive inside submit or kick', { skip }, async () => {
  const e = open('async.img', 1 << 20);
  let inside = false;
  let seen = 0;
  e.onComplete = () => {
    assert.equal(inside, false);
    seen++;
  };
  inside = true;
  for (let i = 0; i < 4; i++) {
    const r = newRequest();
    r.op = i === 3 ? Op.FLUSH : Op.READ;
    r.offset = i * 4096;
    r.length = i === 3 ? 0 : 4096;
    r.buf = i === 3 ? null : e.allocBuffer(4096);
    e.submit(r);
  }
  e.kick();
  inside = false;
  assert.equal(seen, 0);
  await e.close();
  assert.equal(seen, 4, 'close waits for all in-flight requests');
});

test('reads with their buffers evicted from the CPU caches return the data written', { skip }, async () => {
  const size = 4 << 20;
  const file = path.join(dir, 'evict.img');
  const data = randomBytes(size);
  fs.writeFileSync(file, data);
  const e = UringEngine.open(file, { queueDepth: 32, evictReadBuffers: true });
  assert.equal(e.evictReadBuffers, process.arch === 'x64' || process.arch === 'arm64');
  e.onComplete = (req) => (req.ctx as (r: IoRequest) => void)(req);
  // Buffers the CPU has just written and read (dirty and clean lines):
  // eviction writes dirty lines back before the device overwrites them.
  const reads = Array.from({ length: 256 }, async () => {
    const len = 512 * randomInt(1, 64);
    const off = 512 * randomInt(0, (size - len) / 512);
    const buf = e.allocBuffer(len).fill(0x5a);
    assert.equal(buf[len - 1], 0x5a);
    assert.equal(await io(e, Op.READ, off, len, buf), 0);
    assert.ok(buf.equals(data.subarray(off, off + len)), `read at ${off} +${len} differs`);
    e.releaseBuffer(buf);
  });
  e.kick();
  await Promise.all(reads);
  await e.close();
});

/** An engine over `blocks` written and synced 4 KiB blocks: its reads go to the disk (not holes) and complete from the disk's interrupt. */
function openWritten(name: string, blocks: number): UringEngine {
  const file = path.join(dir, name);
  fs.writeFileSync(file, randomBytes(blocks * 4096));
  const fd = fs.openSync(file, 'r+');
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  return UringEngine.open(file, { queueDepth: 128 });
}

/** Submits a 4 KiB read of each of the first `blocks` blocks (no kick). */
function submitReads(e: UringEngine, blocks: number): void {
  for (let i = 0; i < blocks; i++) {
    const r = newRequest();
    r.op = Op.READ;
    r.offset = i * 4096;
    r.length = 4096;
    r.buf = e.allocBuffer(4096);
    e.submit(r);
  }
}

/** Reads each of the first `blocks` blocks, then holds the thread until the disk has finished them all. */
function readAllAndWait(e: UringEngine, blocks: number): void {
  submitReads(e, blocks);
  e.kick();
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
}

test('completions that are ready together reach JS in one event-loop wakeup', { skip }, async () => {
  // Since Linux 6.13 one io_uring_enter runs at most 20 deferred completions
  // (DEFER_TASKRUN rings), so a device's batch used to reach JS 20 at a time,
  // an event-loop turn apart. Real blocks (not holes) make the reads go to
  // the disk and complete from its interrupt, as deferred task work.
  const n = 64;
  const e = openWritten('burst.img', n);
  let delivered = 0;
  // Counted right after the wakeup that brings the first completion: an
  // immediate set from a poll-phase callback runs once that phase ends.
  const firstWakeupDone = new Promise<number>((resolve) => {
    e.onComplete = (req) => {
      assert.equal(req.result, 0);
      if (delivered++ === 0) setImmediate(() => resolve(delivered));
    };
  });
  readAllAndWait(e, n);
  const firstWakeup = await firstWakeupDone;
  await e.close();
  assert.equal(delivered, n);
  assert.equal(firstWakeup, n, `one wakeup delivered ${firstWakeup} of ${n} ready completions`);
});

test('a polling caller takes a whole ready batch in one turn (reapReady)', { skip }, () => {
  const n = 64;
  const e = openWritten('burst-poll.img', n);
  e.setEventLoopNotify(false);
  let delivered = 0;
  e.onComplete = (req) => {
    assert.equal(req.result, 0);
    delivered++;
  };
  readAllAndWait(e, n);
  assert.equal(reapReady(e, 8), n, 'every ready completion in one call');
  assert.equal(delivered, n);
  assert.equal(e.inFlight, 0);
  assert.equal(reapReady(e, 8), 0, 'nothing in flight: no reap at all');
  e.setEventLoopNotify(true);
  return e.close();
});

test('submitEach: a request enters the kernel on submit; otherwise it waits for kick', { skip }, async () => {
  const e = open('submit-each.img', 1 << 20);
  const late = (p: Promise<number>, ms: number): Promise<number | 'pending'> =>
    Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms))]);
  // Batching (the default): nothing reaches the ring until kick().
  const batched = io(e, Op.READ, 0, 4096, e.allocBuffer(4096));
  assert.equal(await late(batched, 100), 'pending', 'a batched request went in without kick');
  e.kick();
  assert.equal(await batched, 0);
  // Each on its own: submit alone issues it, and it still completes asynchronously.
  e.setSubmitEach(true);
  let inside = true;
  const each = io(e, Op.READ, 4096, 4096, e.allocBuffer(4096)).then((n) => {
    assert.equal(inside, false, 'completed inside submit');
    return n;
  });
  inside = false;
  assert.equal(await late(each, 5000), 0);
  await e.close();
});

test('unaligned requests fail with -EINVAL', { skip }, async () => {
  const e = open('unaligned.img', 1 << 20);
  const good = e.allocBuffer(8192);
  e.kick();
  const results = [
    io(e, Op.READ, 100, 512, good),
    io(e, Op.WRITE, 0, 700, good),
    io(e, Op.READ, (1 << 20) - 512, 1024, good), // beyond the end
  ];
  let misaligned: Promise<number> | null = null;
  if (e.direct) misaligned = io(e, Op.READ, 0, 4096, good.subarray(1, 4097));
  e.kick();
  assert.deepEqual(await Promise.all(results), [Errno.EINVAL, Errno.EINVAL, Errno.EINVAL]);
  if (misaligned !== null) assert.equal(await misaligned, Errno.EINVAL, 'misaligned buffer address');
  await e.close();
});

test('under O_DIRECT only allocBuffer memory is accepted', { skip }, async () => {
  const e = open('foreign.img', 1 << 20);
  const src = e.allocBuffer(4096);
  src.fill(0x5a);
  const w = io(e, Op.WRITE, 4096, 4096, src);
  e.kick();
  assert.equal(await w, 0);
  const dst = Buffer.alloc(4096);
  const r = io(e, Op.READ, 4096, 4096, dst);
  e.kick();
  if (e.direct) {
    assert.equal(await r, Errno.EINVAL);
  } else {
    assert.equal(await r, 0);
    assert.ok(dst.every((x) => x === 0x5a));
  }
  await e.close();
});

test('buffered mode (direct: false) takes any buffer', { skip }, async () => {
  const e = UringEngine.open(path.join(dir, 'buffered.img'), { create: true, size: 1 << 20, direct: false });
  e.onComplete = (req) => (req.ctx as (r: IoRequest) => void)(req);
  assert.equal(e.direct, false);
  assert.equal(e.blockSize, 1);
  const src = Buffer.from('hello, unaligned world');
  const w = io(e, Op.WRITE, 3, src.length, src);
  e.kick();
  assert.equal(await w, 0);
  const dst = Buffer.alloc(src.length + 2);
  const r = io(e, Op.READ, 2, dst.length, dst);
  e.kick();
  assert.equal(await r, 0);
  assert.equal(dst.toString('latin1'), '\0hello, unaligned world\0');
  await e.close();
});

test('flush completes and written data persists across reopen', { skip }, async () => {
  const e = open('flush.img', 1 << 20);
  const buf = e.allocBuffer(4096);
  buf.fill(0xab);
  const w = io(e, Op.WRITE, 8192, 4096, buf);
  e.kick();
  assert.equal(await w, 0);
  const f = io(e, Op.FLUSH, 0, 0, null);
  e.kick();
  assert.equal(await f, 0);
  await e.close();
  const again = open('flush.img', 1 << 20);
  const back = again.allocBuffer(4096);
  const r = io(again, Op.READ, 8192, 4096, back);
  again.kick();
  assert.equal(await r, 0);
  assert.ok(back.every((b) => b === 0xab));
  await again.close();
});

test('trim and write_zeroes zero the range and keep the file size', { skip }, async () => {
  const size = 1 << 20;
  const e = open('discard.img', size);
  const buf = e.allocBuffer(256 * 1024);
  buf.fill(0xee);
  const w = io(e, Op.WRITE, 0, buf.length, buf);
  e.kick();
  assert.equal(await w, 0);
  const t = io(e, Op.TRIM, 64 * 1024, 64 * 1024, null);
  const z = io(e, Op.WRITE_ZEROES, 192 * 1024, 4096, null);
  e.kick();
  assert.deepEqual([await t, await z], [0, 0]);
  const back = e.allocBuffer(buf.length);
  const r = io(e, Op.READ, 0, back.length, back);
  e.kick();
  assert.equal(await r, 0);
  await e.close();
  for (let i = 0; i < back.length; i++) {
    const zeroed = (i >= 64 * 1024 && i < 128 * 1024) || (i >= 192 * 1024 && i < 196 * 1024);
    if (back[i] !== (zeroed ? 0 : 0xee)) assert.fail(`byte ${i} is ${back[i]}`);
  }
  assert.equal(fs.statSync(path.join(dir, 'discard.img')).size, size);
});

test('allocBuffer is page aligned within its backing memory and reusable', { skip }, async () => {
  const e = open('alloc.img', 1 << 20);
  const a = e.allocBuffer(1000);
  const b = e.allocBuffer(5000);
  assert.equal(a.length, 1000);
  assert.equal(a.byteOffset % 4096, 0);
  assert.equal(b.byteOffset % 4096, 0);
  e.releaseBuffer(b);
  const c = e.allocBuffer(6000);
  assert.equal(c.buffer, b.buffer);
  assert.equal(c.byteOffset, b.byteOffset, 'same size class reuses the released buffer');
  await e.close();
});

test('a throwing completion handler does not strand the rest of the batch', { skip }, () => {
  // In a child process: node:test claims uncaughtException for itself.
  const engineUrl = new URL('../../src/storage/uring-engine.ts', import.meta.url).href;
  const apiUrl = new URL('../../src/storage/engine.ts', import.meta.url).href;
  const script = `
    import { UringEngine } from ${JSON.stringify(engineUrl)};
    import { Op, newRequest } from ${JSON.stringify(apiUrl)};
    const e = UringEngine.open(${JSON.stringify(path.join(dir, 'throw.img'))}, { create: true, size: 1 << 20, queueDepth: 8 });
    let seen = 0;
    const errors = [];
    process.on('uncaughtException', (err) => errors.push(String(err)));
    e.onComplete = () => { seen++; if (seen === 1) throw new Error('handler failure'); };
    for (let i = 0; i < 6; i++) {
      const r = newRequest();
      r.op = Op.READ; r.offset = i * 4096; r.length = 4096; r.buf = e.allocBuffer(4096);
      e.submit(r);
    }
    e.kick();
    await e.close();
    console.log(JSON.stringify({ seen, inFlight: e.inFlight, errors }));
  `;
  const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  const got = JSON.parse(out.stdout) as { seen: number; inFlight: number; errors: string[] };
  assert.equal(got.seen, 6, 'every request completed');
  assert.equal(got.inFlight, 0);
  assert.equal(got.errors.length, 1);
  assert.match(got.errors[0], /handler failure/);
});

/** How a chained closed loop is driven: as the local load generator in its two shapes. */
const reapModes = [
  { name: 'waiting for a quarter of what is in flight, batched submissions', submitEach: false, min: (e: UringEngine) => Math.max(1, e.inFlight >> 2) },
  { name: 'polling (min 0), each handler submission issued at once', submitEach: true, min: () => 0 },
];

for (const mode of reapModes) {
  test(`reap ${mode.name}: handlers chain requests, data intact with the eventfd off`, { skip }, () => {
    // A closed loop driven only by reap(), as the local load generator drives
    // it: each completion submits the slot's next step (write, then read back,
    // then a new write elsewhere), which goes in with the next reap or, with
    // setSubmitEach, at once from inside the handler loop.
    const size = 4 << 20;
    const e = open(`reap-${mode.submitEach ? 'each' : 'batch'}.img`, size, 16);
    e.setEventLoopNotify(false);
    e.setSubmitEach(mode.submitEach);
    const slots = 12;
    const span = Math.floor(size / slots / 65536) * 65536;
    let verified = 0;
    let mismatches = 0;
    const want: Buffer[] = [];
    const at: number[] = [];
    let moves = 0;
    let completions = 0;
    const step = (slot: number, write: boolean): void => {
      const r = newRequest();
      const len = (1 + (slot % 8)) * 512;
      // Each write goes somewhere new in the slot's region; its read follows it.
      if (write) at[slot] = slot * span + (moves++ % 16) * 4096;
      r.op = write ? Op.WRITE : Op.READ;
      r.offset = at[slot];
      r.length = len;
      r.buf = e.allocBuffer(len);
      if (write) {
        randomBytes(len).copy(r.buf);
        want[slot] = Buffer.from(r.buf.subarray(0, len));
      }
      r.ctx = (done: IoRequest) => {
        assert.equal(done.result, 0);
        completions++;
        if (!write) {
          if (done.buf!.subarray(0, len).equals(want[slot])) verified++;
          else mismatches++;
        }
        if (verified + mismatches < 400) step(slot, !write);
      };
      e.submit(r);
    };
    for (let s = 0; s < slots; s++) step(s, true);
    // Count the engine's own submissions (outside reap): with submitEach
    // every chained request makes one; batched, reap submits them all.
    // (The native object's methods are read-only: wrap it in a proxy.)
    const held = e as unknown as { ring: Record<string | symbol, unknown> };
    const native = held.ring;
    let ownSubmits = 0;
    held.ring = new Proxy(native, {
      get(target, key) {
        const v = target[key];
        if (typeof v !== 'function') return v;
        const method = (v as (...a: unknown[]) => unknown).bind(target);
        if (key !== 'submit') return method;
        return (...a: unknown[]) => {
          ownSubmits++;
          return method(...a);
        };
      },
    });
    let calls = 0;
    let delivered = 0;
    try {
      // Nothing is issued before the first reap: it submits and waits together.
      while (e.inFlight > 0) {
        const got = e.reap(mode.min(e));
        assert.ok(got >= 0);
        delivered += got;
        calls++;
      }
    } finally {
      // A failure must not leave requests that only a reap would complete.
      e.setEventLoopNotify(true);
    }
    assert.equal(mismatches, 0);
    assert.ok(verified >= 400, `verified ${verified}`);
    assert.equal(delivered, completions, 'reap returns how many it delivered');
    if (mode.submitEach) {
      // Every completion but the last of each slot chained one request, each submitted by itself.
      assert.equal(ownSubmits, completions - slots, 'one submission per chained request');
    } else {
      assert.equal(ownSubmits, 0, 'chained requests wait for the next reap');
      assert.ok(calls < verified * 2, `one reap per round trip or fewer (${calls} calls)`);
    }
    return e.close();
  });
}

test('reap delivers one batch per call, even when handlers refill the queue at once (buffered I/O)', { skip, timeout: 20_000 }, () => {
  // Buffered reads of cached pages complete inside the submit itself: with
  // submitEach, a reap that kept draining while batches came back full
  // would never return. Every slot of the ring stays busy.
  const depth = 8;
  const e = UringEngine.open(path.join(dir, 'reap-buffered.img'), { create: true, size: 1 << 20, queueDepth: depth, direct: false });
  e.setEventLoopNotify(false);
  e.setSubmitEach(true);
  let stop = false;
  let completions = 0;
  const buf = Buffer.alloc(4096);
  const chain = (): void => {
    const r = newRequest();
    r.op = Op.READ;
    r.offset = 0;
    r.length = 4096;
    r.buf = buf;
    r.ctx = (done: IoRequest) => {
      assert.equal(done.result, 0);
      completions++;
      // Bounded, so that a reap that never returns fails the test instead of hanging it.
      if (!stop && completions < 20_000) chain();
    };
    e.submit(r);
  };
  e.onComplete = (req) => (req.ctx as (r: IoRequest) => void)(req);
  for (let i = 0; i < depth; i++) chain();
  try {
    for (let i = 0; i < 50; i++) {
      const got = e.reap(1);
      assert.ok(got >= 0 && got <= depth, `one batch at most (${got})`);
    }
    assert.ok(completions > 0);
  } finally {
    stop = true;
    while (e.inFlight > 0) e.reap(0);
    e.setEventLoopNotify(true);
  }
  return e.close();
});

test('reap: a throwing handler surfaces from reap and the rest of the batch still completes', { skip }, () => {
  const e = open('reap-throw.img', 1 << 20, 8);
  e.setEventLoopNotify(false);
  let seen = 0;
  e.onComplete = () => {
    seen++;
    if (seen === 1) throw new Error('handler failure');
  };
  submitReads(e, 6);
  let thrown = 0;
  while (e.inFlight > 0) {
    try {
      e.reap(e.inFlight);
    } catch (err) {
      assert.match(String(err), /handler failure/);
      thrown++;
    }
  }
  assert.equal(thrown, 1);
  assert.equal(seen, 6, 'every request completed');
  return e.close();
});
