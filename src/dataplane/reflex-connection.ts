/**
 * One native-protocol connection: bytes in, requests to the data plane,
 * responses out in completion order.
 *
 * Memory stays bounded whatever the client does: at most `maxOutstanding`
 * requests are accepted before the connection stops reading (the kernel's
 * socket buffer then pushes back on the client), and a client that does not
 * read its responses stops being read too once the socket's write buffer
 * passes its high-water mark.
 */
import type { Socket } from 'node:net';
import { FrameParser, lbaNumber, requestPayload, writeHeader, encodeHelloInfo, FLAG_FUA, OPCODE_MASK, ParseError, HELLO_REPLY_SIZE, type Frame, type FrameSink, type ParseErrorCode } from '../protocol/reflex-codec.ts';
import { Cmd, Feature, HEADER_SIZE, PROTOCOL_VERSION, Status } from '../protocol/reflex-constants.ts';
import { Errno, Op, type OpCode } from '../storage/engine.ts';
import type { DataPlane, Flushable } from './data-plane.ts';
import type { DpRequest, RequestOwner } from './request.ts';
import { Field } from './tenant-counters.ts';

export interface Volume {
  /** Byte offset of the volume on the device. */
  offset: number;
  /** Size in bytes (a multiple of the sector size). */
  size: number;
}

export interface ConnectionContext {
  plane: DataPlane;
  tenant: number;
  volume: Volume;
  sectorSize: number;
  maxRequestBytes: number;
  maxOutstanding: number;
  /** Called once when the connection is gone. */
  onClose?: () => void;
  /** True while the server drains for shutdown: new requests get ESHUTDOWN. */
  isDraining?: () => boolean;
}

const FEATURES = Feature.FLUSH | Feature.TRIM | Feature.WRITE_ZEROES | Feature.ERRORS | Feature.FUA;
/** Above this many bytes of unsent replies, stop reading the client. */
const WRITE_HIGH_WATER = 4 << 20;

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
  private readonly plane: DataPlane;
  private readonly parser: FrameParser;
  private readonly volSectors: number;
  private pending: Pending[] = [];
  private pendingBytes = 0;
  private outstanding = 0;
  private readPaused = false;
  private closed = false;
  private closeAfterFlush = false;

  constructor(socket: Socket, ctx: ConnectionContext) {
    this.socket = socket;
    this.ctx = ctx;
    this.plane = ctx.plane;
    this.volSectors = Math.floor(ctx.volume.size / ctx.sectorSize);
    this.parser = new FrameParser({ sectorSize: ctx.sectorSize, maxPayload: ctx.maxRequestBytes, rule: requestPayload });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.parser.push(chunk, this));
    socket.on('drain', () => this.maybeResume());
    socket.on('error', () => this.teardown());
    socket.on('close', () => this.teardown());
    socket.on('end', () => {
      // Half-close from the client: answer what is in flight, then close.
      this.closeAfterFlush = true;
      if (this.outstanding === 0 && this.pending.length === 0) socket.end();
    });
    this.plane.counters.add(ctx.tenant, Field.CONNECTIONS, 1);
  }

  // ---- inbound -------------------------------------------------------------

  onFrame(f: Frame): boolean {
    if (this.closed) return false;
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
      case Cmd.HELLO:
        this.replyHello(f);
        return true;
      default:
        // ATTACH and anything unknown: not offered on this connection.
        this.replyError(f, op === Cmd.ATTACH ? Status.ENOTSUP : Status.EINVAL);
        return true;
    }
  }

  onError(code: ParseErrorCode, f: Frame): void {
    // The stream cannot be trusted past this header: answer it, then close.
    this.replyError(f, Status.EINVAL);
    void code;
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
    const req = plane.requests.get();
    req.op = op;
    req.offset = this.ctx.volume.offset + offset;
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
    req.tenant = this.ctx.tenant;
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
    plane.submit(req);
    if (this.outstanding >= this.ctx.maxOutstanding) {
      this.pauseReading();
      return false;
    }
    return true;
  }

  // ---- outbound ------------------------------------------------------------

  complete(req: DpRequest): void {
    this.outstanding--;
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
          this.plane.release(req);
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
      if (req !== null) this.plane.release(req);
      return;
    }
    if (this.pending.length === 0) this.plane.markDirty(this);
    this.pending.push({ opcode, handleLo: hLo, handleHi: hHi, lbaLo: lLo, lbaHi: lHi, count, data, dataLen, req });
    this.pendingBytes += HEADER_SIZE + dataLen;
  }

  private replyError(f: Frame, status: number): void {
    this.plane.counters.add(this.ctx.tenant, Field.ERRORS, 1);
    this.push(status, f.handleLo, f.handleHi, f.lbaLo, f.lbaHi, 0, null, 0, null);
  }

  private replyHello(f: Frame): void {
    const info = encodeHelloInfo({
      version: PROTOCOL_VERSION,
      sectorSize: this.ctx.sectorSize,
      volumeSize: this.ctx.volume.size,
      maxRequestBytes: this.ctx.maxRequestBytes,
      features: FEATURES,
      maxOutstanding: this.ctx.maxOutstanding,
      tenantId: this.ctx.tenant,
    });
    this.push(Cmd.HELLO, f.handleLo, f.handleHi, 0, 0, HELLO_REPLY_SIZE, info, HELLO_REPLY_SIZE, null);
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
      if (p.req !== null) plane.release(p.req);
    }
    const before = this.socket.writableLength;
    this.socket.write(useScratch ? out.subarray(0, total) : out);
    // Not written through at once: the socket still refers to the scratch memory.
    if (useScratch && this.socket.writableLength !== before) plane.scratchTaken();
    this.afterProgress();
  }

  private afterProgress(): void {
    if (this.closeAfterFlush && this.outstanding === 0 && this.pending.length === 0) {
      this.socket.end();
      return;
    }
    this.maybeResume();
  }

  private pauseReading(): void {
    if (!this.readPaused) {
      this.readPaused = true;
      this.socket.pause();
    }
  }

  private maybeResume(): void {
    if (this.socket.writableLength > WRITE_HIGH_WATER) {
      this.pauseReading();
      return;
    }
    if (!this.readPaused || this.closed || this.closeAfterFlush) return;
    if (this.outstanding > this.ctx.maxOutstanding / 2) return;
    this.readPaused = false;
    this.parser.resume(this);
    if (!this.readPaused) this.socket.resume();
  }

  private teardown(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending) if (p.req !== null) this.plane.release(p.req);
    this.pending = [];
    this.plane.counters.add(this.ctx.tenant, Field.CONNECTIONS, -1);
    // In-flight requests still complete; `push` releases them once closed.
    this.socket.destroy();
    this.ctx.onClose?.();
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
