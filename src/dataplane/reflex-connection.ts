/**
 * One native-protocol connection: bytes in, requests to the data plane,
 * responses out in completion order.
 *
 * Memory stays bounded whatever the client does: at most `maxOutstanding`
 * requests are accepted before the connection stops reading (the kernel's
 * socket buffer then pushes back on the client), and a client that does not
 * read its responses stops being read too once the socket's write buffer
 * passes its high-water mark. That mark counts the data buffers of requests
 * in flight too, reads and writes alike, so a slow device cannot make a
 * connection hold more than about REPLY_HIGH_WATER of write payloads.
 */
import crypto from 'node:crypto';
import type { Socket } from 'node:net';
import { decodeAttach, NONCE_BYTES, verifyAttach } from '../protocol/attach.ts';
import { FrameParser, lbaNumber, requestPayload, writeHeader, encodeHelloInfo, FLAG_FUA, OPCODE_MASK, ParseError, HELLO_REPLY_SIZE, type Frame, type FrameSink, type ParseErrorCode } from '../protocol/reflex-codec.ts';
import { Cmd, Feature, HEADER_SIZE, HelloFlag, Notice, PROTOCOL_VERSION, Status } from '../protocol/reflex-constants.ts';
import { Errno, Op, type OpCode } from '../storage/engine.ts';
import type { DataPlane, Flushable } from './data-plane.ts';
import type { DpRequest, RequestOwner } from './request.ts';
import { Field } from './tenant-counters.ts';
import { tuneDataSocket } from '../util/socket-options.ts';
import type { CloseReason } from './worker-stats.ts';

export interface Volume {
  /** Volume name (what ATTACH and NBD call it). */
  name: string;
  /** Byte offset of the volume on the device. */
  offset: number;
  /** Size in bytes (a multiple of the sector size). */
  size: number;
}

/** What a connection is allowed to reach: a tenant, one of its volumes, the device's plane. */
export interface Binding {
  tenant: number;
  volume: Volume;
  plane: DataPlane;
}

export interface ConnectionContext {
  /** The port's tenant and volume (v1 compatibility), or null: ATTACH first. */
  binding: Binding | null;
  /** Plane used for replies before any binding (HELLO, errors). */
  home: DataPlane;
  sectorSize: number;
  maxRequestBytes: number;
  maxOutstanding: number;
  /** Looks up a tenant's volume and the tenant's secret for ATTACH; null when either is unknown. */
  lookup: (tenant: string, volume: string) => { binding: Binding; secret: string } | null;
  /** Called when the connection's binding changes (null: gone). */
  onBind?: (conn: ReflexConnection, binding: Binding | null) => void;
  /** Called once when the connection is gone. */
  onClose?: (reason: CloseReason) => void;
  /** True while the server drains for shutdown: new requests get ESHUTDOWN. */
  isDraining?: () => boolean;
}

const FEATURES = Feature.FLUSH | Feature.TRIM | Feature.WRITE_ZEROES | Feature.ERRORS | Feature.FUA | Feature.ATTACH;
/** Failed ATTACH attempts before the connection is closed. */
const MAX_ATTACH_FAILURES = 3;
const NO_TENANT = 0xffffffff;
/**
 * Reply bytes a connection may have coming (reads in flight, replies not yet
 * written, and what the socket still holds) before the server stops reading
 * it: a client that never reads its responses costs at most this much.
 */
const REPLY_HIGH_WATER = 4 << 20;

/** A reply waiting to be written: a finished request, or an error/HELLO header. */
interface Pending {
  opcode: number;
  handleLo: number;
  handleHi: number;
  lbaLo: number;
  lbaHi: number;
  count: number;
  data: Buffer | null;
  dataLen: number;
  req: DpRequest | null;
}

export class ReflexConnection implements FrameSink, RequestOwner, Flushable {
  private readonly socket: Socket;
  private readonly ctx: ConnectionContext;
  private plane: DataPlane;
  private binding: Binding | null;
  private readonly parser: FrameParser;
  private volSectors: number;
  private nonce: Buffer | null = null;
  private attachFailures = 0;
  /** The client asked (HELLO) for notices such as a volume resize. */
  private notices = false;
  private pending: Pending[] = [];
  private pendingBytes = 0;
  private outstanding = 0;
  /**
   * Data buffers of requests in flight: reads (replies that will need room)
   * and writes (payloads held until the device has them).
   */
  private dataBytes = 0;
  private readPaused = false;
  private closed = false;
  /** The server decided to close: no more requests are read; end once replies are out. */
  private closeAfterFlush = false;
  /** The client half-closed: serve what it sent, then end. */
  private peerEnded = false;
  /** Why it is closing, once known (the first cause wins). */
  private closeReason: CloseReason | null = null;

  constructor(socket: Socket, ctx: ConnectionContext) {
    this.socket = socket;
    this.ctx = ctx;
    this.binding = ctx.binding;
    this.plane = ctx.binding?.plane ?? ctx.home;
    this.volSectors = ctx.binding ? Math.floor(ctx.binding.volume.size / ctx.sectorSize) : 0;
    this.parser = new FrameParser({ sectorSize: ctx.sectorSize, maxPayload: ctx.maxRequestBytes, rule: requestPayload });
    tuneDataSocket(socket);
    socket.on('data', (chunk: Buffer) => this.parser.push(chunk, this));
    socket.on('drain', () => this.afterProgress());
    socket.on('error', () => {
      this.closeReason ??= 'error';
      this.teardown();
    });
    socket.on('close', () => this.teardown());
    socket.on('end', () => {
      this.closeReason ??= 'peer';
      // Half-close from the client: answer every request it sent, including
      // ones still buffered behind backpressure, then close.
      this.peerEnded = true;
      this.afterProgress();
    });
    if (this.binding) {
      this.plane.counters.add(this.binding.tenant, Field.CONNECTIONS, 1);
      ctx.onBind?.(this, this.binding);
    }
  }

  get live(): boolean {
    return !this.closed;
  }

  /** Requests accepted and not yet completed (queued, or at the device), even after the connection closed. */
  get inFlight(): number {
    return this.outstanding;
  }

  get boundTo(): Binding | null {
    return this.binding;
  }

  /**
   * The control plane grew this connection's volume in place: serve the new
   * range at once, and tell a client that asked for notices.
   */
  grown(b: Binding): void {
    const was = this.binding;
    // A connection that is closing (the client half-closed, or it is being cut) gets no new frames.
    if (was === null || b.volume.size <= was.volume.size || this.closed || this.closeAfterFlush || this.peerEnded) return;
    this.binding = b;
    this.volSectors = Math.floor(b.volume.size / this.ctx.sectorSize);
    if (!this.notices) return;
    const sectors = this.volSectors;
    this.push(Notice.RESIZED, 0, 0, sectors % 2 ** 32, Math.floor(sectors / 2 ** 32), 0, null, 0, null);
  }

  /** The control plane took this connection's tenant or volume away. */
  revoke(): void {
    this.closeReason ??= 'revoked';
    this.teardown();
  }

  // ---- inbound -------------------------------------------------------------

  onFrame(f: Frame): boolean {
    // Once the server has decided to close, nothing more is carried out.
    if (this.closed || this.closeAfterFlush) return false;
    const op = f.opcode & OPCODE_MASK;
    const flags = f.opcode & ~OPCODE_MASK;
    if (flags !== 0 && (flags !== FLAG_FUA || (op !== Cmd.SET && op !== Cmd.SET_NO_ACK))) {
      this.replyError(f, Status.EINVAL);
      return true;
    }
    if (this.ctx.isDraining?.()) {
      this.replyError(f, Status.ESHUTDOWN);
      return true;
    }
    if (op === Cmd.HELLO) {
      this.replyHello(f);
      return true;
    }
    if (op === Cmd.ATTACH) {
      this.attach(f);
      return true;
    }
    if (this.binding === null) {
      // Nothing is reachable before ATTACH on a port without a tenant.
      this.replyError(f, Status.EPERM);
      return true;
    }
    switch (op) {
      case Cmd.GET:
        return this.rw(f, Op.READ);
      case Cmd.SET:
      case Cmd.SET_NO_ACK:
        return this.rw(f, Op.WRITE);
      case Cmd.FLUSH:
        return this.issue(f, Op.FLUSH, 0, 0);
      case Cmd.TRIM:
      case Cmd.WRITE_ZEROES: {
        const lba = this.checkRange(f);
        if (lba < 0) return true;
        return this.issue(f, op === Cmd.TRIM ? Op.TRIM : Op.WRITE_ZEROES, lba * this.ctx.sectorSize, f.count * this.ctx.sectorSize);
      }
      default:
        this.replyError(f, Status.EINVAL);
        return true;
    }
  }

  onError(code: ParseErrorCode, f: Frame): void {
    // The stream cannot be trusted past this header: answer it, then close.
    this.replyError(f, Status.EINVAL);
    void code;
    this.closeReason ??= 'protocol';
    this.closeAfterFlush = true;
  }

  /** Checks lba/count against the volume; answers and returns -1 when out of range. */
  private checkRange(f: Frame): number {
    if (f.count === 0) {
      this.replyError(f, Status.EINVAL);
      return -1;
    }
    const lba = lbaNumber(f);
    if (lba < 0 || lba + f.count > this.volSectors) {
      this.replyError(f, Status.ERANGE);
      return -1;
    }
    return lba;
  }

  private rw(f: Frame, op: OpCode): boolean {
    const bytes = f.count * this.ctx.sectorSize;
    if (bytes > this.ctx.maxRequestBytes) {
      this.replyError(f, Status.EINVAL);
      return true;
    }
    const lba = this.checkRange(f);
    if (lba < 0) return true;
    return this.issue(f, op, lba * this.ctx.sectorSize, bytes);
  }

  private issue(f: Frame, op: OpCode, offset: number, length: number): boolean {
    const plane = this.plane;
    const binding = this.binding!;
    const req = plane.newRequest();
    req.op = op;
    req.offset = binding.volume.offset + offset;
    req.length = length;
    req.fua = (f.opcode & FLAG_FUA) !== 0;
    req.result = 0;
    req.owner = this;
    req.wireOp = f.opcode & OPCODE_MASK;
    req.handleLo = f.handleLo;
    req.handleHi = f.handleHi;
    req.lbaLo = f.lbaLo;
    req.lbaHi = f.lbaHi;
    req.count = f.count;
    req.tenant = binding.tenant;
    req.startMs = performance.now();
    if (op === Op.READ) {
      req.buf = plane.buffers.get(length);
    } else if (op === Op.WRITE) {
      const buf = plane.buffers.get(length);
      f.payload!.copy(buf, 0, 0, length);
      req.buf = buf;
    } else {
      req.buf = null;
    }
    this.outstanding++;
    if (op === Op.READ || op === Op.WRITE) this.dataBytes += length;
    plane.submit(req);
    if (this.outstanding >= this.ctx.maxOutstanding || this.replyBytes() > REPLY_HIGH_WATER) {
      this.pauseReading();
      return false;
    }
    return true;
  }

  // ---- outbound ------------------------------------------------------------

  complete(req: DpRequest): void {
    this.outstanding--;
    if (req.op === Op.READ || req.op === Op.WRITE) this.dataBytes -= req.length;
    const counters = this.plane.counters;
    const t = req.tenant;
    if (req.result < 0) {
      counters.add(t, Field.ERRORS, 1);
      this.push(statusOf(req.result), req.handleLo, req.handleHi, req.lbaLo, req.lbaHi, 0, null, 0, req);
    } else {
      counters.latency(t, (performance.now() - req.startMs) * 1000);
      if (req.op === Op.READ) {
        counters.add(t, Field.READ_OPS, 1);
        counters.add(t, Field.READ_BYTES, req.length);
        this.push(Cmd.GET, req.handleLo, req.handleHi, req.lbaLo, req.lbaHi, req.count, req.buf, req.length, req);
      } else if (req.op === Op.WRITE) {
        counters.add(t, Field.WRITE_OPS, 1);
        counters.add(t, Field.WRITE_BYTES, req.length);
        if (req.wireOp === Cmd.SET_NO_ACK) {
          req.plane!.release(req);
          this.afterProgress();
          return;
        }
        this.push(Cmd.SET, req.handleLo, req.handleHi, req.lbaLo, req.lbaHi, 0, null, 0, req);
      } else {
        counters.add(t, Field.OTHER_OPS, 1);
        this.push(req.wireOp, req.handleLo, req.handleHi, req.lbaLo, req.lbaHi, 0, null, 0, req);
      }
    }
  }

  private push(opcode: number, hLo: number, hHi: number, lLo: number, lHi: number, count: number, data: Buffer | null, dataLen: number, req: DpRequest | null): void {
    if (this.closed) {
      if (req !== null) req.plane!.release(req);
      return;
    }
    if (this.pending.length === 0) this.plane.markDirty(this);
    this.pending.push({ opcode, handleLo: hLo, handleHi: hHi, lbaLo: lLo, lbaHi: lHi, count, data, dataLen, req });
    this.pendingBytes += HEADER_SIZE + dataLen;
  }

  private replyError(f: Frame, status: number): void {
    if (this.binding !== null) this.plane.counters.add(this.binding.tenant, Field.ERRORS, 1);
    this.push(status, f.handleLo, f.handleHi, f.lbaLo, f.lbaHi, 0, null, 0, null);
  }

  private helloInfo(nonce: Buffer | undefined): Buffer {
    const b = this.binding;
    return encodeHelloInfo({
      version: PROTOCOL_VERSION,
      sectorSize: this.ctx.sectorSize,
      volumeSize: b ? b.volume.size : 0,
      maxRequestBytes: this.ctx.maxRequestBytes,
      features: FEATURES,
      maxOutstanding: this.ctx.maxOutstanding,
      tenantId: b ? b.tenant : NO_TENANT,
      nonce,
    });
  }

  private replyHello(f: Frame): void {
    this.notices = (f.lbaLo & HelloFlag.NOTICES) !== 0;
    // A fresh challenge each time: one ATTACH attempt per nonce.
    this.nonce = crypto.randomBytes(NONCE_BYTES);
    this.push(Cmd.HELLO, f.handleLo, f.handleHi, 0, 0, HELLO_REPLY_SIZE, this.helloInfo(this.nonce), HELLO_REPLY_SIZE, null);
  }

  private attach(f: Frame): void {
    const nonce = this.nonce;
    this.nonce = null;
    const req = f.payload === null ? null : decodeAttach(f.payload);
    if (req === null) {
      this.replyError(f, Status.EINVAL);
      return;
    }
    if (this.outstanding > 0) {
      // Requests in flight still belong to the old binding.
      this.replyError(f, Status.EBUSY);
      return;
    }
    const found = this.ctx.lookup(req.tenant, req.volume);
    if (nonce === null || found === null || !verifyAttach(req, found.secret, nonce)) {
      // One answer for every failure, so a client learns nothing about which part was wrong.
      if (found !== null) found.binding.plane.counters.add(found.binding.tenant, Field.REFUSED, 1);
      this.push(Status.EPERM, f.handleLo, f.handleHi, f.lbaLo, f.lbaHi, 0, null, 0, null);
      if (++this.attachFailures >= MAX_ATTACH_FAILURES) {
        this.closeReason ??= 'protocol';
        this.closeAfterFlush = true;
        this.pauseReading();
      }
      return;
    }
    this.rebind(found.binding);
    this.push(Cmd.ATTACH, f.handleLo, f.handleHi, 0, 0, HELLO_REPLY_SIZE, this.helloInfo(undefined), HELLO_REPLY_SIZE, null);
  }

  private rebind(b: Binding | null): void {
    if (this.binding !== null) this.plane.counters.add(this.binding.tenant, Field.CONNECTIONS, -1);
    this.binding = b;
    if (b !== null) {
      this.plane = b.plane;
      this.volSectors = Math.floor(b.volume.size / this.ctx.sectorSize);
      b.plane.counters.add(b.tenant, Field.CONNECTIONS, 1);
    }
    this.ctx.onBind?.(this, b);
  }

  /** Writes every pending reply with one socket write. */
  flush(): void {
    const list = this.pending;
    if (list.length === 0 || this.closed) return;
    this.pending = [];
    const total = this.pendingBytes;
    this.pendingBytes = 0;
    const plane = this.plane;
    const useScratch = total <= plane.scratch.length;
    const out = useScratch ? plane.scratch : Buffer.allocUnsafe(total);
    let off = 0;
    for (let i = 0; i < list.length; i++) {
      const p = list[i];
      writeHeader(out, off, p.opcode, p.handleLo, p.handleHi, p.lbaLo, p.lbaHi, p.count);
      off += HEADER_SIZE;
      if (p.data !== null) {
        p.data.copy(out, off, 0, p.dataLen);
        off += p.dataLen;
      }
      if (p.req !== null) p.req.plane!.release(p.req);
    }
    const before = this.socket.writableLength;
    this.socket.write(useScratch ? out.subarray(0, total) : out);
    // Not written through at once: the socket still refers to the scratch memory.
    if (useScratch && this.socket.writableLength !== before) plane.scratchTaken();
    this.afterProgress();
  }

  private afterProgress(): void {
    const answered = this.outstanding === 0 && this.pending.length === 0;
    // Idle: nothing in flight. A large reassembly buffer is not kept for later.
    if (answered) this.parser.releaseMemory();
    // After a half-close, reading stops only for backpressure: once it is not
    // paused the parser holds no complete frame (a partial one is dropped).
    if (answered && (this.closeAfterFlush || (this.peerEnded && !this.readPaused))) {
      this.socket.end();
      return;
    }
    this.maybeResume();
  }

  /** Reply bytes this connection has coming or unsent. */
  private replyBytes(): number {
    return this.dataBytes + this.pendingBytes + this.socket.writableLength;
  }

  private pauseReading(): void {
    if (!this.readPaused) {
      this.readPaused = true;
      this.socket.pause();
    }
  }

  private maybeResume(): void {
    const bytes = this.replyBytes();
    if (bytes > REPLY_HIGH_WATER) {
      this.pauseReading();
      return;
    }
    if (!this.readPaused || this.closed || this.closeAfterFlush) return;
    if (this.outstanding > this.ctx.maxOutstanding / 2 || bytes > REPLY_HIGH_WATER / 2) return;
    this.readPaused = false;
    this.parser.resume(this);
    if (!this.readPaused) {
      this.socket.resume();
      // Half-closed and now unpaused with everything answered: done.
      if (this.peerEnded) this.afterProgress();
    }
  }

  private teardown(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending) if (p.req !== null) p.req.plane!.release(p.req);
    this.pending = [];
    if (this.binding !== null) this.rebind(null);
    // In-flight requests still complete; `push` releases them once closed.
    this.socket.destroy();
    this.ctx.onClose?.(this.closeReason ?? 'peer');
  }
}

function statusOf(errno: number): number {
  switch (errno) {
    case Errno.EINVAL:
      return Status.EINVAL;
    case Errno.ENOSPC:
      return Status.ENOSPC;
    case Errno.EOPNOTSUPP:
      return Status.ENOTSUP;
    case Errno.ECANCELED:
      return Status.ESHUTDOWN;
    default:
      return Status.EIO;
  }
}

export { ParseError };
