/**
 * Structure-aware fuzzing of the two NBD parsers.
 *
 * Handshake (NbdHandshake.feed): client flags and a run of options (every
 * known option with well-formed and broken payloads, unknown ones, declared
 * lengths past the limit), mutated, fed in random chunks. Invariants:
 *   - nothing throws; each feed returns at most one 'send' then at most one
 *     terminal action, in that order;
 *   - everything the server sends parses as option replies of known types
 *     (plus the EXPORT_NAME reply just before 'done');
 *   - while the handshake goes on, every complete option got exactly one
 *     final reply (ACK or an error): no option is silently dropped or
 *     answered twice (counted against a reference scan of the input).
 *
 * Transmission (NbdRequestParser.feed): request headers of every command
 * type with boundary lengths and offsets, WRITE payloads, mutated, chunked,
 * with random pauses from the callback. The callbacks must match a
 * one-shot reference reading of the stream exactly (requests, rejects and
 * the fatal error, in order, with payload bytes), and no payload buffer may
 * exceed maxPayload.
 */
import assert from 'node:assert/strict';
import { BASE_ALLOCATION, ClientFlag, Cmd, Magic, NbdError, Opt, OPTION_HEADER_SIZE, OPTION_REPLY_HEADER_SIZE, REP_ERR_BIT, Rep, REQUEST_HEADER_SIZE } from '../../src/nbd/constants.ts';
import type { ExportInfo } from '../../src/nbd/export-info.ts';
import { NbdHandshake, type HandshakeAction } from '../../src/nbd/handshake.ts';
import { NbdRequestParser, type NbdRequest } from '../../src/nbd/transmission.ts';
import { chunkStream, mutate, Rng } from './rng.ts';
import { newStats, type FuzzStats } from './reflex-fuzz.ts';

const EXPORTS: ExportInfo[] = [
  { name: '', size: 1 << 20, minBlock: 1, preferredBlock: 4096, maxBlock: 1 << 20, readOnly: false, canTrim: true, canMultiConn: true },
  { name: 'vol', description: 'fuzz volume', size: 64 << 20, minBlock: 512, preferredBlock: 4096, maxBlock: 1 << 20, readOnly: true, canTrim: false, canMultiConn: false },
];
const MAX_OPTION = 8192;
const IHAVEOPT = Buffer.from('IHAVEOPT', 'latin1');
const KNOWN_REPLY_TYPES = new Set<number>(Object.values(Rep));

// ---- handshake -------------------------------------------------------------

function str(rng: Rng): Buffer {
  const names = ['', 'vol', 'nope', 'vol\0', 'x'.repeat(rng.range(0, 40))];
  return Buffer.from(rng.pick(names), 'utf8');
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}

function optionData(rng: Rng, option: number): Buffer {
  switch (option) {
    case Opt.INFO:
    case Opt.GO: {
      const name = str(rng);
      const infos = Array.from({ length: rng.range(0, 4) }, () => u16(rng.range(0, 5)));
      return Buffer.concat([u32(rng.chance(0.9) ? name.length : rng.interestingU32()), name, u16(rng.chance(0.9) ? infos.length : rng.range(0, 9)), ...infos]);
    }
    case Opt.LIST_META_CONTEXT:
    case Opt.SET_META_CONTEXT: {
      const name = str(rng);
      const qs = Array.from({ length: rng.range(0, 3) }, () => Buffer.from(rng.pick([BASE_ALLOCATION, 'base:', 'qemu:dirty', '']), 'utf8'));
      return Buffer.concat([u32(name.length), name, u32(rng.chance(0.9) ? qs.length : rng.interestingU32()), ...qs.flatMap((q) => [u32(q.length), q])]);
    }
    case Opt.EXPORT_NAME:
      return str(rng);
    default: {
      if (rng.chance(0.8)) return Buffer.alloc(0);
      const b = Buffer.alloc(rng.range(1, 40));
      rng.fill(b);
      return b;
    }
  }
}

export function genHandshakeStream(rng: Rng): Buffer {
  const parts: Buffer[] = [];
  const flags = rng.chance(0.9) ? ClientFlag.FIXED_NEWSTYLE | (rng.chance(0.5) ? ClientFlag.NO_ZEROES : 0) : rng.interestingU32();
  parts.push(u32(flags));
  const n = rng.range(1, 12);
  for (let i = 0; i < n; i++) {
    // Terminal options (GO, EXPORT_NAME, ABORT) are rarer, so streams get long.
    const option = rng.chance(0.15) ? rng.pick([Opt.GO, Opt.EXPORT_NAME, Opt.ABORT]) : rng.chance(0.9) ? rng.pick([Opt.LIST, Opt.PEEK_EXPORT, Opt.STARTTLS, Opt.INFO, Opt.STRUCTURED_REPLY, Opt.LIST_META_CONTEXT, Opt.SET_META_CONTEXT, Opt.EXTENDED_HEADERS]) : rng.u32();
    const data = optionData(rng, option);
    if (rng.chance(0.05)) {
      // Declared past the limit: the server must skip it without buffering.
      const declared = MAX_OPTION + rng.range(1, 3 * MAX_OPTION);
      const body = Buffer.alloc(declared);
      parts.push(IHAVEOPT, u32(option), u32(declared), body);
    } else {
      parts.push(IHAVEOPT, u32(option), u32(data.length), data);
    }
  }
  const stream = Buffer.concat(parts);
  return rng.chance(0.6) ? mutate(rng, stream) : stream;
}

/** Byte offsets in `stream` at which each complete option ends (reference scan); stops at a bad magic. */
function optionEnds(stream: Buffer): number[] {
  const ends: number[] = [];
  let at = 4;
  while (stream.length - at >= OPTION_HEADER_SIZE) {
    if (stream.readBigUInt64BE(at) !== Magic.IHAVEOPT) break;
    const len = stream.readUInt32BE(at + 12);
    const end = at + OPTION_HEADER_SIZE + len;
    if (end > stream.length) break;
    ends.push(end);
    at = end;
  }
  return ends;
}

/** Parses what the server sent; returns the number of final (ACK or error) replies. */
function countFinals(sent: Buffer, exportNameReply: boolean, label: string): number {
  let finals = 0;
  let at = 0;
  while (at < sent.length) {
    if (exportNameReply && (sent.length - at === 10 || sent.length - at === 134)) break; // size, flags[, zeroes]
    assert.ok(sent.length - at >= OPTION_REPLY_HEADER_SIZE, `${label}: truncated option reply`);
    assert.equal(sent.readBigUInt64BE(at), Magic.OPTION_REPLY, `${label}: bad option reply magic`);
    const type = sent.readUInt32BE(at + 12);
    const len = sent.readUInt32BE(at + 16);
    assert.ok(KNOWN_REPLY_TYPES.has(type), `${label}: unknown reply type 0x${type.toString(16)}`);
    assert.ok(at + OPTION_REPLY_HEADER_SIZE + len <= sent.length, `${label}: reply length past the data sent`);
    if (type === Rep.ACK || type >= REP_ERR_BIT) finals++;
    at += OPTION_REPLY_HEADER_SIZE + len;
  }
  return finals;
}

export function checkHandshakeStream(rng: Rng, stream: Buffer, stats: FuzzStats, label: string): void {
  const t0 = performance.now();
  const hs = new NbdHandshake({
    exports: (name) => EXPORTS.find((e) => e.name === name),
    listExports: () => EXPORTS,
    tlsAvailable: rng.chance(0.5),
    maxOptionLength: MAX_OPTION,
  });
  const sentParts: Buffer[] = [];
  let terminal: HandshakeAction | null = null;
  let fed = 0;
  for (const chunk of chunkStream(rng, stream)) {
    const actions = hs.feed(chunk);
    assert.ok(actions.length <= 2, `${label}: ${actions.length} actions from one feed`);
    for (let i = 0; i < actions.length; i++) {
      const a = actions[i];
      if (a.type === 'send') {
        assert.equal(i, 0, `${label}: send after a terminal action`);
        sentParts.push(a.data);
      } else {
        assert.equal(i, actions.length - 1, `${label}: terminal action not last`);
        terminal = a;
      }
    }
    if (terminal !== null && terminal.type === 'starttls') {
      // Carry on as if the TLS layer now delivers the same stream decrypted.
      assert.ok(terminal.rest.length <= chunk.length, `${label}: starttls rest longer than the chunk`);
      hs.tlsStarted();
      const rest = terminal.rest;
      terminal = null;
      fed += chunk.length - rest.length;
      if (rest.length > 0) {
        const more = hs.feed(rest);
        for (const a of more) {
          if (a.type === 'send') sentParts.push(a.data);
          else terminal = a;
        }
        if (terminal?.type === 'starttls') {
          // A second STARTTLS in the same chunk is answered with an error: never a second upgrade.
          assert.fail(`${label}: second STARTTLS upgrade`);
        }
      }
      if (terminal === null) fed += rest.length;
    } else if (terminal === null) {
      fed += chunk.length;
    }
    if (terminal !== null) {
      if (terminal.type === 'done') assert.ok(terminal.rest.length <= chunk.length, `${label}: done rest longer than the chunk`);
      break; // the server stops reading here
    }
  }
  const sent = Buffer.concat(sentParts);
  const finals = countFinals(sent, terminal?.type === 'done' && terminal.session.viaExportName, label);
  if (terminal === null) {
    const complete = optionEnds(stream).filter((end) => end <= fed).length;
    assert.equal(finals, complete, `${label}: ${complete} complete options, ${finals} final replies`);
    assert.ok(hs.state === 'options' || (hs.state === 'flags' && fed < 4), `${label}: state ${hs.state} without a terminal action`);
  } else {
    assert.ok(finals <= optionEnds(stream).length, `${label}: more final replies than options`);
  }
  stats.cases++;
  stats.frames += finals;
  if (terminal?.type === 'close') stats.errors++;
  stats.bytes += stream.length;
  const ms = performance.now() - t0;
  if (ms > stats.maxCaseMs) stats.maxCaseMs = ms;
}

// ---- transmission ----------------------------------------------------------

interface ExpectedReq {
  kind: 'request' | 'reject' | 'fatal';
  flags: number;
  type: number;
  cookieHi: number;
  cookieLo: number;
  offset: number;
  length: number;
  dataAt: number;
  dataLen: number;
}

export function genRequestStream(rng: Rng, maxPayload: number): Buffer {
  const parts: Buffer[] = [];
  const n = rng.range(1, 24);
  for (let i = 0; i < n; i++) {
    const type = rng.chance(0.9) ? rng.range(0, 7) : rng.range(0, 0xffff);
    let length: number;
    const roll = rng.int(10);
    if (roll < 7) length = rng.range(0, 8) * 512;
    else if (roll < 8) length = maxPayload + rng.range(-1, 1);
    else length = rng.interestingU32();
    length >>>= 0;
    const h = Buffer.alloc(REQUEST_HEADER_SIZE);
    h.writeUInt32BE(Magic.REQUEST, 0);
    h.writeUInt16BE(rng.chance(0.8) ? 0 : rng.range(0, 0xffff), 4);
    h.writeUInt16BE(type, 6);
    h.writeUInt32BE(rng.u32(), 8);
    h.writeUInt32BE(rng.u32(), 12);
    h.writeUInt32BE(rng.chance(0.8) ? 0 : rng.interestingU32(), 16);
    h.writeUInt32BE(rng.u32(), 20);
    h.writeUInt32BE(length, 24);
    parts.push(h);
    if (type === Cmd.WRITE) {
      // Real payloads up to the limit; a token one past it (the parser discards what arrives).
      const body = Buffer.alloc(length <= maxPayload ? length : rng.int(64), rng.int(256));
      for (let j = 0; j + 4 <= body.length; j += 128) body.writeUInt32LE(j ^ i, j);
      parts.push(body);
    }
  }
  const stream = Buffer.concat(parts);
  return rng.chance(0.7) ? mutate(rng, stream) : stream;
}

/** Reference reading of a request stream, from the NBD spec's transmission section. */
function referenceRequests(stream: Buffer, maxPayload: number): ExpectedReq[] {
  const out: ExpectedReq[] = [];
  let at = 0;
  while (stream.length - at >= REQUEST_HEADER_SIZE) {
    const e: ExpectedReq = {
      kind: 'request',
      flags: stream.readUInt16BE(at + 4),
      type: stream.readUInt16BE(at + 6),
      cookieHi: stream.readUInt32BE(at + 8),
      cookieLo: stream.readUInt32BE(at + 12),
      offset: stream.readUInt32BE(at + 16) * 0x100000000 + stream.readUInt32BE(at + 20),
      length: stream.readUInt32BE(at + 24),
      dataAt: at + REQUEST_HEADER_SIZE,
      dataLen: 0,
    };
    if (stream.readUInt32BE(at) !== Magic.REQUEST) {
      out.push({ ...e, kind: 'fatal' });
      return out;
    }
    at += REQUEST_HEADER_SIZE;
    const isWrite = e.type === Cmd.WRITE;
    if ((isWrite || e.type === Cmd.READ) && e.length > maxPayload) {
      out.push({ ...e, kind: 'reject' });
      if (isWrite) at += e.length; // discarded as it arrives
      continue;
    }
    if (isWrite) {
      if (stream.length - at < e.length) return out;
      e.dataLen = e.length;
      at += e.length;
    }
    out.push(e);
  }
  return out;
}

export function checkRequestStream(rng: Rng, stream: Buffer, maxPayload: number, stats: FuzzStats, label: string): void {
  const t0 = performance.now();
  const expected = referenceRequests(stream, maxPayload);
  const pauseRate = rng.chance(0.3) ? 0.3 : 0;
  let seen = 0;
  let fatal = false;
  const check = (kind: ExpectedReq['kind'], req: NbdRequest | null): void => {
    assert.ok(!fatal, `${label}: ${kind} after the fatal error`);
    const e = expected[seen];
    assert.ok(e !== undefined, `${label}: ${kind} #${seen} the reference does not have`);
    assert.equal(kind, e.kind, `${label}: event #${seen} kind`);
    if (req !== null) {
      assert.ok(
        req.flags === e.flags && req.type === e.type && req.cookieHi === e.cookieHi && req.cookieLo === e.cookieLo && req.offset === e.offset && req.length === e.length,
        `${label}: event #${seen} header fields differ`,
      );
    }
    if (kind === 'request' && e.type === Cmd.WRITE) {
      assert.ok(req!.data !== null && req!.data.length === e.dataLen, `${label}: write #${seen} payload length`);
      assert.ok(req!.data.length <= maxPayload, `${label}: payload buffer past maxPayload`);
      assert.ok(req!.data.equals(stream.subarray(e.dataAt, e.dataAt + e.dataLen)), `${label}: write #${seen} payload bytes`);
    } else if (req !== null) {
      assert.equal(req.data, null, `${label}: non-write #${seen} carries data`);
    }
    seen++;
    stats.frames++;
  };
  const parser: NbdRequestParser = new NbdRequestParser(
    {
      onRequest(req) {
        check('request', req);
        if (pauseRate > 0 && rng.chance(pauseRate)) parser.pause();
      },
      onReject(req, error) {
        assert.equal(error, NbdError.EOVERFLOW, `${label}: reject code`);
        check('reject', req);
        stats.errors++;
      },
      onFatal() {
        check('fatal', null);
        fatal = true;
        stats.errors++;
      },
    },
    { maxPayload },
  );
  for (const chunk of chunkStream(rng, stream)) {
    parser.feed(chunk);
    while (parser.isPaused) parser.resume();
    assert.equal(parser.failed, fatal, `${label}: failed flag disagrees with onFatal`);
  }
  assert.equal(seen, expected.length, `${label}: ${seen} events, reference has ${expected.length}`);
  stats.cases++;
  stats.bytes += stream.length;
  const ms = performance.now() - t0;
  if (ms > stats.maxCaseMs) stats.maxCaseMs = ms;
}

export function fuzzNbdHandshake(seed: number, cases: number, stats = newStats(), deadline = Infinity): FuzzStats {
  const rng = new Rng(seed);
  for (let i = 0; i < cases && Date.now() < deadline; i++) checkHandshakeStream(rng, genHandshakeStream(rng), stats, `nbd handshake seed ${seed} case ${i}`);
  return stats;
}

export function fuzzNbdRequests(seed: number, cases: number, stats = newStats(), deadline = Infinity): FuzzStats {
  const rng = new Rng(seed);
  for (let i = 0; i < cases && Date.now() < deadline; i++) {
    const maxPayload = rng.chance(0.9) ? 64 * 1024 : 1 << 20;
    checkRequestStream(rng, genRequestStream(rng, maxPayload), maxPayload, stats, `nbd requests seed ${seed} case ${i}`);
  }
  return stats;
}
