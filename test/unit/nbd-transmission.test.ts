import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cmd, CmdFlag, NbdError } from '../../src/nbd/constants.ts';
import { NbdRequestParser } from '../../src/nbd/transmission.ts';
import type { NbdRequest, NbdRequestParserOptions } from '../../src/nbd/transmission.ts';
import { encodeRequest } from '../../src/nbd/client-codec.ts';
import { seededRandom } from '../../src/util/random.ts';

interface Seen {
  kind: 'request' | 'reject' | 'fatal';
  flags?: number;
  type?: number;
  cookieHi?: number;
  cookieLo?: number;
  offset?: number;
  length?: number;
  data?: Buffer | null;
  error?: number;
  reason?: string;
}

/** A parser whose callbacks copy what they see (the request object is reused). */
function recorder(opts?: NbdRequestParserOptions): { parser: NbdRequestParser; seen: Seen[] } {
  const seen: Seen[] = [];
  const snap = (kind: 'request' | 'reject', r: NbdRequest, error?: number): Seen => ({
    kind,
    flags: r.flags,
    type: r.type,
    cookieHi: r.cookieHi,
    cookieLo: r.cookieLo,
    offset: r.offset,
    length: r.length,
    data: r.data,
    ...(error === undefined ? {} : { error }),
  });
  const parser = new NbdRequestParser(
    {
      onRequest: (r) => void seen.push(snap('request', r)),
      onReject: (r, e) => void seen.push(snap('reject', r, e)),
      onFatal: (reason) => void seen.push({ kind: 'fatal', reason }),
    },
    opts,
  );
  return { parser, seen };
}

/** Deterministic PRNG so failures reproduce. */
const rng = seededRandom;

function split(b: Buffer, r: () => number, max: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < b.length; ) {
    const n = Math.min(b.length - at, 1 + Math.floor(r() * max));
    out.push(b.subarray(at, at + n));
    at += n;
  }
  return out;
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

test('every command type parses with all header fields', () => {
  const { parser, seen } = recorder();
  const cases = [
    { type: Cmd.READ, flags: CmdFlag.DF, cookieHi: 0xdeadbeef, cookieLo: 0xcafef00d, offset: 0x123456789an, length: 65536 },
    { type: Cmd.WRITE, flags: CmdFlag.FUA, cookieHi: 1, cookieLo: 2, offset: 4096n, length: 3 },
    { type: Cmd.DISC, flags: 0, cookieHi: 0, cookieLo: 3, offset: 0n, length: 0 },
    { type: Cmd.FLUSH, flags: 0, cookieHi: 0, cookieLo: 4, offset: 0n, length: 0 },
    { type: Cmd.TRIM, flags: 0, cookieHi: 0, cookieLo: 5, offset: 512n, length: 0xffffffff },
    { type: Cmd.CACHE, flags: 0, cookieHi: 0, cookieLo: 6, offset: 512n, length: 4096 },
    { type: Cmd.WRITE_ZEROES, flags: CmdFlag.NO_HOLE | CmdFlag.FAST_ZERO, cookieHi: 0xffffffff, cookieLo: 0xffffffff, offset: 2n ** 40n, length: 1 << 30 },
    { type: Cmd.BLOCK_STATUS, flags: CmdFlag.REQ_ONE, cookieHi: 0x80000000, cookieLo: 0, offset: 0n, length: 1 << 20 },
    { type: 200, flags: 0xffff, cookieHi: 9, cookieLo: 9, offset: 0n, length: 0 }, // unknown type: delivered, validation rejects it
  ];
  const write = Buffer.from('abc');
  parser.feed(Buffer.concat(cases.map((c) => encodeRequest(c, c.type === Cmd.WRITE ? write : undefined))));
  assert.equal(seen.length, cases.length);
  cases.forEach((c, i) => {
    const s = seen[i];
    assert.equal(s.kind, 'request');
    assert.equal(s.type, c.type);
    assert.equal(s.flags, c.flags);
    assert.equal(s.cookieHi, c.cookieHi);
    assert.equal(s.cookieLo, c.cookieLo);
    assert.equal(s.offset, Number(c.offset));
    assert.equal(s.length, c.length);
    if (c.type === Cmd.WRITE) assert.deepEqual(s.data, write);
    else assert.equal(s.data, null, 'only WRITE carries data');
  });
  assert.ok(parser.idle);
});

test('a mixed stream parses identically whole, byte by byte and in random chunks', () => {
  const r = rng(99);
  const frames: Buffer[] = [];
  const expected: Array<{ type: number; cookieLo: number; data: Buffer | null }> = [];
  for (let i = 0; i < 200; i++) {
    const isWrite = r() < 0.5;
    const len = isWrite ? Math.floor(r() * 3000) : 512;
    const data = isWrite ? pattern(len, i) : null;
    frames.push(encodeRequest({ type: isWrite ? Cmd.WRITE : Cmd.READ, cookieLo: i, offset: i * 512, length: len }, data ?? undefined));
    expected.push({ type: isWrite ? Cmd.WRITE : Cmd.READ, cookieLo: i, data });
  }
  const stream = Buffer.concat(frames);
  const splits = [[stream], [...stream].map((x) => Buffer.from([x])), split(stream, rng(1), 7), split(stream, rng(2), 100), split(stream, rng(3), 5000)];
  for (const chunks of splits) {
    const { parser, seen } = recorder();
    for (const c of chunks) parser.feed(c);
    assert.deepEqual(
      seen.map((s) => ({ type: s.type, cookieLo: s.cookieLo, data: s.data })),
      expected,
      `${chunks.length} chunks`,
    );
    assert.ok(seen.every((s, i) => s.offset === i * 512));
    assert.ok(parser.idle);
  }
});

test('WRITE data: a view into the chunk when whole, an independent copy when split; never overwritten later', () => {
  const d1 = pattern(1000, 1);
  const d2 = pattern(1000, 2);
  const f1 = encodeRequest({ type: Cmd.WRITE, cookieLo: 1, length: 1000 }, d1);
  const f2 = encodeRequest({ type: Cmd.WRITE, cookieLo: 2, length: 1000 }, d2);

  const whole = recorder();
  const chunk = Buffer.concat([f1, f2]);
  whole.parser.feed(chunk);
  assert.equal(whole.seen[0].data!.buffer, chunk.buffer, 'zero copy when the payload is in one chunk');
  assert.equal(whole.seen[0].data!.byteOffset, chunk.byteOffset + 28);

  const parts = recorder();
  const a = Buffer.from(f1.subarray(0, 500));
  const b = Buffer.from(Buffer.concat([f1.subarray(500), f2.subarray(0, 300)]));
  const c = Buffer.from(f2.subarray(300));
  parts.parser.feed(a);
  parts.parser.feed(b);
  const kept = parts.seen[0].data!;
  assert.deepEqual(kept, d1);
  a.fill(0); // the caller reuses its chunk buffers...
  b.fill(0);
  parts.parser.feed(c); // ...and the parser assembles the next write
  assert.deepEqual(kept, d1, 'a straddling payload is a private copy');
  assert.deepEqual(parts.seen[1].data, d2);
});

test('a zero-length WRITE carries an empty buffer', () => {
  const { parser, seen } = recorder();
  parser.feed(encodeRequest({ type: Cmd.WRITE, cookieLo: 5, length: 0 }));
  assert.equal(seen.length, 1);
  assert.equal(seen[0].data!.length, 0);
});

test('oversized WRITE is rejected with EOVERFLOW and its payload skipped, in any chunking', () => {
  const big = encodeRequest({ type: Cmd.WRITE, cookieHi: 3, cookieLo: 4, offset: 0, length: 5000 }, pattern(5000, 3));
  const next = encodeRequest({ type: Cmd.WRITE, cookieLo: 5, length: 10 }, pattern(10, 4));
  const stream = Buffer.concat([big, next]);
  for (const chunks of [[stream], [...stream].map((x) => Buffer.from([x])), split(stream, rng(7), 300)]) {
    const { parser, seen } = recorder({ maxPayload: 4096 });
    for (const c of chunks) parser.feed(c);
    assert.deepEqual(
      seen.map((s) => [s.kind, s.cookieHi, s.cookieLo, s.error]),
      [['reject', 3, 4, NbdError.EOVERFLOW], ['request', 0, 5, undefined]],
    );
    assert.deepEqual(seen[1].data, pattern(10, 4));
  }
});

test('oversized READ is rejected without swallowing the next request; TRIM lengths are not payloads', () => {
  const { parser, seen } = recorder({ maxPayload: 4096 });
  parser.feed(
    Buffer.concat([
      encodeRequest({ type: Cmd.READ, cookieLo: 1, length: 4097 }),
      encodeRequest({ type: Cmd.READ, cookieLo: 2, length: 4096 }),
      encodeRequest({ type: Cmd.TRIM, cookieLo: 3, length: 1 << 30 }),
      encodeRequest({ type: Cmd.WRITE_ZEROES, cookieLo: 4, length: 1 << 30 }),
    ]),
  );
  assert.deepEqual(seen.map((s) => [s.kind, s.cookieLo]), [['reject', 1], ['request', 2], ['request', 3], ['request', 4]]);
  assert.equal(seen[0].error, NbdError.EOVERFLOW);
});

test('a huge rejected WRITE (4 GiB - 1) is discarded as it streams, without buffering', () => {
  const { parser, seen } = recorder();
  parser.feed(encodeRequest({ type: Cmd.WRITE, cookieLo: 1, length: 0xffffffff }));
  assert.equal(seen[0].kind, 'reject');
  const piece = Buffer.alloc(64 << 20);
  let left = 0xffffffff;
  while (left > piece.length) {
    parser.feed(piece);
    left -= piece.length;
  }
  assert.ok(!parser.idle);
  parser.feed(Buffer.concat([piece.subarray(0, left), encodeRequest({ type: Cmd.FLUSH, cookieLo: 2, length: 0 })]));
  assert.deepEqual(seen.map((s) => [s.kind, s.cookieLo]), [['reject', 1], ['request', 2]]);
  assert.ok(parser.idle);
});

test('bad magic is fatal, reported once, and later input is ignored', () => {
  const { parser, seen } = recorder();
  const bad = encodeRequest({ type: Cmd.READ, length: 512, magic: 0x25609514 });
  parser.feed(Buffer.concat([encodeRequest({ type: Cmd.FLUSH, cookieLo: 1, length: 0 }), bad.subarray(0, 10)]));
  assert.equal(seen.length, 1);
  parser.feed(bad.subarray(10));
  assert.equal(seen.length, 2);
  assert.equal(seen[1].kind, 'fatal');
  assert.match(seen[1].reason!, /bad request magic 0x25609514/);
  assert.ok(parser.failed);
  parser.feed(encodeRequest({ type: Cmd.FLUSH, cookieLo: 2, length: 0 }));
  assert.equal(seen.length, 2, 'nothing after a fatal error');
  // A simple reply magic sent by a confused peer is just as fatal.
  const r2 = recorder();
  r2.parser.feed(encodeRequest({ type: Cmd.READ, length: 1, magic: 0x67446698 }));
  assert.equal(r2.seen[0].kind, 'fatal');
});

test('truncated frames deliver nothing and hold the parser mid-frame', () => {
  const f = encodeRequest({ type: Cmd.WRITE, cookieLo: 1, length: 100 }, pattern(100, 1));
  for (const cut of [1, 27, 28, 29, 127]) {
    const { parser, seen } = recorder();
    parser.feed(f.subarray(0, cut));
    assert.equal(seen.length, 0, `cut at ${cut}`);
    assert.ok(!parser.idle);
    assert.ok(!parser.failed);
    parser.feed(f.subarray(cut));
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0].data, pattern(100, 1));
  }
});

test('offsets above 2^53 stay above 2^53 (they fail bounds checks, never wrap)', () => {
  const { parser, seen } = recorder();
  parser.feed(encodeRequest({ type: Cmd.READ, offset: 0xffffffffffffffffn, length: 512 }));
  parser.feed(encodeRequest({ type: Cmd.READ, offset: 2n ** 53n + 1n, length: 512 }));
  parser.feed(encodeRequest({ type: Cmd.READ, offset: 2n ** 53n - 1n, length: 512 }));
  assert.ok(seen[0].offset! >= 2 ** 64 - 4096);
  assert.ok(seen[1].offset! >= 2 ** 53);
  assert.equal(seen[2].offset, Number.MAX_SAFE_INTEGER);
});

test('the request object is reused across callbacks (documented contract)', () => {
  const objs: NbdRequest[] = [];
  const parser = new NbdRequestParser({ onRequest: (r) => void objs.push(r), onReject: () => {}, onFatal: () => {} });
  parser.feed(Buffer.concat([encodeRequest({ type: Cmd.FLUSH, length: 0 }), encodeRequest({ type: Cmd.FLUSH, length: 0 })]));
  assert.equal(objs.length, 2);
  assert.equal(objs[0], objs[1]);
});

test('maxPayload must be a positive integer', () => {
  const h = { onRequest: () => {}, onReject: () => {}, onFatal: () => {} };
  assert.throws(() => new NbdRequestParser(h, { maxPayload: 0 }), /maxPayload/);
  assert.equal(new NbdRequestParser(h).maxPayload, 32 << 20);
});
