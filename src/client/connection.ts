/**
 * One client connection: a socket carrying pipelined ReFlex requests.
 *
 * - Handles are a 64-bit counter kept as two 32-bit halves; outstanding
 *   requests are looked up by the low half (2^32 requests are never
 *   outstanding at once) and the high half is checked on arrival.
 *   Responses may come back in any order.
 * - Everything sent in one tick leaves in one socket write: headers and
 *   small payloads are appended to a slab, and a microtask flushes the slab
 *   (large payloads are passed by reference, and the pieces go out through
 *   one corked writev).
 * - Completions are delivered to a `ResponseSink` with a caller-chosen
 *   numeric tag, so a hot caller (the load generator) allocates nothing per
 *   request. The promise API in index.ts is built on top.
 * - Timeouts: every request on a connection has the same timeout, so
 *   deadlines grow in issue order; a Map iterates in insertion order, and
 *   one periodic sweep stops at the first request not yet due. A request
 *   sent again after a reconnect keeps its first deadline, which is out of
 *   that order: while any such request is outstanding the sweep looks at
 *   every request (rare, and only until they are answered).
 * - A connection whose server answered ESHUTDOWN is draining: the pool
 *   sends nothing more on it while another connection can take requests.
 */
import net from 'node:net';
import tls from 'node:tls';
import { FrameParser, responsePayload, writeHeader, lo32, hi32, OPCODE_MASK, type Frame, type FrameSink } from '../protocol/reflex-codec.ts';
import { DEFAULT_MAX_REQUEST_BYTES, DEFAULT_SECTOR_SIZE, HEADER_SIZE, isErrorStatus, Notice, Status } from '../protocol/reflex-constants.ts';
import { assert } from '../util/assert.ts';
import { tuneDataSocket } from '../util/socket-options.ts';
import { LocalStatus, STATUS_OK, ReflexConnectionError } from './errors.ts';

/** Bytes one plain-TCP read may take; the parser keeps only partial frames. */
const RECV_BUFFER = 256 * 1024;
let sharedRecv: Buffer | null = null;
/**
 * One receive buffer for every connection of this thread: the read callback
 * is synchronous and the parser copies any partial frame out of it, so
 * connections never need the bytes after their callback returns.
 */
const recvBuffer = (): Buffer => (sharedRecv ??= Buffer.allocUnsafe(RECV_BUFFER));

/** Receives completions. `payload` is a view into the receive buffer, valid only during the call. */
export interface ResponseSink {
  onResponse(tag: number, status: number, payload: Buffer | null): void;
}

export interface ConnectionOptions {
  host?: string;
  port: number;
  /** Per-request timeout in ms; 0 disables. Default 30000. */
  timeoutMs?: number;
  /** Sector size used to frame GET replies until `setSectorSize` changes it. Default 512. */
  sectorSize?: number;
  /** Largest response payload accepted. Default 1 MiB (a larger one is a protocol error). */
  maxPayload?: number;
  /** First handle to use (tests use this to cross the 32-bit boundary). Default 1. */
  firstHandle?: number;
  /** Connect timeout in ms. Default 10000. */
  connectTimeoutMs?: number;
  /** Speak TLS (a server started with --tls-cert): options for tls.connect, e.g. { ca }. */
  tls?: tls.ConnectionOptions;
  /**
   * A request that times out means the connection is dead: close it, which
   * fails the rest with CLOSED (a reconnecting client sends them again on a
   * new connection), as the Linux nbd driver does. Default false.
   */
  closeOnTimeout?: boolean;
  /** Called for a server notice (Notice.*, e.g. a volume resize) with its lba field. */
  onNotice?: (notice: number, lba: number) => void;
}

/** Payloads at least this large are sent by reference instead of copied into the slab. */
const ZERO_COPY_MIN = 16 * 1024;
const SLAB_SIZE = 256 * 1024;
/** How long a graceful close waits for the server's answers before dropping the socket. */
const CLOSE_GRACE_MS = 5000;

/** Bookkeeping for one outstanding request; recycled through a free list. */
interface Slot {
  handleLo: number;
  handleHi: number;
  opcode: number;
  tag: number;
  sink: ResponseSink | null;
  deadline: number;
  /** Its deadline was given by the caller, so it may be earlier than requests sent before it. */
  unordered: boolean;
}

export class ClientConnection implements FrameSink {
  readonly socket: net.Socket;
  private parser: FrameParser;
  private sectorSizeValue: number;
  private readonly maxPayload: number;
  private readonly timeoutMs: number;
  private readonly closeOnTimeout: boolean;
  private readonly onNotice: ((notice: number, lba: number) => void) | undefined;
  /**
   * The volume size (sectors) of the last RESIZED notice since the last
   * HELLO was sent here, or null. A notice is newer than the HELLO reply it
   * follows, but may be parsed in the same read, before the caller awaiting
   * that reply runs: the handshake checks this afterwards.
   */
  noticedSectors: number | null = null;
  private readonly inflight = new Map<number, Slot>();
  private readonly free: Slot[] = [];
  private handleLo: number;
  private handleHi: number;

  private slab: Buffer = Buffer.allocUnsafe(SLAB_SIZE);
  private slabStart = 0;
  private slabEnd = 0;
  private chunks: Buffer[] = [];
  private flushQueued = false;
  private readonly flushTask = (): void => this.flush();

  private sweepTimer: NodeJS.Timeout | null = null;
  private closedFlag = false;
  private closeWaiters: Array<() => void> = [];
  /** Responses whose handle matched nothing outstanding (late after a timeout, or bogus). */
  unmatched = 0;
  /** Set when the socket reported an error. */
  lastError: Error | null = null;
  /** The server answered ESHUTDOWN: it is going away, so new requests should go elsewhere. */
  draining = false;
  /** Outstanding requests with `unordered` deadlines. */
  private unordered = 0;

  private constructor(socket: net.Socket, opts: ConnectionOptions, reader: { target: ClientConnection | null; early: Buffer[] } | null) {
    this.socket = socket;
    this.sectorSizeValue = opts.sectorSize ?? DEFAULT_SECTOR_SIZE;
    this.maxPayload = opts.maxPayload ?? DEFAULT_MAX_REQUEST_BYTES;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.closeOnTimeout = opts.closeOnTimeout ?? false;
    this.onNotice = opts.onNotice;
    const first = opts.firstHandle ?? 1;
    assert(Number.isSafeInteger(first) && first >= 0, 'firstHandle must be a non-negative safe integer');
    this.handleLo = lo32(first);
    this.handleHi = hi32(first);
    this.parser = this.makeParser();
    tuneDataSocket(socket);
    if (reader === null) {
      socket.on('data', (chunk: Buffer) => this.parser.push(chunk, this));
    } else {
      reader.target = this;
      for (const chunk of reader.early) this.parser.push(chunk, this);
      reader.early.length = 0;
    }
    socket.on('error', (err) => {
      this.lastError = err;
    });
    socket.on('close', () => this.onClosed(LocalStatus.CLOSED));
    if (this.timeoutMs > 0) {
      const every = Math.max(1, Math.min(100, Math.floor(this.timeoutMs / 4)));
      this.sweepTimer = setInterval(() => this.sweep(), every);
      this.sweepTimer.unref();
    }
  }

  /** Connects; rejects with a ReflexConnectionError (code ECONNRESET) when it cannot. */
  static open(opts: ConnectionOptions): Promise<ClientConnection> {
    return new Promise((resolve, reject) => {
      const host = opts.host ?? '127.0.0.1';
      // Plain TCP reads into one reused buffer (`onread`): no allocation per
      // read, so a busy client does not drive the GC with 64 KiB chunks. TLS
      // has no such option and keeps the 'data' stream.
      const reader = opts.tls ? null : { target: null as ClientConnection | null, early: [] as Buffer[] };
      const socket: net.Socket = opts.tls
        ? tls.connect({ servername: net.isIP(host) ? undefined : host, ...opts.tls, host, port: opts.port })
        : net.connect({
            host,
            port: opts.port,
            onread: {
              buffer: recvBuffer(),
              callback: (n: number, buf: Uint8Array): boolean => {
                const chunk = Buffer.from(buf.buffer, buf.byteOffset, n);
                if (reader!.target !== null) reader!.target.parser.push(chunk, reader!.target);
                else reader!.early.push(Buffer.from(chunk));
                return true;
              },
            },
          });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ReflexConnectionError('ECONNRESET', LocalStatus.CLOSED, `connect to ${opts.host ?? '127.0.0.1'}:${opts.port}: timed out`));
      }, opts.connectTimeoutMs ?? 10_000);
      const onError = (err: Error): void => {
        clearTimeout(timer);
        reject(new ReflexConnectionError('ECONNRESET', LocalStatus.CLOSED, `connect to ${opts.host ?? '127.0.0.1'}:${opts.port}: ${err.message}`));
      };
      socket.once('error', onError);
      socket.once(opts.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(new ClientConnection(socket, opts, reader));
      });
    });
  }

  get sectorSize(): number {
    return this.sectorSizeValue;
  }

  /** Requests sent and not yet answered (SET_NO_ACK excluded: it has no answer). */
  get outstanding(): number {
    return this.inflight.size;
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /**
   * Changes the sector size used to frame GET replies (after HELLO told the
   * real one). Only while nothing is outstanding: replies in flight were
   * framed by the old size.
   */
  setSectorSize(size: number): void {
    assert(this.inflight.size === 0 && this.parser.buffered === 0, 'setSectorSize with requests outstanding');
    assert(Number.isInteger(size) && size > 0, 'sector size must be a positive integer');
    this.sectorSizeValue = size;
    this.parser = this.makeParser();
  }

  private makeParser(): FrameParser {
    return new FrameParser({ sectorSize: this.sectorSizeValue, maxPayload: this.maxPayload, rule: responsePayload });
  }

  /**
   * Queues one request; it leaves with everything else queued this tick.
   * `sink` null means no reply is expected (SET_NO_ACK). `data` (the first
   * `dataLen` bytes are sent) must stay unmodified until the request
   * completes when it is at least 16 KiB: it is sent by reference.
   * A request on a closed connection completes with LocalStatus.CLOSED on a
   * later tick. `deadline` (performance.now() time) replaces the
   * connection's timeout for this request: a request sent again keeps the
   * deadline it was first given.
   */
  send(opcode: number, lba: number, count: number, data: Buffer | null, dataLen: number, sink: ResponseSink | null, tag: number, deadline?: number): void {
    const hLo = this.handleLo;
    const hHi = this.handleHi;
    if (hLo === 0xffff_ffff) {
      this.handleLo = 0;
      this.handleHi = (hHi + 1) >>> 0;
    } else {
      this.handleLo = hLo + 1;
    }
    if (this.closedFlag) {
      if (sink !== null) queueMicrotask(() => sink.onResponse(tag, LocalStatus.CLOSED, null));
      return;
    }
    if (sink !== null) {
      const slot = this.free.pop() ?? { handleLo: 0, handleHi: 0, opcode: 0, tag: 0, sink: null, deadline: 0, unordered: false };
      slot.handleLo = hLo;
      slot.handleHi = hHi;
      slot.opcode = opcode & OPCODE_MASK;
      slot.tag = tag;
      slot.sink = sink;
      slot.deadline = this.timeoutMs > 0 ? performance.now() + this.timeoutMs : Infinity;
      if (deadline !== undefined && deadline < slot.deadline) {
        slot.deadline = deadline;
        slot.unordered = true;
        this.unordered++;
      }
      assert(!this.inflight.has(hLo), 'handle reused while outstanding');
      this.inflight.set(hLo, slot);
    }
    const copyData = data !== null && dataLen > 0 && dataLen < ZERO_COPY_MIN;
    const off = this.reserve(HEADER_SIZE + (copyData ? dataLen : 0));
    writeHeader(this.slab, off, opcode, hLo, hHi, lo32(lba), hi32(lba), count);
    if (copyData) {
      data.copy(this.slab, off + HEADER_SIZE, 0, dataLen);
    } else if (data !== null && dataLen > 0) {
      this.seal();
      this.chunks.push(dataLen === data.length ? data : data.subarray(0, dataLen));
    }
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushTask);
    }
  }

  /** Space for `n` bytes at the slab's end; returns the offset. */
  private reserve(n: number): number {
    if (this.slabEnd + n > this.slab.length) {
      this.seal();
      this.slab = Buffer.allocUnsafe(Math.max(SLAB_SIZE, n));
      this.slabStart = 0;
      this.slabEnd = 0;
    }
    const off = this.slabEnd;
    this.slabEnd += n;
    return off;
  }

  /** Moves the slab's unsent bytes to the chunk list (the socket may keep them: never rewritten). */
  private seal(): void {
    if (this.slabEnd > this.slabStart) {
      this.chunks.push(this.slab.subarray(this.slabStart, this.slabEnd));
      this.slabStart = this.slabEnd;
    }
  }

  /** Writes everything queued, as one write (or one corked writev). */
  flush(): void {
    this.flushQueued = false;
    this.seal();
    const chunks = this.chunks;
    if (chunks.length === 0) return;
    this.chunks = [];
    if (this.closedFlag) return;
    if (chunks.length === 1) {
      this.socket.write(chunks[0]);
    } else {
      this.socket.cork();
      for (let i = 0; i < chunks.length; i++) this.socket.write(chunks[i]);
      this.socket.uncork();
    }
    // Once the slab is mostly used, start a fresh one so the next tick's
    // writes stay contiguous; the socket holds the old one until written.
    if (this.slab.length - this.slabEnd < 4096) {
      this.slab = Buffer.allocUnsafe(SLAB_SIZE);
      this.slabStart = 0;
      this.slabEnd = 0;
    }
  }

  // ---- inbound ---------------------------------------------------------------

  onFrame(f: Frame): boolean {
    // Notices answer no request; a server sends them only after a HELLO that asked.
    if ((f.opcode & OPCODE_MASK) === Notice.RESIZED && f.handleLo === 0 && f.handleHi === 0) {
      const sectors = f.lbaHi * 2 ** 32 + f.lbaLo;
      this.noticedSectors = sectors;
      this.onNotice?.(Notice.RESIZED, sectors);
      return true;
    }
    const slot = this.inflight.get(f.handleLo);
    if (slot === undefined || slot.handleHi !== f.handleHi) {
      this.unmatched++;
      return true;
    }
    this.inflight.delete(f.handleLo);
    const op = f.opcode & OPCODE_MASK;
    let status: number = STATUS_OK;
    if (isErrorStatus(op)) status = op;
    else if (op !== slot.opcode) status = LocalStatus.PROTOCOL;
    if (status === Status.ESHUTDOWN) this.draining = true;
    this.complete(slot, status, status === STATUS_OK ? f.payload : null);
    return true;
  }

  onError(): void {
    // The stream is garbled: nothing after this point can be matched.
    this.lastError = new Error('malformed response stream');
    this.onClosed(LocalStatus.PROTOCOL);
  }

  private complete(slot: Slot, status: number, payload: Buffer | null): void {
    const sink = slot.sink!;
    const tag = slot.tag;
    slot.sink = null;
    if (slot.unordered) {
      slot.unordered = false;
      this.unordered--;
    }
    this.free.push(slot);
    sink.onResponse(tag, status, payload);
  }

  private sweep(): void {
    if (this.inflight.size === 0) return;
    const now = performance.now();
    // Only a request that had its whole timeout on this connection says the
    // connection is dead; one sent again with an inherited deadline may have
    // had milliseconds left, and judging by it would kill healthy connections.
    let deadHere = 0;
    for (const [key, slot] of this.inflight) {
      if (slot.deadline > now) {
        if (this.unordered === 0) break;
        continue;
      }
      this.inflight.delete(key);
      if (!slot.unordered) deadHere++;
      this.complete(slot, LocalStatus.TIMEOUT, null);
    }
    if (deadHere > 0 && this.closeOnTimeout && !this.closedFlag) {
      this.lastError = new Error(`${deadHere} request(s) timed out: the connection is presumed dead`);
      // The server may be alive and still carry out what it holds: say so.
      this.onClosed(LocalStatus.ABANDONED);
    }
  }

  private onClosed(status: number): void {
    if (!this.closedFlag) {
      this.closedFlag = true;
      if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
      this.sweepTimer = null;
      this.socket.destroy();
    }
    // Fail what is left; a sink may issue more requests, which fail on a later tick.
    const left = [...this.inflight.values()];
    this.inflight.clear();
    for (const slot of left) this.complete(slot, status, null);
    const waiters = this.closeWaiters;
    this.closeWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * Graceful close: sends what is queued, half-closes, and lets the server
   * answer what is in flight (it closes after the last answer). Requests
   * still outstanding when the socket closes fail with ECONNRESET.
   */
  close(): Promise<void> {
    if (this.closedFlag) return Promise.resolve();
    return new Promise((resolve) => {
      this.closeWaiters.push(resolve);
      this.flush();
      this.socket.end();
      // A peer that never closes its side must not hang the caller.
      setTimeout(() => this.destroy(), CLOSE_GRACE_MS).unref();
    });
  }

  /** Immediate close: outstanding requests fail with ECONNRESET. */
  destroy(): void {
    this.onClosed(LocalStatus.CLOSED);
  }
}
