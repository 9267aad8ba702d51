/**
 * The client's half of the wire format: encoders for what a client sends and
 * decoders for what a server answers. Used by our tests to play the client
 * byte-exactly, and usable as the base of an in-process NBD peer.
 * Not tuned for speed: it allocates freely.
 *
 *   encodeClientFlags(flags): Buffer
 *   encodeOption(option, data?): Buffer
 *   encodeInfoOption(option, name, infos): Buffer           option is INFO or GO
 *   encodeMetaContextOption(option, name, queries): Buffer  option is LIST_/SET_META_CONTEXT
 *   encodeRequest(fields, data?): Buffer
 *   decodeGreeting(buf): { magic, ihaveopt, flags }
 *   decodeOptionReplies(buf): { replies: OptionReply[], rest: Buffer }
 *   decodeInfo(reply): InfoPayload       decode one NBD_REP_INFO payload
 *   decodeReplies(buf, readLength): { replies: TransmissionReply[], rest }
 */
import { Info, Magic, OPTION_HEADER_SIZE, OPTION_REPLY_HEADER_SIZE, SIMPLE_REPLY_SIZE, STRUCTURED_HEADER_SIZE } from './constants.ts';

export function encodeClientFlags(flags: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(flags >>> 0, 0);
  return b;
}

export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_HEADER_SIZE + data.length);
  b.writeBigUInt64BE(Magic.IHAVEOPT, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(data.length, 12);
  data.copy(b, OPTION_HEADER_SIZE);
  return b;
}

export function encodeInfoOption(option: number, name: string, infos: readonly number[]): Buffer {
  const n = Buffer.from(name, 'utf8');
  const d = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
  d.writeUInt32BE(n.length, 0);
  n.copy(d, 4);
  d.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((t, i) => d.writeUInt16BE(t, 6 + n.length + 2 * i));
  return encodeOption(option, d);
}

export function encodeMetaContextOption(option: number, name: string, queries: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  const n = Buffer.from(name, 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(n.length, 0);
  parts.push(head, n);
  const count = Buffer.alloc(4);
  count.writeUInt32BE(queries.length, 0);
  parts.push(count);
  for (const q of queries) {
    const qb = Buffer.from(q, 'utf8');
    const l = Buffer.alloc(4);
    l.writeUInt32BE(qb.length, 0);
    parts.push(l, qb);
  }
  return encodeOption(option, Buffer.concat(parts));
}

export interface RequestFields {
  flags?: number;
  type: number;
  cookieHi?: number;
  cookieLo?: number;
  offset?: number | bigint;
  length: number;
  magic?: number;
}

export function encodeRequest(f: RequestFields, data?: Buffer): Buffer {
  const b = Buffer.alloc(28 + (data?.length ?? 0));
  b.writeUInt32BE(f.magic ?? Magic.REQUEST, 0);
  b.writeUInt16BE(f.flags ?? 0, 4);
  b.writeUInt16BE(f.type, 6);
  b.writeUInt32BE(f.cookieHi ?? 0, 8);
  b.writeUInt32BE(f.cookieLo ?? 0, 12);
  b.writeBigUInt64BE(BigInt(f.offset ?? 0), 16);
  b.writeUInt32BE(f.length >>> 0, 24);
  data?.copy(b, 28);
  return b;
}

export function decodeGreeting(b: Buffer): { magic: bigint; ihaveopt: bigint; flags: number } {
  return { magic: b.readBigUInt64BE(0), ihaveopt: b.readBigUInt64BE(8), flags: b.readUInt16BE(16) };
}

export interface OptionReply {
  magic: bigint;
  option: number;
  type: number;
  data: Buffer;
}

export function decodeOptionReplies(b: Buffer): { replies: OptionReply[]; rest: Buffer } {
  const replies: OptionReply[] = [];
  let at = 0;
  while (b.length - at >= OPTION_REPLY_HEADER_SIZE) {
    const len = b.readUInt32BE(at + 16);
    if (b.length - at < OPTION_REPLY_HEADER_SIZE + len) break;
    replies.push({
      magic: b.readBigUInt64BE(at),
      option: b.readUInt32BE(at + 8),
      type: b.readUInt32BE(at + 12),
      data: b.subarray(at + OPTION_REPLY_HEADER_SIZE, at + OPTION_REPLY_HEADER_SIZE + len),
    });
    at += OPTION_REPLY_HEADER_SIZE + len;
  }
  return { replies, rest: b.subarray(at) };
}

export type InfoPayload =
  | { info: 'export'; size: bigint; flags: number }
  | { info: 'name' | 'description'; text: string }
  | { info: 'block_size'; min: number; preferred: number; max: number }
  | { info: 'unknown'; type: number };

export function decodeInfo(data: Buffer): InfoPayload {
  const t = data.readUInt16BE(0);
  switch (t) {
    case Info.EXPORT:
      return { info: 'export', size: data.readBigUInt64BE(2), flags: data.readUInt16BE(10) };
    case Info.NAME:
      return { info: 'name', text: data.toString('utf8', 2) };
    case Info.DESCRIPTION:
      return { info: 'description', text: data.toString('utf8', 2) };
    case Info.BLOCK_SIZE:
      return { info: 'block_size', min: data.readUInt32BE(2), preferred: data.readUInt32BE(6), max: data.readUInt32BE(10) };
    default:
      return { info: 'unknown', type: t };
  }
}

export type TransmissionReply =
  | { kind: 'simple'; error: number; cookie: bigint; data: Buffer }
  | { kind: 'structured'; flags: number; type: number; cookie: bigint; payload: Buffer };

/**
 * Splits server output into replies. A simple reply's data length cannot be
 * known from the stream: `readLength(cookie)` says how many data bytes follow
 * a successful simple reply to that cookie (0 for non-READ).
 */
export function decodeReplies(
  b: Buffer,
  readLength: (cookie: bigint) => number,
): { replies: TransmissionReply[]; rest: Buffer } {
  const replies: TransmissionReply[] = [];
  let at = 0;
  for (;;) {
    if (b.length - at < 4) break;
    const magic = b.readUInt32BE(at);
    if (magic === Magic.SIMPLE_REPLY) {
      if (b.length - at < SIMPLE_REPLY_SIZE) break;
      const error = b.readUInt32BE(at + 4);
      const cookie = b.readBigUInt64BE(at + 8);
      const n = error === 0 ? readLength(cookie) : 0;
      if (b.length - at < SIMPLE_REPLY_SIZE + n) break;
      replies.push({ kind: 'simple', error, cookie, data: b.subarray(at + SIMPLE_REPLY_SIZE, at + SIMPLE_REPLY_SIZE + n) });
      at += SIMPLE_REPLY_SIZE + n;
    } else if (magic === Magic.STRUCTURED_REPLY) {
      if (b.length - at < STRUCTURED_HEADER_SIZE) break;
      const len = b.readUInt32BE(at + 16);
      if (b.length - at < STRUCTURED_HEADER_SIZE + len) break;
      replies.push({
        kind: 'structured',
        flags: b.readUInt16BE(at + 4),
        type: b.readUInt16BE(at + 6),
        cookie: b.readBigUInt64BE(at + 8),
        payload: b.subarray(at + STRUCTURED_HEADER_SIZE, at + STRUCTURED_HEADER_SIZE + len),
      });
      at += STRUCTURED_HEADER_SIZE + len;
    } else {
      throw new Error(`bad reply magic 0x${magic.toString(16)}`);
    }
  }
  return { replies, rest: b.subarray(at) };
}
