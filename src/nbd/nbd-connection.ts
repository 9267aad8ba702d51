/**
 * One NBD connection on a data-plane worker: handshake, then requests to the
 * data plane and replies out in completion order.
 *
 *   new NbdConnection(socket, ctx: FrontEndContext)
 *
 * The pure pieces do the protocol (NbdHandshake, NbdRequestParser,
 * validateRequest, reply writers); this class moves bytes and keeps the
 * same promises as the native protocol's connection (reflex-connection.ts):
 * - bounded memory: at most `ctx.maxOutstanding` requests in flight before
 *   the parser and the socket pause, and no reading while more than
 *   REPLY_HIGH_WATER bytes of replies are coming or wait in the socket, or
 *   of write payloads wait for the device;
 * - replies of one event-loop turn go out in one socket write, serialized
 *   into the plane's shared scratch memory when they fit;
 * - it never throws on client input: bad bytes get an error reply or a
 *   closed connection, and a connection that stalls in negotiation is cut.
 *
 * Reply forms: simple replies unless structured replies were negotiated;
 * then READ is answered with one OFFSET_DATA chunk (DONE) and errors with an
 * ERROR chunk, while other successes stay simple (the spec allows it, and
 * every structured client accepts it).
 *
 * Shutdown: while the server drains, new requests are answered ESHUTDOWN;
 * NBD_CMD_DISC, a half-close or a stream error end the connection once the
 * replies in flight are written.
 *
 * TLS: when the worker has a certificate (`ctx.tls`), TLS is required
 * (FORCEDTLS): the client must send NBD_OPT_STARTTLS before anything else
 * is served. On STARTTLS the plain socket is wrapped in a server TLSSocket
 * and `this.socket` becomes that wrapper, so every later read, write,
 * pause and flow-control check goes through TLS without a per-request
 * test; the plain socket is kept only to notice the connection going away.
 */
import type { Socket } from 'node:net';
import { TLSSocket, type TLSSocketOptions } from 'node:tls';
import { Cmd, CmdFlag, NbdError, SIMPLE_REPLY_SIZE, STRUCTURED_HEADER_SIZE, ReplyFlag, ReplyType } from './constants.ts';
import { NbdHandshake, type HandshakeAction } from './handshake.ts';
import { maxPayloadOf, type NbdSession } from './export-info.ts';
import { NbdRequestParser, type NbdRequest, type NbdRequestHandler } from './transmission.ts';
import { validateRequest } from './validate.ts';
import { nbdErrorFromResult } from './errno.ts';
import { OFFSET_DATA_HEADER_SIZE, writeOffsetDataHeader, writeSimpleReply, writeStructuredHeader } from './replies.ts';
import { VolumeExports } from './volume-exports.ts';
import { Errno, Op, type OpCode } from '../storage/engine.ts';
import { assert } from '../util/assert.ts';
import { tuneDataSocket } from '../util/socket-options.ts';
import { stillServes, type ExportedVolume, type FrontEndContext } from '../dataplane/front-end.ts';
import type { DataPlane, Flushable } from '../dataplane/data-plane.ts';
import type { DpRequest, RequestOwner } from '../dataplane/request.ts';
import { Field } from '../dataplane/tenant-counters.ts';
import type { CloseReason } from '../dataplane/worker-stats.ts';

/** Above this many bytes of unsent replies, stop reading the client. */
/**
 * Reply bytes a connection may have coming (reads in flight, replies not yet
 * written, what the socket holds) before the server stops reading it; with
 * 32 MiB requests, counting requests alone would let one client that never
 * reads pin gigabytes.
 */
const REPLY_HIGH_WATER = 4 << 20;
/** After we decide to close, a client that will not take its last replies is cut off. */
const LINGER_MS = 5_000;
/** Structured ERROR chunk without message: header + u32 error + u16 message length. */
const ERROR_CHUNK_SIZE = STRUCTURED_HEADER_SIZE + 6;
/** BLOCK_STATUS chunk with one extent: header + u32 context id + (u32 length, u32 flags). */
const BLOCK_STATUS_ONE_SIZE = STRUCTURED_HEADER_SIZE + 12;

/** A reply that did not go through the engine: an error, CACHE, BLOCK_STATUS, zero-length I/O. */
interface Immediate {
  type: number;
  error: number;
  cookieHi: number;
  cookieLo: number;
  /** BLOCK_STATUS: the extent's length. */
  length: number;
  /** BLOCK_STATUS: the context id. */
  contextId: number;
}

// Built per connection: the control plane changes the worker's volumes at run
// time, and a table of a few exports costs nothing next to a handshake.
function exportsFor(ctx: FrontEndContext): VolumeExports {
  return new VolumeExports(ctx.volumes, ctx.plane.engine.blockSize, ctx.maxRequestBytes);
}

export class NbdConnection implements NbdRequestHandler, RequestOwner, Flushable {
  /** The stream replies go to and requests come from: the TCP socket, or its TLS wrapper after STARTTLS. */
  private socket: Socket;
  /** The TCP connection itself; its 'close' ends this connection whatever layer is on top. */
  private readonly plain: Socket;
  private readonly ctx: FrontEndContext;
  private plane: DataPlane;
  private readonly exports: VolumeExports;
  private handshake: NbdHandshake | null;
  private parser: NbdRequestParser | null = null;
  private session: NbdSession | null = null;
  private volume: ExportedVolume | null = null;
  private tenant = -1;
  private structured = false;

  /** Engine completions and immediate replies waiting for the next flush. */
  private done: DpRequest[] = [];
  private immediate: Immediate[] = [];
  private pendingBytes = 0;
  private outstanding = 0;
  /** Data buffers of requests in flight: read data to send, write payloads to store. */
  private dataBytes = 0;
  private readPaused = false;
  /** The client half-closed during transmission: serve what it sent, then close. */
  private peerEnded = false;
  private closed = false;
  /** No more requests are read; the socket ends once every reply is out. */
  private closing = false;
  /** Why the connection ended early (protocol error), for tests and logs. */
  closeReason: string | null = null;
  /** The counted kind of ending (the first cause wins). */
  private closeKind: CloseReason | null = null;

  private readonly onDataBound = (chunk: Buffer): void => this.onData(chunk);
  private readonly onDrainBound = (): void => this.afterProgress();
  private readonly onEndBound = (): void => {
    // Half-close from the client while transmitting: serve every request it
    // sent, including ones held behind backpressure (as a server that reads
    // requests one by one would have read them all before the EOF), then close.
    if (this.session !== null && !this.closing) {
      this.peerEnded = true;
      this.afterProgress();
      return;
    }
    this.beginClose(null);
  };
  private readonly onTimeoutBound = (): void => {
    this.closeKind ??= 'timeout';
    this.fail('negotiation timed out');
  };
  private readonly teardownBound = (): void => this.teardown();
  private readonly onErrorBound = (): void => {
    this.closeKind ??= 'error';
    this.teardown();
  };

  constructor(socket: Socket, ctx: FrontEndContext) {
    this.socket = socket;
    this.plain = socket;
    this.ctx = ctx;
    this.plane = ctx.plane;
    this.exports = exportsFor(ctx);
    const exports = this.exports;
    const tls = ctx.tls !== null;
    this.handshake = new NbdHandshake({
      exports: (name) => {
        const e = exports.lookup(name);
        return e !== undefined && this.mayServe(e.volume) ? e.info : undefined;
      },
      listExports: () => exports.list().filter((info) => this.mayServe(exports.lookup(info.name)!.volume)),
      // With a certificate, TLS works for everyone; without one, for clients with a tenant's pre-shared key.
      tlsAvailable: tls || ctx.credentials.size > 0,
      // With a certificate, nothing is served in plaintext.
      requireTls: tls,
    });
    tuneDataSocket(socket);
    socket.on('error', this.onErrorBound);
    socket.on('close', this.teardownBound);
    this.attach(socket);
    socket.write(this.handshake.greeting());
  }

  /**
   * The tenant whose credential this connection proved as its TLS pre-shared
   * key (PSK identity = tenant name), or null.
   */
  authTenant: number | null = null;

  /**
   * A volume whose tenant has a credential is listed and served only to a
   * connection that proved that credential (TLS-PSK); other volumes are open
   * to any client of the NBD port, as the port itself is opt-in. Hidden
   * volumes look like unknown exports, so a client learns nothing of them.
   */
  private mayServe(v: ExportedVolume): boolean {
    return !this.ctx.credentials.has(v.tenant) || this.authTenant === v.tenant;
  }

  /** TLS-PSK, server side: the key for a tenant name, or null to refuse the handshake. */
  private readonly pskBound = (_socket: TLSSocket, identity: string | null): Buffer | null => {
    const id = identity === null ? undefined : this.ctx.tenantByName.get(identity);
    const secret = id === undefined ? undefined : this.ctx.credentials.get(id);
    if (id === undefined || secret === undefined) return null;
    this.authTenant = id;
    return Buffer.from(secret, 'hex');
  };

  /** Makes `s` the stream this connection reads requests from and writes replies to. */
  private attach(s: Socket): void {
    this.socket = s;
    s.setTimeout(this.ctx.handshakeTimeoutMs, this.onTimeoutBound);
    s.on('data', this.onDataBound);
    s.on('drain', this.onDrainBound);
    s.on('end', this.onEndBound);
  }

  // ---- negotiation ---------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    if (this.parser !== null) {
      this.parser.feed(chunk);
      return;
    }
    const hs = this.handshake;
    if (hs === null) return; // negotiation failed; the socket is ending
    if (this.ctx.isDraining()) hs.shutdown();
    let actions: HandshakeAction[];
    try {
      actions = hs.feed(chunk);
    } catch (err) {
      // An invariant broke in negotiation (e.g. an export the spec forbids): fail this client only.
      this.fail(`negotiation error: ${(err as Error).message}`);
      return;
    }
    for (const a of actions) {
      switch (a.type) {
        case 'send':
          this.socket.write(a.data);
          break;
        case 'done':
          this.startTransmission(a.session, a.rest);
          break;
        case 'close':
          this.handshake = null;
          this.fail(a.reason);
          break;
        case 'starttls':
          this.startTls(hs, a.rest);
          break;
      }
    }
  }

  /**
   * The STARTTLS ACK is on its way in plaintext: from here the bytes on the
   * wire are TLS. Called synchronously in the 'data' handler that carried
   * the option, so no later plaintext chunk can reach the old listener.
   */
  private startTls(hs: NbdHandshake, rest: Buffer): void {
    const secureContext = this.ctx.tls ?? this.ctx.pskTls;
    if (rest.length > 0) {
      // The spec has the client wait for our ACK before its TLS handshake, so
      // bytes already here were sent blind. Passing them into the TLS layer
      // would let plaintext injected before the upgrade count as protected
      // (the classic STARTTLS injection flaw): refuse instead.
      this.fail('data after NBD_OPT_STARTTLS before the TLS handshake');
      return;
    }
    const plain = this.plain;
    plain.removeListener('data', this.onDataBound);
    plain.removeListener('drain', this.onDrainBound);
    plain.removeListener('end', this.onEndBound);
    // The TLS socket gets a fresh negotiation deadline; the plain one's would
    // never be refreshed again, as its handle's traffic now goes through TLS.
    plain.setTimeout(0);
    // Node's TLSSocket honours pskCallback (as tls.createServer does); its typings list it only for servers.
    const options: TLSSocketOptions & { pskCallback: (socket: TLSSocket, identity: string | null) => Buffer | null } = { isServer: true, secureContext, pskCallback: this.pskBound };
    const secure = new TLSSocket(plain, options);
    // A failed TLS handshake or a broken record ends the connection.
    secure.on('error', this.onErrorBound);
    secure.on('close', this.teardownBound);
    this.attach(secure);
    hs.tlsStarted();
  }

  private startTransmission(session: NbdSession, rest: Buffer): void {
    const e = this.exports.lookup(session.export.name);
    if (e === undefined) return this.fail(`export ${session.export.name} vanished`);
    // The export table was taken when the connection opened; the control
    // plane may have removed, moved or shrunk the volume since (and the
    // revocation pass only sees connections already in transmission).
    const now = this.ctx.volumes.get(e.volume.name);
    if (now === undefined || !stillServes(e.volume, now)) return this.fail(`export ${session.export.name} changed during negotiation`);
    if (!this.mayServe(now)) return this.fail(`export ${session.export.name} needs its tenant's credential`);
    this.handshake = null;
    this.session = session;
    this.structured = session.structuredReplies;
    this.volume = e.volume;
    this.tenant = e.volume.tenant;
    // Requests go to the device that holds this volume.
    this.plane = e.volume.plane;
    this.socket.setTimeout(0);
    this.plane.counters.add(this.tenant, Field.CONNECTIONS, 1);
    this.ctx.onAttach(this.tenant);
    this.parser = new NbdRequestParser(this, { maxPayload: maxPayloadOf(session) });
    if (rest.length > 0) this.parser.feed(rest);
  }

  // ---- requests ------------------------------------------------------------

  onRequest(r: NbdRequest): void {
    if (this.closing || this.closed) return;
    const session = this.session!;
    if (r.type === Cmd.DISC) {
      // Replies in flight are still sent; nothing after DISC is read.
      this.beginClose(null);
      return;
    }
    if (this.ctx.isDraining()) return this.replyError(r, NbdError.ESHUTDOWN);
    const err = validateRequest(r, session);
    if (err !== NbdError.OK) return this.replyError(r, err);
    switch (r.type) {
      case Cmd.READ:
        return r.length === 0 ? this.replyNow(r, 0) : this.issue(r, Op.READ);
      case Cmd.WRITE:
        return r.length === 0 ? this.replyNow(r, 0) : this.issue(r, Op.WRITE);
      case Cmd.FLUSH:
        return this.issue(r, Op.FLUSH);
      case Cmd.TRIM:
        return r.length === 0 ? this.replyNow(r, 0) : this.issue(r, Op.TRIM);
      case Cmd.WRITE_ZEROES:
        return r.length === 0 ? this.replyNow(r, 0) : this.issue(r, Op.WRITE_ZEROES);
      case Cmd.CACHE:
        return this.replyNow(r, 0);
      case Cmd.BLOCK_STATUS:
        // Every byte of a volume is backed by the device and reads what was
        // last written: one extent, flags 0 (allocated data), is the truth.
        return this.pushImmediate(Cmd.BLOCK_STATUS, 0, r.cookieHi, r.cookieLo, r.length, session.metaContexts[0].id);
      default:
        // validateRequest refuses every other command.
        return this.replyError(r, NbdError.EINVAL);
    }
  }

  onReject(r: NbdRequest, error: number): void {
    if (this.closing || this.closed) return;
    this.replyError(r, error);
  }

  onFatal(reason: string): void {
    this.beginClose(reason);
  }

  private issue(r: NbdRequest, op: OpCode): void {
    const plane = this.plane;
    const req = plane.requests.get();
    req.op = op;
    req.offset = this.volume!.offset + r.offset;
    req.length = op === Op.FLUSH ? 0 : r.length;
    // FUA means something only on commands that write; on a FLUSH it is implied.
    req.fua = (r.flags & CmdFlag.FUA) !== 0 && op !== Op.READ;
    req.result = 0;
    req.owner = this;
    req.wireOp = r.type;
    req.handleLo = r.cookieLo;
    req.handleHi = r.cookieHi;
    req.lbaLo = 0;
    req.lbaHi = 0;
    req.count = 0;
    req.tenant = this.tenant;
    req.startMs = performance.now();
    if (op === Op.READ) {
      req.buf = plane.buffers.get(r.length);
    } else if (op === Op.WRITE) {
      // Pool memory, not the socket chunk: engines need their own (aligned) buffers.
      const buf = plane.buffers.get(r.length);
      r.data!.copy(buf, 0, 0, r.length);
      req.buf = buf;
    } else {
      req.buf = null;
    }
    this.outstanding++;
    if (op === Op.READ || op === Op.WRITE) this.dataBytes += req.length;
    plane.submit(req);
    if (this.outstanding >= this.ctx.maxOutstanding || this.replyBytes() > REPLY_HIGH_WATER) this.pauseReading();
  }

  // ---- replies -------------------------------------------------------------

  complete(req: DpRequest): void {
    this.outstanding--;
    if (req.op === Op.READ || req.op === Op.WRITE) this.dataBytes -= req.length;
    if (this.closed) {
      this.plane.release(req);
      return;
    }
    const counters = this.plane.counters;
    const t = req.tenant;
    // NBD's TRIM is advisory ("the server MAY ignore it"): a device that cannot
    // discard has done what was asked, and a kernel client would log EIO.
    if (req.op === Op.TRIM && req.result === Errno.EOPNOTSUPP) req.result = 0;
    if (req.result < 0) {
      counters.add(t, Field.ERRORS, 1);
      this.pendingBytes += this.structured ? ERROR_CHUNK_SIZE : SIMPLE_REPLY_SIZE;
    } else {
      counters.add(t, Field.LATENCY_SUM_US, (performance.now() - req.startMs) * 1000);
      if (req.op === Op.READ) {
        counters.add(t, Field.READ_OPS, 1);
        counters.add(t, Field.READ_BYTES, req.length);
        this.pendingBytes += (this.structured ? OFFSET_DATA_HEADER_SIZE : SIMPLE_REPLY_SIZE) + req.length;
      } else {
        if (req.op === Op.WRITE) {
          counters.add(t, Field.WRITE_OPS, 1);
          counters.add(t, Field.WRITE_BYTES, req.length);
        } else {
          counters.add(t, Field.OTHER_OPS, 1);
        }
        this.pendingBytes += SIMPLE_REPLY_SIZE;
      }
    }
    if (this.done.length === 0 && this.immediate.length === 0) this.plane.markDirty(this);
    this.done.push(req);
  }

  private replyError(r: NbdRequest, error: number): void {
    if (this.tenant >= 0) this.plane.counters.add(this.tenant, Field.ERRORS, 1);
    this.pushImmediate(r.type, error, r.cookieHi, r.cookieLo, 0, 0);
  }

  /** Success without touching the engine (zero-length I/O, CACHE). */
  private replyNow(r: NbdRequest, error: number): void {
    this.pushImmediate(r.type, error, r.cookieHi, r.cookieLo, 0, 0);
  }

  private pushImmediate(type: number, error: number, cookieHi: number, cookieLo: number, length: number, contextId: number): void {
    if (this.closed) return;
    if (this.done.length === 0 && this.immediate.length === 0) this.plane.markDirty(this);
    this.immediate.push({ type, error, cookieHi, cookieLo, length, contextId });
    this.pendingBytes += this.immediateSize(type, error);
  }

  private immediateSize(type: number, error: number): number {
    if (!this.structured) return SIMPLE_REPLY_SIZE;
    if (error !== 0) return ERROR_CHUNK_SIZE;
    if (type === Cmd.BLOCK_STATUS) return BLOCK_STATUS_ONE_SIZE;
    // A zero-length READ ends with a NONE chunk: OFFSET_DATA may not be empty.
    if (type === Cmd.READ) return STRUCTURED_HEADER_SIZE;
    return SIMPLE_REPLY_SIZE;
  }

  /** Writes every waiting reply with one socket write. */
  flush(): void {
    if (this.closed) return;
    const done = this.done;
    const imm = this.immediate;
    if (done.length === 0 && imm.length === 0) return;
    this.done = [];
    this.immediate = [];
    const total = this.pendingBytes;
    this.pendingBytes = 0;
    const plane = this.plane;
    const useScratch = total <= plane.scratch.length;
    const out = useScratch ? plane.scratch : Buffer.allocUnsafe(total);
    const volOffset = this.volume!.offset;
    let at = 0;
    for (let i = 0; i < done.length; i++) {
      const req = done[i];
      if (req.result < 0) {
        at = this.writeError(out, at, nbdErrorFromResult(req.result), req.handleHi, req.handleLo);
      } else if (req.op === Op.READ) {
        if (this.structured) {
          at = writeOffsetDataHeader(out, at, req.handleHi, req.handleLo, req.offset - volOffset, req.length, true);
        } else {
          at = writeSimpleReply(out, at, 0, req.handleHi, req.handleLo);
        }
        at += req.buf!.copy(out, at, 0, req.length);
      } else {
        at = writeSimpleReply(out, at, 0, req.handleHi, req.handleLo);
      }
      plane.release(req);
    }
    for (let i = 0; i < imm.length; i++) {
      const m = imm[i];
      if (m.error !== 0) {
        at = this.writeError(out, at, m.error, m.cookieHi, m.cookieLo);
      } else if (this.structured && m.type === Cmd.BLOCK_STATUS) {
        at = writeStructuredHeader(out, at, ReplyFlag.DONE, ReplyType.BLOCK_STATUS, m.cookieHi, m.cookieLo, 12);
        out.writeUInt32BE(m.contextId, at);
        out.writeUInt32BE(m.length, at + 4);
        out.writeUInt32BE(0, at + 8);
        at += 12;
      } else if (this.structured && m.type === Cmd.READ) {
        at = writeStructuredHeader(out, at, ReplyFlag.DONE, ReplyType.NONE, m.cookieHi, m.cookieLo, 0);
      } else {
        at = writeSimpleReply(out, at, 0, m.cookieHi, m.cookieLo);
      }
    }
    assert(at === total, 'NBD reply bytes differ from what was counted');
    const before = this.socket.writableLength;
    this.socket.write(useScratch ? out.subarray(0, total) : out);
    // Not written through at once: the socket still refers to the scratch memory.
    if (useScratch && this.socket.writableLength !== before) plane.scratchTaken();
    this.afterProgress();
  }

  private writeError(out: Buffer, at: number, error: number, cookieHi: number, cookieLo: number): number {
    if (!this.structured) return writeSimpleReply(out, at, error, cookieHi, cookieLo);
    const p = writeStructuredHeader(out, at, ReplyFlag.DONE, ReplyType.ERROR, cookieHi, cookieLo, 6);
    out.writeUInt32BE(error, p);
    out.writeUInt16BE(0, p + 4);
    return p + 6;
  }

  // ---- flow control and teardown --------------------------------------------

  private afterProgress(): void {
    if (this.closing) {
      this.maybeEnd();
      return;
    }
    // Unpaused after a half-close, the parser holds no complete request.
    if (this.peerEnded && !this.readPaused) {
      this.beginClose(null);
      return;
    }
    this.maybeResume();
  }

  /** Reply bytes this connection has coming or unsent. */
  private replyBytes(): number {
    return this.dataBytes + this.pendingBytes + this.socket.writableLength;
  }

  private pauseReading(): void {
    this.parser?.pause();
    if (!this.readPaused) {
      this.readPaused = true;
      this.socket.pause();
    }
  }

  private maybeResume(): void {
    if (this.closed || this.closing) return;
    const bytes = this.replyBytes();
    if (bytes > REPLY_HIGH_WATER) {
      this.pauseReading();
      return;
    }
    if (!this.readPaused) return;
    if (this.outstanding > this.ctx.maxOutstanding / 2 || bytes > REPLY_HIGH_WATER / 2) return;
    this.readPaused = false;
    // Held input first: it may fill the window again and pause once more.
    this.parser?.resume();
    if (!this.readPaused) {
      this.socket.resume();
      // Half-closed and now unpaused: close once the rest is answered.
      if (this.peerEnded) this.afterProgress();
    }
  }

  /** Stop reading; end the socket once every reply is written. `reason` marks a protocol error. */
  private beginClose(reason: string | null): void {
    if (this.closed) return;
    if (reason !== null && this.closeReason === null) this.closeReason = reason;
    this.closeKind ??= reason === null ? 'peer' : 'protocol';
    if (!this.closing) {
      this.closing = true;
      this.parser?.pause();
      this.socket.pause();
      // A client that never reads its last replies must not hold us forever.
      setTimeout(() => this.socket.destroy(), LINGER_MS).unref();
    }
    this.maybeEnd();
  }

  private maybeEnd(): void {
    if (this.closed) return;
    if (this.outstanding === 0 && this.done.length === 0 && this.immediate.length === 0) this.socket.end();
  }

  /** Negotiation failed: whatever was queued for the client is written, then the socket ends. */
  private fail(reason: string): void {
    this.handshake = null;
    this.beginClose(reason);
  }

  /** The volume this connection serves (null before transmission). */
  get live(): boolean {
    return !this.closed;
  }

  /** Requests accepted and not yet completed (queued, or at the device), even after the connection closed. */
  get inFlight(): number {
    return this.outstanding;
  }

  get boundVolume(): ExportedVolume | null {
    return this.closed ? null : this.volume;
  }

  /**
   * The control plane took this connection's volume away, moved it or shrank
   * it: no further request may reach the old range, so the connection is cut
   * at once (as a native connection is), in-flight replies and all.
   */
  revoke(): void {
    if (this.closeReason === null) this.closeReason = 'volume revoked by the control plane';
    this.closeKind ??= 'revoked';
    this.teardown();
  }

  private teardown(): void {
    if (this.closed) return;
    this.closed = true;
    this.closing = true;
    for (const req of this.done) this.plane.release(req);
    this.done = [];
    this.immediate = [];
    this.pendingBytes = 0;
    if (this.tenant >= 0) this.plane.counters.add(this.tenant, Field.CONNECTIONS, -1);
    // In-flight requests still complete; `complete` releases them once closed.
    this.socket.destroy();
    if (this.plain !== this.socket) this.plain.destroy();
    this.ctx.onClose(this.closeKind ?? 'peer');
  }
}
