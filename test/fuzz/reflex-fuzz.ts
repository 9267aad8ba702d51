/**
 * Structure-aware fuzzing of the ReFlex FrameParser (server side rule,
 * `requestPayload`).
 *
 * Each case builds a stream of plausible frames (real and unknown opcodes,
 * flags, boundary counts and LBAs, HELLO/ATTACH byte counts, payloads of the
 * announced size), mutates it at the byte level, cuts it into random chunks
 * and feeds them to a fresh parser, sometimes pausing it from the callback.
 * The parser's callbacks are checked against a one-shot reference reading of
 * the whole stream, written from the protocol document:
 *
 *   - nothing throws;
 *   - the frames and the error come out exactly as the reference reads them
 *     (same fields, same payload bytes, same order): every complete frame
 *     is delivered or answered by the one error that ends the stream;
 *   - after every push that was not paused, the parser holds fewer than
 *     HEADER + maxPayload bytes (memory is bounded by the largest frame);
 *   - work is bounded: a case's time is recorded (the caller checks the max).
 */
import assert from 'node:assert/strict';
import { FrameParser, requestPayload, writeHeader, ParseError, type Frame, type FrameSink, type ParseErrorCode } from '../../src/protocol/reflex-codec.ts';
import { Cmd, HEADER_SIZE, MAGIC } from '../../src/protocol/reflex-constants.ts';
import { chunkStream, mutate, Rng } from './rng.ts';

const SECTOR = 512;
const OPCODES = [Cmd.GET, Cmd.SET, Cmd.SET_NO_ACK, Cmd.FLUSH, Cmd.TRIM, Cmd.WRITE_ZEROES, Cmd.HELLO, Cmd.ATTACH, 0x101, 0x102, 0x03, 0x0f, 0x7f, 0xff, 0xffff];

export interface FuzzStats {
  cases: number;
  frames: number;
  errors: number;
  bytes: number;
  /** Largest number of bytes the parser held after an unpaused push. */
  maxBuffered: number;
  /** Slowest single case, ms. */
  maxCaseMs: number;
}

export function newStats(): FuzzStats {
  return { cases: 0, frames: 0, errors: 0, bytes: 0, maxBuffered: 0, maxCaseMs: 0 };
}

/** One plausible request frame. */
function genFrame(rng: Rng, maxPayload: number): Buffer {
  const opcode = rng.chance(0.85) ? rng.pick(OPCODES.slice(0, 8)) : rng.pick(OPCODES);
  let count: number;
  const roll = rng.int(10);
  if (roll < 7) count = rng.range(0, 8);
  else if (roll < 8 && rng.chance(0.2)) count = Math.floor(maxPayload / SECTOR) + rng.range(-1, 1);
  else count = rng.chance(0.5) ? rng.range(0, 32) : rng.interestingU32();
  count >>>= 0;
  const lba = rng.chance(0.7) ? rng.int(1 << 20) : rng.u32() * (rng.chance(0.5) ? 1 : 0x200000);
  const plen = requestPayload(opcode, count, SECTOR);
  // Oversized frames carry only a token payload: the parser must stop at the header.
  const bodyLen = plen <= maxPayload ? plen : rng.int(64);
  const b = Buffer.allocUnsafe(HEADER_SIZE + bodyLen);
  writeHeader(b, 0, opcode, rng.u32(), rng.u32(), lba % 4294967296, Math.floor(lba / 4294967296), count);
  if (bodyLen > 0) {
    // Cheap, position-dependent payload: a misframed payload compares unequal.
    b.fill(rng.int(256), HEADER_SIZE);
    for (let i = HEADER_SIZE; i + 4 <= b.length; i += 128) b.writeUInt32LE(i, i);
  }
  return b;
}

export function genReflexStream(rng: Rng, maxPayload: number): Buffer {
  const n = rng.range(1, 24);
  const frames: Buffer[] = [];
  for (let i = 0; i < n; i++) frames.push(genFrame(rng, maxPayload));
  const stream = Buffer.concat(frames);
  return rng.chance(0.75) ? mutate(rng, stream) : stream;
}

interface Expected {
  kind: 'frame' | 'error';
  code: ParseErrorCode | 0;
  opcode: number;
  handleLo: number;
  handleHi: number;
  lbaLo: number;
  lbaHi: number;
  count: number;
  payloadAt: number;
  payloadLen: number;
}

/** Reference reading of a whole stream, straight from PROTOCOL.md section 1. */
export function referenceFrames(stream: Buffer, maxPayload: number): Expected[] {
  const out: Expected[] = [];
  let at = 0;
  while (stream.length - at >= HEADER_SIZE) {
    const e: Expected = {
      kind: 'frame',
      code: 0,
      opcode: stream.readUInt16LE(at + 2),
      handleLo: stream.readUInt32LE(at + 4),
      handleHi: stream.readUInt32LE(at + 8),
      lbaLo: stream.readUInt32LE(at + 12),
      lbaHi: stream.readUInt32LE(at + 16),
      count: stream.readUInt32LE(at + 20),
      payloadAt: at + HEADER_SIZE,
      payloadLen: 0,
    };
    if (stream.readUInt16LE(at) !== MAGIC) {
      out.push({ ...e, kind: 'error', code: ParseError.BAD_MAGIC });
      return out;
    }
    const op = e.opcode & 0xff;
    const plen = op === Cmd.SET || op === Cmd.SET_NO_ACK ? e.count * SECTOR : op === Cmd.HELLO || op === Cmd.ATTACH ? e.count : 0;
    if (plen > maxPayload) {
      out.push({ ...e, kind: 'error', code: ParseError.TOO_LARGE });
      return out;
    }
    if (stream.length - at < HEADER_SIZE + plen) return out;
    e.payloadLen = plen;
    out.push(e);
    at += HEADER_SIZE + plen;
  }
  return out;
}

/** Checks the parser on one stream; throws an AssertionError naming the case. */
export function checkReflexStream(rng: Rng, stream: Buffer, maxPayload: number, stats: FuzzStats, label: string): void {
  const t0 = performance.now();
  const expected = referenceFrames(stream, maxPayload);
  const parser = new FrameParser({ sectorSize: SECTOR, maxPayload, rule: requestPayload });
  const pauseRate = rng.chance(0.3) ? 0.3 : 0;
  let seen = 0;
  let pausedByUs = false;
  let errored = false;
  const match = (f: Frame, kind: 'frame' | 'error', code: ParseErrorCode | 0): void => {
    const e = expected[seen];
    assert.ok(e !== undefined, `${label}: ${kind} #${seen} the reference does not have`);
    assert.equal(kind, e.kind, `${label}: event #${seen} kind`);
    assert.equal(code, e.code, `${label}: event #${seen} error code`);
    assert.ok(
      f.opcode === e.opcode && f.handleLo === e.handleLo && f.handleHi === e.handleHi && f.lbaLo === e.lbaLo && f.lbaHi === e.lbaHi && f.count === e.count,
      `${label}: event #${seen} header fields differ`,
    );
    if (kind === 'frame') {
      const len = f.payload === null ? 0 : f.payload.length;
      assert.equal(len, e.payloadLen, `${label}: frame #${seen} payload length`);
      if (len > 0) assert.ok(f.payload!.equals(stream.subarray(e.payloadAt, e.payloadAt + len)), `${label}: frame #${seen} payload bytes`);
    }
    seen++;
  };
  const sink: FrameSink = {
    onFrame(f) {
      assert.ok(!errored, `${label}: frame after the error`);
      match(f, 'frame', 0);
      stats.frames++;
      if (pauseRate > 0 && rng.chance(pauseRate)) {
        pausedByUs = true;
        return false;
      }
      return true;
    },
    onError(code, f) {
      assert.ok(!errored, `${label}: second error`);
      errored = true;
      match(f, 'error', code);
      stats.errors++;
    },
  };
  for (const chunk of chunkStream(rng, stream)) {
    parser.push(chunk, sink);
    let pausedThisPush = pausedByUs;
    while (pausedByUs) {
      pausedByUs = false;
      parser.resume(sink);
      pausedThisPush = true;
    }
    if (!pausedThisPush) {
      assert.ok(parser.buffered < HEADER_SIZE + maxPayload, `${label}: parser holds ${parser.buffered} bytes, limit ${HEADER_SIZE + maxPayload}`);
      if (parser.buffered > stats.maxBuffered) stats.maxBuffered = parser.buffered;
    }
    assert.equal(parser.isFailed, errored, `${label}: isFailed disagrees with the error callback`);
  }
  assert.equal(seen, expected.length, `${label}: ${seen} events, reference has ${expected.length}`);
  stats.cases++;
  stats.bytes += stream.length;
  const ms = performance.now() - t0;
  if (ms > stats.maxCaseMs) stats.maxCaseMs = ms;
}

/** Runs `cases` random cases (or until `deadline`, ms since epoch). */
export function fuzzReflex(seed: number, cases: number, stats = newStats(), deadline = Infinity): FuzzStats {
  const rng = new Rng(seed);
  for (let i = 0; i < cases && Date.now() < deadline; i++) {
    const maxPayload = rng.chance(0.9) ? 64 * 1024 : 1 << 20;
    const stream = genReflexStream(rng, maxPayload);
    checkReflexStream(rng, stream, maxPayload, stats, `reflex seed ${seed} case ${i}`);
  }
  return stats;
}
