/**
 * Transmission-phase reply serializer. Pure functions over Buffers.
 *
 * Two forms of each: `writeX(target, at, ...)` fills a caller-owned buffer
 * and returns the offset just past what it wrote (no allocation: write a
 * header into a pooled buffer, then send the data buffer after it with
 * cork/uncork or writev); `x(...)` allocates and returns a fresh Buffer.
 *
 * Simple reply (16 bytes, then READ data when error is 0):
 *   u32 0x67446698 | u32 error | u64 cookie
 * Structured reply chunk (20-byte header, then `length` payload bytes):
 *   u32 0x668e33ef | u16 flags | u16 type | u64 cookie | u32 length
 *
 *   writeSimpleReply / simpleReply(error, cookieHi, cookieLo)
 *   writeStructuredHeader(target, at, flags, type, cookieHi, cookieLo, length)
 *   writeOffsetDataHeader / offsetDataHeader(cookieHi, cookieLo, offset, dataLength, done)
 *       28 bytes; the `dataLength` data bytes follow on the wire
 *   offsetHoleChunk(cookieHi, cookieLo, offset, holeLength, done)
 *   noneChunk(cookieHi, cookieLo)                       always DONE
 *   errorChunk(cookieHi, cookieLo, error, message?, done = true)
 *   errorOffsetChunk(cookieHi, cookieLo, error, offset, message?, done = true)
 *   blockStatusChunk(cookieHi, cookieLo, contextId, extents, done)
 *
 * Rules the caller keeps (spec): with structured replies negotiated a READ
 * must be answered with structured chunks, and exactly one chunk carries
 * NBD_REPLY_FLAG_DONE, the last; without them only simple replies exist.
 */
import { assert } from '../util/assert.ts';
import {
  Magic,
  MAX_STRING,
  ReplyFlag,
  ReplyType,
  SIMPLE_REPLY_SIZE,
  STRUCTURED_HEADER_SIZE,
} from './constants.ts';

export const OFFSET_DATA_HEADER_SIZE = STRUCTURED_HEADER_SIZE + 8;

export interface Extent {
  length: number;
  /** base:allocation flags (StateFlag.HOLE | StateFlag.ZERO). */
  flags: number;
}

function writeU64(b: Buffer, at: number, v: number): void {
  assert(Number.isSafeInteger(v) && v >= 0, 'u64 field must be a non-negative safe integer');
  b.writeUInt32BE(Math.floor(v / 0x100000000), at);
  b.writeUInt32BE(v >>> 0, at + 4);
}

export function writeSimpleReply(t: Buffer, at: number, error: number, cookieHi: number, cookieLo: number): number {
  t.writeUInt32BE(Magic.SIMPLE_REPLY, at);
  t.writeUInt32BE(error, at + 4);
  t.writeUInt32BE(cookieHi, at + 8);
  t.writeUInt32BE(cookieLo, at + 12);
  return at + SIMPLE_REPLY_SIZE;
}

export function simpleReply(error: number, cookieHi: number, cookieLo: number): Buffer {
  const b = Buffer.allocUnsafe(SIMPLE_REPLY_SIZE);
  writeSimpleReply(b, 0, error, cookieHi, cookieLo);
  return b;
}

export function writeStructuredHeader(
  t: Buffer,
  at: number,
  flags: number,
  type: number,
  cookieHi: number,
  cookieLo: number,
  length: number,
): number {
  t.writeUInt32BE(Magic.STRUCTURED_REPLY, at);
  t.writeUInt16BE(flags, at + 4);
  t.writeUInt16BE(type, at + 6);
  t.writeUInt32BE(cookieHi, at + 8);
  t.writeUInt32BE(cookieLo, at + 12);
  t.writeUInt32BE(length, at + 16);
  return at + STRUCTURED_HEADER_SIZE;
}

/** Header of an OFFSET_DATA chunk: the caller sends `dataLength` bytes after it. */
export function writeOffsetDataHeader(
  t: Buffer,
  at: number,
  cookieHi: number,
  cookieLo: number,
  offset: number,
  dataLength: number,
  done: boolean,
): number {
  // The spec forbids an empty OFFSET_DATA chunk; a zero-length read ends with NONE.
  assert(dataLength > 0, 'OFFSET_DATA chunk needs data');
  const p = writeStructuredHeader(t, at, done ? ReplyFlag.DONE : 0, ReplyType.OFFSET_DATA, cookieHi, cookieLo, 8 + dataLength);
  writeU64(t, p, offset);
  return p + 8;
}

export function offsetDataHeader(cookieHi: number, cookieLo: number, offset: number, dataLength: number, done: boolean): Buffer {
  const b = Buffer.allocUnsafe(OFFSET_DATA_HEADER_SIZE);
  writeOffsetDataHeader(b, 0, cookieHi, cookieLo, offset, dataLength, done);
  return b;
}

export function offsetHoleChunk(cookieHi: number, cookieLo: number, offset: number, holeLength: number, done: boolean): Buffer {
  assert(holeLength > 0 && holeLength <= 0xffffffff, 'hole length must be a non-zero u32');
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE + 12);
  const p = writeStructuredHeader(b, 0, done ? ReplyFlag.DONE : 0, ReplyType.OFFSET_HOLE, cookieHi, cookieLo, 12);
  writeU64(b, p, offset);
  b.writeUInt32BE(holeLength, p + 8);
  return b;
}

/** The final chunk of a reply that has nothing more to say. */
export function noneChunk(cookieHi: number, cookieLo: number): Buffer {
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE);
  writeStructuredHeader(b, 0, ReplyFlag.DONE, ReplyType.NONE, cookieHi, cookieLo, 0);
  return b;
}

function messageBytes(message: string): Buffer {
  const m = Buffer.from(message, 'utf8');
  // Strings on the wire are capped at 4096 bytes; cutting mid-character is
  // avoided by trimming from the decoded side.
  if (m.length <= MAX_STRING) return m;
  return Buffer.from(m.toString('utf8', 0, MAX_STRING).replace(/\uFFFD+$/, ''), 'utf8').subarray(0, MAX_STRING);
}

/** ERROR chunk: u32 error, u16 message length, message. */
export function errorChunk(cookieHi: number, cookieLo: number, error: number, message = '', done = true): Buffer {
  assert(error !== 0, 'an error chunk needs a non-zero error');
  const m = messageBytes(message);
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE + 6 + m.length);
  const p = writeStructuredHeader(b, 0, done ? ReplyFlag.DONE : 0, ReplyType.ERROR, cookieHi, cookieLo, 6 + m.length);
  b.writeUInt32BE(error, p);
  b.writeUInt16BE(m.length, p + 4);
  m.copy(b, p + 6);
  return b;
}

/** ERROR_OFFSET chunk: u32 error, u16 message length, message, u64 offset. */
export function errorOffsetChunk(
  cookieHi: number,
  cookieLo: number,
  error: number,
  offset: number,
  message = '',
  done = true,
): Buffer {
  assert(error !== 0, 'an error chunk needs a non-zero error');
  const m = messageBytes(message);
  const len = 6 + m.length + 8;
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE + len);
  const p = writeStructuredHeader(b, 0, done ? ReplyFlag.DONE : 0, ReplyType.ERROR_OFFSET, cookieHi, cookieLo, len);
  b.writeUInt32BE(error, p);
  b.writeUInt16BE(m.length, p + 4);
  m.copy(b, p + 6);
  writeU64(b, p + 6 + m.length, offset);
  return b;
}

/** BLOCK_STATUS chunk: u32 context id, then (u32 length, u32 flags) per extent. */
export function blockStatusChunk(
  cookieHi: number,
  cookieLo: number,
  contextId: number,
  extents: readonly Extent[],
  done: boolean,
): Buffer {
  assert(extents.length > 0, 'block status needs at least one extent');
  const len = 4 + 8 * extents.length;
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE + len);
  let p = writeStructuredHeader(b, 0, done ? ReplyFlag.DONE : 0, ReplyType.BLOCK_STATUS, cookieHi, cookieLo, len);
  b.writeUInt32BE(contextId, p);
  p += 4;
  for (const e of extents) {
    assert(e.length > 0 && e.length <= 0xffffffff, 'extent length must be a non-zero u32');
    b.writeUInt32BE(e.length, p);
    b.writeUInt32BE(e.flags, p + 4);
    p += 8;
  }
  return b;
}
