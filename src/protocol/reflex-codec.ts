/**
 * ReFlex wire codec: 24-byte little-endian headers, optional payloads.
 *
 *   off size field
 *    0   2   magic      (always 24)
 *    2   2   opcode     (request opcode, response status, or opcode | flags)
 *    4   8   req_handle (opaque, echoed)
 *   12   8   lba
 *   20   4   lba_count
 *
 * The same framer decodes both directions; only the rule that says how many
 * payload bytes follow a header differs (`PayloadRule`). Frames are delivered
 * through one reusable `Frame` object so decoding allocates nothing per
 * request: a consumer copies what it keeps before returning.
 *
 * The 64-bit fields are kept as two unsigned 32-bit halves: the handle is
 * opaque and must round-trip bit-exactly, and JavaScript numbers hold only
 * 53 bits. `lbaNumber` converts when the value is representable.
 */
import { Cmd, HEADER_SIZE, MAGIC, isErrorStatus } from './reflex-constants.ts';

/** Bits above the low byte of the opcode field carry request flags (extension). */
export const OPCODE_MASK = 0x00ff;
export const FLAG_FUA = 0x0100;

export interface Frame {
  magic: number;
  /** Full 16-bit opcode field (low byte: opcode or status, high byte: flags). */
  opcode: number;
  handleLo: number;
  handleHi: number;
  lbaLo: number;
  lbaHi: number;
  count: number;
  /** Payload bytes, or null when none follows. Valid only during the callback. */
  payload: Buffer | null;
}

/** How many payload bytes follow a header; -1 when that cannot be known. */
export type PayloadRule = (opcode: number, count: number, sectorSize: number) => number;

/** Server side: what a client's request carries. */
export const requestPayload: PayloadRule = (opcode, count, sectorSize) => {
  switch (opcode & OPCODE_MASK) {
    case Cmd.SET:
    case Cmd.SET_NO_ACK:
      return count * sectorSize;
    case Cmd.HELLO:
    case Cmd.ATTACH:
      return count; // extension messages count bytes, not sectors
    default:
      return 0;
  }
};

/** Client side: what a server's response carries. */
export const responsePayload: PayloadRule = (opcode, count, sectorSize) => {
  const op = opcode & OPCODE_MASK;
  if (isErrorStatus(op)) return 0;
  if (op === Cmd.GET) return count * sectorSize;
  if (op === Cmd.HELLO || op === Cmd.ATTACH) return count;
  return 0;
};

export const ParseError = {
  /** The magic field is not 24: the stream's framing is lost. */
  BAD_MAGIC: 1,
  /** The payload the header announces exceeds the limit: it cannot be buffered. */
  TOO_LARGE: 2,
} as const;
export type ParseErrorCode = (typeof ParseError)[keyof typeof ParseError];

export interface FrameSink {
  /** One complete frame. Return false to stop parsing (the rest stays buffered). */
  onFrame(frame: Frame): boolean | void;
  /** A framing error. Parsing stops for good; the frame holds the offending header. */
  onError(code: ParseErrorCode, frame: Frame): void;
}

export interface ParserOptions {
  sectorSize: number;
  /** Largest payload accepted, in bytes. */
  maxPayload: number;
  rule: PayloadRule;
}

/**
 * Incremental parser. `push(chunk)` consumes as many whole frames as the
 * buffered bytes hold. Partial frames are kept; the backing buffer grows by
 * doubling only when a frame straddles chunks.
 */
export class FrameParser {
  readonly frame: Frame = { magic: 0, opcode: 0, handleLo: 0, handleHi: 0, lbaLo: 0, lbaHi: 0, count: 0, payload: null };
  private buf: Buffer = Buffer.alloc(0);
  private off = 0;
  private len = 0;
  private failed = false;
  private paused = false;
  private readonly sectorSize: number;
  private readonly maxPayload: number;
  private readonly rule: PayloadRule;

  constructor(opts: ParserOptions) {
    this.sectorSize = opts.sectorSize;
    this.maxPayload = opts.maxPayload;
    this.rule = opts.rule;
  }

  /** Bytes received but not yet consumed as frames. */
  get buffered(): number {
    return this.len;
  }

  get isFailed(): boolean {
    return this.failed;
  }

  push(chunk: Buffer, sink: FrameSink): void {
    if (this.failed) return;
    if (this.len === 0) {
      // Common case: nothing left over, parse straight from the chunk.
      this.buf = chunk;
      this.off = 0;
      this.len = chunk.length;
    } else {
      this.append(chunk);
    }
    this.drain(sink);
  }

  /** Continue after `onFrame` returned false. */
  resume(sink: FrameSink): void {
    this.paused = false;
    if (!this.failed) this.drain(sink);
  }

  private drain(sink: FrameSink): void {
    try {
      this.drainFrames(sink);
    } finally {
      // Even when a sink throws: the unparsed tail must not stay a view
      // into a chunk the caller is about to reuse.
      if (this.len === 0) {
        this.buf = EMPTY;
        this.off = 0;
      } else if (this.buf !== this.ownBuf) {
        this.keepLeftover();
      }
    }
  }

  private drainFrames(sink: FrameSink): void {
    const f = this.frame;
    this.paused = false;
    while (this.len >= HEADER_SIZE && !this.paused) {
      const b = this.buf;
      const o = this.off;
      f.magic = b.readUInt16LE(o);
      f.opcode = b.readUInt16LE(o + 2);
      f.handleLo = b.readUInt32LE(o + 4);
      f.handleHi = b.readUInt32LE(o + 8);
      f.lbaLo = b.readUInt32LE(o + 12);
      f.lbaHi = b.readUInt32LE(o + 16);
      f.count = b.readUInt32LE(o + 20);
      f.payload = null;
      if (f.magic !== MAGIC) {
        this.fail(sink, ParseError.BAD_MAGIC);
        return;
      }
      const plen = this.rule(f.opcode, f.count, this.sectorSize);
      if (plen > this.maxPayload) {
        this.fail(sink, ParseError.TOO_LARGE);
        return;
      }
      if (this.len < HEADER_SIZE + plen) break;
      if (plen > 0) f.payload = b.subarray(o + HEADER_SIZE, o + HEADER_SIZE + plen);
      this.off += HEADER_SIZE + plen;
      this.len -= HEADER_SIZE + plen;
      if (sink.onFrame(f) === false) this.paused = true;
    }
  }

  private ownBuf: Buffer = EMPTY;

  /** Reassembly memory (bytes) kept between frames. */
  get retainedBytes(): number {
    return this.ownBuf.length;
  }

  /**
   * Gives back a large reassembly buffer when nothing is buffered. For an
   * owner that has gone idle: a large SET that arrived in pieces grew the
   * buffer, and an idle connection must not keep megabytes for it. (Not
   * after every frame: a busy stream of large frames would reallocate it.)
   */
  releaseMemory(): void {
    if (this.len === 0 && this.ownBuf.length > KEEP_MAX) this.ownBuf = EMPTY;
  }

  private keepLeftover(): void {
    const need = this.len;
    if (this.ownBuf.length < need) this.ownBuf = Buffer.allocUnsafe(Math.max(need, 4096));
    this.buf.copy(this.ownBuf, 0, this.off, this.off + this.len);
    this.buf = this.ownBuf;
    this.off = 0;
  }

  private append(chunk: Buffer): void {
    if (this.buf !== this.ownBuf) this.keepLeftover();
    const need = this.len + chunk.length;
    if (this.off + need > this.ownBuf.length) {
      if (need <= this.ownBuf.length) {
        this.ownBuf.copy(this.ownBuf, 0, this.off, this.off + this.len);
      } else {
        let size = this.ownBuf.length * 2;
        while (size < need) size *= 2;
        const next = Buffer.allocUnsafe(size);
        this.ownBuf.copy(next, 0, this.off, this.off + this.len);
        this.ownBuf = next;
      }
      this.off = 0;
      this.buf = this.ownBuf;
    }
    chunk.copy(this.ownBuf, this.off + this.len);
    this.len = need;
  }

  private fail(sink: FrameSink, code: ParseErrorCode): void {
    this.failed = true;
    this.len = 0;
    this.buf = EMPTY;
    this.ownBuf = EMPTY;
    sink.onError(code, this.frame);
  }
}

const EMPTY = Buffer.alloc(0);
/** A reassembly buffer larger than this is dropped when the parser empties. */
const KEEP_MAX = 64 * 1024;

/** Largest LBA halves whose byte offset could still be a safe integer. */
const TWO_32 = 0x1_0000_0000;

/** The LBA as a number, or -1 when it exceeds 2^53 - 1. */
export function lbaNumber(f: Frame): number {
  if (f.lbaHi >= 0x20_0000) return -1;
  return f.lbaHi * TWO_32 + f.lbaLo;
}

/** Writes one header at `off`. The 64-bit fields are given as halves. */
export function writeHeader(
  out: Buffer,
  off: number,
  opcode: number,
  handleLo: number,
  handleHi: number,
  lbaLo: number,
  lbaHi: number,
  count: number,
): void {
  out.writeUInt16LE(MAGIC, off);
  out.writeUInt16LE(opcode, off + 2);
  out.writeUInt32LE(handleLo >>> 0, off + 4);
  out.writeUInt32LE(handleHi >>> 0, off + 8);
  out.writeUInt32LE(lbaLo >>> 0, off + 12);
  out.writeUInt32LE(lbaHi >>> 0, off + 16);
  out.writeUInt32LE(count >>> 0, off + 20);
}

/** Splits a non-negative safe integer into 32-bit halves. */
export function lo32(n: number): number {
  return n % TWO_32 >>> 0;
}
export function hi32(n: number): number {
  return Math.floor(n / TWO_32) >>> 0;
}

/**
 * HELLO / ATTACH reply payload (48 bytes, little-endian):
 *   0 u16 protocol version   2 u16 reserved       4 u32 sector size
 *   8 u64 volume size bytes 16 u32 max request bytes
 *  20 u32 feature bits      24 u32 max outstanding requests per connection
 *  28 u32 tenant id (0xffffffff: none yet)
 *  32 16 bytes: server nonce for ATTACH (HELLO; zeros in ATTACH replies)
 */
export const HELLO_REPLY_SIZE = 48;
const HELLO_MIN_SIZE = 32;

export interface HelloInfo {
  version: number;
  sectorSize: number;
  volumeSize: number;
  maxRequestBytes: number;
  features: number;
  maxOutstanding: number;
  tenantId: number;
  /** Challenge for ATTACH (16 bytes), when the server offers one. */
  nonce?: Buffer;
}

export function encodeHelloInfo(info: HelloInfo, out: Buffer = Buffer.alloc(HELLO_REPLY_SIZE), off = 0): Buffer {
  out.writeUInt16LE(info.version, off);
  out.writeUInt16LE(0, off + 2);
  out.writeUInt32LE(info.sectorSize, off + 4);
  out.writeUInt32LE(lo32(info.volumeSize), off + 8);
  out.writeUInt32LE(hi32(info.volumeSize), off + 12);
  out.writeUInt32LE(info.maxRequestBytes, off + 16);
  out.writeUInt32LE(info.features >>> 0, off + 20);
  out.writeUInt32LE(info.maxOutstanding, off + 24);
  out.writeUInt32LE(info.tenantId >>> 0, off + 28);
  if (info.nonce !== undefined) info.nonce.copy(out, off + 32, 0, 16);
  else out.fill(0, off + 32, off + 48);
  return out;
}

export function decodeHelloInfo(buf: Buffer): HelloInfo {
  if (buf.length < HELLO_MIN_SIZE) throw new RangeError(`HELLO reply is ${buf.length} bytes, expected ${HELLO_REPLY_SIZE}`);
  const info: HelloInfo = {
    version: buf.readUInt16LE(0),
    sectorSize: buf.readUInt32LE(4),
    volumeSize: buf.readUInt32LE(12) * TWO_32 + buf.readUInt32LE(8),
    maxRequestBytes: buf.readUInt32LE(16),
    features: buf.readUInt32LE(20),
    maxOutstanding: buf.readUInt32LE(24),
    tenantId: buf.readUInt32LE(28),
  };
  if (buf.length >= HELLO_REPLY_SIZE) info.nonce = Buffer.from(buf.subarray(32, 48));
  return info;
}
