/**
 * Transmission-phase request parser: fed socket chunks, calls a handler once
 * per complete request. Pure: no sockets.
 *
 *   const parser = new NbdRequestParser({
 *     onRequest(req)        { ... },   // a complete request; WRITE carries req.data
 *     onReject(req, error)  { ... },   // well-framed but unacceptable: reply `error`
 *     onFatal(reason)       { ... },   // stream is garbage: close the connection
 *   }, { maxPayload: 32 << 20 });
 *   socket.on('data', (chunk) => parser.feed(chunk));
 *
 * Request header (28 bytes, big endian):
 *   u32 magic 0x25609513 | u16 flags | u16 type | u64 cookie | u64 offset | u32 length
 * followed by `length` payload bytes for NBD_CMD_WRITE only (extended headers
 * are not negotiated, so no other command has a payload).
 *
 * Representation, chosen for the hot path:
 * - One `NbdRequest` object is reused for every callback: copy the scalar
 *   fields you keep past the callback.
 * - The cookie stays two u32 halves (`cookieHi`, `cookieLo`): opaque, echoed
 *   bit-exactly, and no bigint allocation per request.
 * - `offset` is a number. Offsets at or above 2^53 lose precision but stay
 *   >= 2^53, so they still fail any bounds check against an export size
 *   (sizes are safe integers); validateRequest reports them.
 * - `data` (WRITE) is a view into the fed chunk when the payload arrived in
 *   one piece, or a fresh buffer assembled across chunks. Either way the
 *   parser never writes into it again, so the caller may keep it (the
 *   caller must not recycle fed chunks while it does).
 *
 * Flow control: a handler may call `pause()` from inside a callback; the
 * parser then stops at that request boundary and keeps the rest of the
 * chunk (a view, not a copy) until `resume()`. Input fed while paused is
 * queued behind it. This is what lets a connection hold its number of
 * requests in flight to a limit even when one chunk carries thousands.
 *
 * READ and WRITE longer than `maxPayload` are rejected with EOVERFLOW; a
 * rejected WRITE's payload is discarded as it arrives, so the stream stays
 * in step without buffering it. A wrong magic is fatal: nothing after it can
 * be framed. After onFatal the parser ignores further input.
 */
import { assert } from '../util/assert.ts';
import { Cmd, DEFAULT_MAX_PAYLOAD, Magic, NbdError, REQUEST_HEADER_SIZE } from './constants.ts';

export interface NbdRequest {
  flags: number;
  type: number;
  cookieHi: number;
  cookieLo: number;
  offset: number;
  length: number;
  /** WRITE payload (exactly `length` bytes), else null. */
  data: Buffer | null;
}

export interface NbdRequestHandler {
  onRequest(req: NbdRequest): void;
  /** The request cannot be served (e.g. too long); its payload is being skipped. */
  onReject(req: NbdRequest, error: number): void;
  onFatal(reason: string): void;
}

export interface NbdRequestParserOptions {
  /** Longest READ or WRITE accepted (default 32 MiB, the spec's default maximum). */
  maxPayload?: number;
}

export function newNbdRequest(): NbdRequest {
  return { flags: 0, type: 0, cookieHi: 0, cookieLo: 0, offset: 0, length: 0, data: null };
}

const HEADER = 0;
const PAYLOAD = 1;
const DISCARD = 2;
const FATAL = 3;

export class NbdRequestParser {
  private readonly handler: NbdRequestHandler;
  readonly maxPayload: number;
  private readonly req: NbdRequest = newNbdRequest();

  private state = HEADER;
  /** Partial header carried between chunks. */
  private readonly header = Buffer.alloc(REQUEST_HEADER_SIZE);
  private headerFill = 0;
  /** Payload being assembled across chunks. */
  private payload: Buffer | null = null;
  private payloadFill = 0;
  private discardLeft = 0;
  private paused = false;
  /** Input not parsed yet because the handler paused. */
  private held: Buffer | null = null;

  constructor(handler: NbdRequestHandler, opts: NbdRequestParserOptions = {}) {
    this.handler = handler;
    this.maxPayload = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    assert(Number.isInteger(this.maxPayload) && this.maxPayload > 0, 'maxPayload must be a positive integer');
  }

  /** True once the stream was found corrupt; the connection must close. */
  get failed(): boolean {
    return this.state === FATAL;
  }

  /** True between requests: no partial header or payload held. */
  get idle(): boolean {
    return this.state === HEADER && this.headerFill === 0 && this.held === null;
  }

  /** True while the handler holds the parser (see `pause`). */
  get isPaused(): boolean {
    return this.paused;
  }

  /** Stop after the current request; the rest of the input waits for `resume`. */
  pause(): void {
    this.paused = true;
  }

  /** Continue with held input (calls the handler synchronously). */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const h = this.held;
    this.held = null;
    if (h !== null) this.feed(h);
  }

  feed(chunk: Buffer): void {
    if (this.paused) {
      this.held = this.held === null ? chunk : Buffer.concat([this.held, chunk]);
      return;
    }
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      if (this.paused) {
        if (this.state !== FATAL) this.held = chunk.subarray(pos);
        return;
      }
      switch (this.state) {
        case HEADER: {
          if (this.headerFill === 0 && end - pos >= REQUEST_HEADER_SIZE) {
            // Fast path: the whole header is in this chunk.
            this.onHeader(chunk, pos);
            pos += REQUEST_HEADER_SIZE;
          } else {
            const n = Math.min(REQUEST_HEADER_SIZE - this.headerFill, end - pos);
            chunk.copy(this.header, this.headerFill, pos, pos + n);
            this.headerFill += n;
            pos += n;
            if (this.headerFill === REQUEST_HEADER_SIZE) {
              this.headerFill = 0;
              this.onHeader(this.header, 0);
            }
          }
          break;
        }
        case PAYLOAD: {
          const need = this.req.length - this.payloadFill;
          if (this.payload === null && end - pos >= need) {
            // Fast path: the whole payload is in this chunk; hand out a view.
            this.state = HEADER;
            this.deliver(chunk.subarray(pos, pos + need));
            pos += need;
          } else {
            if (this.payload === null) this.payload = Buffer.allocUnsafe(this.req.length);
            const n = Math.min(need, end - pos);
            chunk.copy(this.payload, this.payloadFill, pos, pos + n);
            this.payloadFill += n;
            pos += n;
            if (this.payloadFill === this.req.length) {
              const data = this.payload;
              this.payload = null;
              this.payloadFill = 0;
              this.state = HEADER;
              this.deliver(data);
            }
          }
          break;
        }
        case DISCARD: {
          const n = Math.min(this.discardLeft, end - pos);
          this.discardLeft -= n;
          pos += n;
          if (this.discardLeft === 0) this.state = HEADER;
          break;
        }
        default:
          return; // FATAL: ignore everything
      }
    }
  }

  private onHeader(b: Buffer, at: number): void {
    if (b.readUInt32BE(at) !== Magic.REQUEST) {
      this.state = FATAL;
      this.handler.onFatal(`bad request magic 0x${b.readUInt32BE(at).toString(16).padStart(8, '0')}`);
      return;
    }
    const req = this.req;
    req.flags = b.readUInt16BE(at + 4);
    req.type = b.readUInt16BE(at + 6);
    req.cookieHi = b.readUInt32BE(at + 8);
    req.cookieLo = b.readUInt32BE(at + 12);
    req.offset = b.readUInt32BE(at + 16) * 0x100000000 + b.readUInt32BE(at + 20);
    req.length = b.readUInt32BE(at + 24);
    req.data = null;
    const isWrite = req.type === Cmd.WRITE;
    if ((isWrite || req.type === Cmd.READ) && req.length > this.maxPayload) {
      if (isWrite) {
        this.state = DISCARD;
        this.discardLeft = req.length;
      }
      this.handler.onReject(req, NbdError.EOVERFLOW);
      return;
    }
    if (isWrite && req.length > 0) {
      this.state = PAYLOAD;
      this.payloadFill = 0;
      return;
    }
    if (isWrite) req.data = EMPTY;
    this.handler.onRequest(req);
  }

  private deliver(data: Buffer): void {
    assert(data.length === this.req.length, 'payload length mismatch');
    this.req.data = data;
    this.handler.onRequest(this.req);
  }
}

const EMPTY = Buffer.alloc(0);
