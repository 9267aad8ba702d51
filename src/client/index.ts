/**
 * Promise API of the ReFlex client.
 *
 *   const c = await connect({ host, port });
 *   await c.write(0, data);
 *   const back = await c.read(0, data.length);
 *   await c.close();
 *
 * Offsets and lengths are bytes and must be multiples of the sector size
 * (from HELLO, or `sectorSize` for v1 servers). Requests may complete in any
 * order, as the protocol allows; the client does not order requests that are
 * outstanding at the same time. Failures reject with a `ReflexError` whose
 * `code` is stable ('ERANGE', 'EINVAL', 'EIO', 'ETIMEDOUT', 'ECONNRESET', ...);
 * misuse (misaligned offset, oversized request) rejects with a RangeError
 * before anything is sent.
 *
 * The layers below are exported for callers that need speed over
 * convenience: `Pool` and `ClientConnection` take a `ResponseSink` and a
 * numeric tag instead of returning promises.
 */
import { decodeHelloInfo, FLAG_FUA, type HelloInfo } from '../protocol/reflex-codec.ts';
import { Cmd, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_SECTOR_SIZE, HelloFlag, Notice, Status } from '../protocol/reflex-constants.ts';
import { errorFromStatus, LocalStatus, STATUS_OK } from './errors.ts';
import { EventEmitter } from 'node:events';
import { ClientConnection, type ConnectionOptions } from './connection.ts';
import { Pool } from './pool.ts';
import { isRetriable, permanent, Reconnector, resolveReconnectOptions, type ReconnectOptions, type Resendable } from './reconnect.ts';
import { assert } from '../util/assert.ts';

export { ClientConnection, type ConnectionOptions, type ResponseSink } from './connection.ts';
export type { ReconnectOptions } from './reconnect.ts';
export { Pool } from './pool.ts';
export * from './errors.ts';
export type { HelloInfo } from '../protocol/reflex-codec.ts';
import { encodeAttach } from '../protocol/attach.ts';

export interface ConnectOptions {
  host?: string;
  port: number;
  /** Connections to open; requests go to the least busy. Default 1. */
  connections?: number;
  /** Per-request timeout in ms; 0 disables. Default 30000. */
  timeoutMs?: number;
  /** Connect timeout in ms; with `reconnect`, also the bound on each attempt's handshake. Default 10000. */
  connectTimeoutMs?: number;
  /** Sector size for servers that do not answer HELLO (v1). Default 512. */
  sectorSize?: number;
  /** Ask the server for its parameters on connect. Default true. */
  hello?: boolean;
  /** TLS options (tls.connect), for a server started with --tls-cert. */
  tls?: import('node:tls').ConnectionOptions;
  /** Authenticate every connection as this tenant on this volume (HELLO + ATTACH). */
  attach?: AttachCredentials;
  /**
   * Reopen connections the server closes (a restart, a network blip) and
   * send their outstanding requests again; see reconnect.ts. Default off:
   * outstanding requests fail with ECONNRESET.
   */
  reconnect?: boolean | ReconnectOptions;
}

export interface AttachCredentials {
  tenant: string;
  volume: string;
  /** The tenant's secret (hex), from the admin API. It never crosses the wire. */
  secret: string;
}

export interface WriteOptions {
  /** Force unit access: durable before acknowledged. */
  fua?: boolean;
}

/**
 * One request's promise, as a ResponseSink (one small object per request).
 * It keeps what it sent, so a reconnecting client can send it again.
 */
class PendingRequest implements Resendable {
  resolve!: (value: Buffer | null) => void;
  reject!: (err: Error) => void;
  readonly what: string;
  readonly keepPayload: boolean;
  readonly promise: Promise<Buffer | null>;
  opcode = 0;
  lba = 0;
  count = 0;
  data: Buffer | null = null;
  dataLen = 0;
  deadline = Infinity;
  /** Set by a reconnecting client: takes a request lost with its connection. */
  retry: Reconnector | null = null;
  /** Resolved or rejected: a late answer (after a timeout) must not act again. */
  settled = false;

  constructor(what: string, keepPayload: boolean) {
    this.what = what;
    this.keepPayload = keepPayload;
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  onResponse(_tag: number, status: number, payload: Buffer | null): void {
    if (this.settled) return;
    if (status !== STATUS_OK) {
      if (this.retry !== null && isRetriable(status, this.opcode) && this.retry.requeue(this)) return;
      this.fail(status);
      return;
    }
    this.settled = true;
    // The payload is a view into a receive buffer that will be reused: copy it.
    this.resolve(this.keepPayload && payload !== null ? Buffer.from(payload) : null);
  }

  fail(err: Error | number): void {
    if (this.settled) return;
    this.settled = true;
    this.reject(typeof err === 'number' ? errorFromStatus(err, this.what) : err);
  }
}

/**
 * Events:
 *   'resize'     { size, previous }       the volume's size in bytes changed
 *                                         (a server notice, or learnt on reconnect)
 * and, for a client opened with `reconnect`:
 *   'disconnect' { connection, error }   a connection closed unasked
 *   'reconnect'  { connection, attempts } it is open again, handshake done
 *   'giveup'     error                    reconnecting stopped for good
 */
export class ReflexClient extends EventEmitter {
  readonly pool: Pool;
  /** What HELLO reported; null for a v1 server or when hello was off. */
  info: HelloInfo | null = null;
  sectorSize: number;
  maxRequestBytes = DEFAULT_MAX_REQUEST_BYTES;
  private timeoutMs = 30_000;
  private reconnector: Reconnector | null = null;

  constructor(pool: Pool, sectorSize: number) {
    super();
    this.pool = pool;
    this.sectorSize = sectorSize;
  }

  /** The volume's size in bytes as last learnt (HELLO, a resize notice, a reconnect); null without HELLO. */
  get size(): number | null {
    return this.info?.volumeSize ?? null;
  }

  /** A notice from the server (see Notice in reflex-constants.ts). */
  handleNotice(notice: number, lba: number): void {
    if (notice === Notice.RESIZED) this.resized(lba * this.sectorSize);
  }

  private resized(size: number): void {
    const info = this.info;
    if (info === null || info.volumeSize === size) return;
    this.info = { ...info, volumeSize: size };
    this.emit('resize', { size, previous: info.volumeSize });
  }

  /**
   * Asks the server for its parameters. Resolves to null when the server
   * answers EINVAL (a v1 server that does not know HELLO). Must not run with
   * other requests outstanding: the sector size it learns changes framing.
   */
  async hello(): Promise<HelloInfo | null> {
    const conn = this.pool.connections[0];
    const info = await helloOn(conn);
    if (info !== null) this.learn(withNotices(info, [conn]));
    return info;
  }

  read(offset: number, length: number): Promise<Buffer> {
    const bad = this.check('read', offset, length, true);
    if (bad !== null) return Promise.reject(bad);
    const p = new PendingRequest(`read ${length}@${offset}`, true);
    return this.issue(p, Cmd.GET, offset / this.sectorSize, length / this.sectorSize, null) as Promise<Buffer>;
  }

  /** `data` must not be modified until the promise settles. */
  async write(offset: number, data: Buffer, opts: WriteOptions = {}): Promise<void> {
    const bad = this.check('write', offset, data.length, true);
    if (bad !== null) throw bad;
    const p = new PendingRequest(`write ${data.length}@${offset}`, false);
    await this.issue(p, Cmd.SET | (opts.fua ? FLAG_FUA : 0), offset / this.sectorSize, data.length / this.sectorSize, data);
  }

  /**
   * Fire and forget (SET_NO_ACK): the server sends no reply, so no error is
   * ever reported (and a reconnecting client cannot send it again). Throws
   * RangeError on misuse. The data is copied.
   */
  writeNoAck(offset: number, data: Buffer): void {
    const bad = this.check('writeNoAck', offset, data.length, true);
    if (bad !== null) throw bad;
    this.pool.send(Cmd.SET_NO_ACK, offset / this.sectorSize, data.length / this.sectorSize, Buffer.from(data), data.length, null, 0);
  }

  /** Makes every acknowledged write durable. */
  async flush(): Promise<void> {
    await this.issue(new PendingRequest('flush', false), Cmd.FLUSH, 0, 0, null);
  }

  async trim(offset: number, length: number): Promise<void> {
    await this.rangeOp(Cmd.TRIM, 'trim', offset, length);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    await this.rangeOp(Cmd.WRITE_ZEROES, 'writeZeroes', offset, length);
  }

  private async rangeOp(cmd: number, what: string, offset: number, length: number): Promise<void> {
    const bad = this.check(what, offset, length, false);
    if (bad !== null) throw bad;
    const p = new PendingRequest(`${what} ${length}@${offset}`, false);
    await this.issue(p, cmd, offset / this.sectorSize, length / this.sectorSize, null);
  }

  /** Records what `p` sends (so it can be sent again) and sends it. */
  private issue(p: PendingRequest, opcode: number, lba: number, count: number, data: Buffer | null): Promise<Buffer | null> {
    p.opcode = opcode;
    p.lba = lba;
    p.count = count;
    p.data = data;
    p.dataLen = data === null ? 0 : data.length;
    if (this.reconnector !== null) {
      p.retry = this.reconnector;
      if (this.timeoutMs > 0) p.deadline = performance.now() + this.timeoutMs;
    }
    this.pool.send(opcode, lba, count, data, p.dataLen, p, 0);
    return p.promise;
  }

  /** The RangeError for a request that cannot be sent, or null. */
  private check(what: string, offset: number, length: number, limited: boolean): RangeError | null {
    const s = this.sectorSize;
    if (!Number.isSafeInteger(offset) || offset < 0) return new RangeError(`${what}: offset ${offset} is not a non-negative integer`);
    if (!Number.isSafeInteger(length) || length <= 0) return new RangeError(`${what}: length ${length} must be a positive integer`);
    if (offset % s !== 0) return new RangeError(`${what}: offset ${offset} is not a multiple of the sector size ${s}`);
    if (length % s !== 0) return new RangeError(`${what}: length ${length} is not a multiple of the sector size ${s}`);
    if (limited && length > this.maxRequestBytes) return new RangeError(`${what}: length ${length} exceeds the server's maximum request of ${this.maxRequestBytes} bytes`);
    if (length / s > 0xffff_ffff) return new RangeError(`${what}: length ${length} is more sectors than one request can name`);
    return null;
  }

  /** Waits for outstanding replies (up to a grace period), then closes every connection. */
  close(): Promise<void> {
    this.reconnector?.stop();
    return this.pool.close();
  }

  /**
   * Proves on every connection that this client holds the tenant's secret:
   * HELLO gives a fresh server nonce, ATTACH answers it with an HMAC.
   * Resolves to the volume's parameters; rejects with EPERM when refused.
   */
  async attach(creds: AttachCredentials): Promise<HelloInfo> {
    let info: HelloInfo | null = null;
    for (const conn of this.pool.connections) info = await attachOn(conn, creds);
    this.learn(withNotices(info!, this.pool.connections));
    return info!;
  }

  /** Closes at once; outstanding requests fail with ECONNRESET. */
  destroy(): void {
    this.reconnector?.stop();
    this.pool.destroy();
  }

  /** Why reconnecting stopped for good (EPERM, a changed sector size), or null. */
  get reconnectGaveUp(): Error | null {
    return this.reconnector?.gaveUp ?? null;
  }

  /** Turns on reconnection (see reconnect.ts); `connect` calls it after the first handshake. */
  enableReconnect(connOpts: ConnectionOptions, attach: AttachCredentials | null, hello: boolean, opts: ReconnectOptions): void {
    assert(this.reconnector === null, 'reconnect enabled twice');
    this.timeoutMs = connOpts.timeoutMs ?? 30_000;
    const handshake = async (conn: ClientConnection): Promise<void> => {
      const answered = attach !== null ? await attachOn(conn, attach) : hello ? await helloOn(conn) : null;
      const info = answered === null ? null : withNotices(answered, [conn]);
      const size = info?.sectorSize ?? this.sectorSize;
      // Requests waiting to be sent again were framed in the old sector size.
      if (size !== this.sectorSize) {
        throw permanent(errorFromStatus(LocalStatus.PROTOCOL, `reconnect: the server's sector size is now ${size}, was ${this.sectorSize}`));
      }
      if (conn.sectorSize !== size) conn.setSectorSize(size);
      // A grown (or shrunk) volume: the new size is what a reconnect learns.
      if (info !== null) {
        const previous = this.info;
        this.info = previous === null ? info : { ...info, volumeSize: previous.volumeSize };
        this.maxRequestBytes = info.maxRequestBytes;
        this.resized(info.volumeSize);
      }
    };
    this.reconnector = new Reconnector(this.pool, connOpts, handshake, this, opts);
  }

  private learn(info: HelloInfo): void {
    this.info = info;
    if (info.sectorSize !== this.sectorSize) {
      this.sectorSize = info.sectorSize;
      this.pool.setSectorSize(info.sectorSize);
    }
    this.maxRequestBytes = info.maxRequestBytes;
  }
}

/** `info` with the size of a RESIZED notice that came after its HELLO on one of `conns` (it is newer). */
function withNotices(info: HelloInfo, conns: readonly ClientConnection[]): HelloInfo {
  let sectors: number | null = null;
  for (const c of conns) sectors = c.noticedSectors ?? sectors;
  return sectors === null ? info : { ...info, volumeSize: sectors * info.sectorSize };
}

/** HELLO on one connection; null when the server answers EINVAL (a v1 server). */
async function helloOn(conn: ClientConnection): Promise<HelloInfo | null> {
  conn.noticedSectors = null;
  const p = new PendingRequest('HELLO', true);
  conn.send(Cmd.HELLO, HelloFlag.NOTICES, 0, null, 0, p, 0);
  let payload: Buffer | null;
  try {
    payload = await p.promise;
  } catch (err) {
    if ((err as { status?: number }).status === Status.EINVAL) return null;
    throw err;
  }
  if (payload === null) throw errorFromStatus(LocalStatus.PROTOCOL, 'HELLO');
  return decodeHelloInfo(payload);
}

/** HELLO (for the nonce) then ATTACH on one connection; rejects with EPERM when refused. */
async function attachOn(conn: ClientConnection, creds: AttachCredentials): Promise<HelloInfo> {
  conn.noticedSectors = null;
  const hello = new PendingRequest('HELLO', true);
  conn.send(Cmd.HELLO, HelloFlag.NOTICES, 0, null, 0, hello, 0);
  const h = await hello.promise;
  const nonce = h === null ? undefined : decodeHelloInfo(h).nonce;
  if (nonce === undefined) throw errorFromStatus(LocalStatus.PROTOCOL, 'HELLO without a nonce: the server does not offer ATTACH');
  const payload = encodeAttach(creds.secret, nonce, creds.tenant, creds.volume);
  const att = new PendingRequest('ATTACH', true);
  conn.send(Cmd.ATTACH, 0, payload.length, payload, payload.length, att, 0);
  const a = await att.promise;
  if (a === null) throw errorFromStatus(LocalStatus.PROTOCOL, 'ATTACH');
  return decodeHelloInfo(a);
}

export async function connect(opts: ConnectOptions): Promise<ReflexClient> {
  const sectorSize = opts.sectorSize ?? DEFAULT_SECTOR_SIZE;
  if (!Number.isInteger(sectorSize) || sectorSize <= 0) throw new RangeError(`sectorSize: ${sectorSize} must be a positive integer`);
  // Checked before any socket opens, so a bad option leaves nothing behind.
  const reconnect = opts.reconnect ? resolveReconnectOptions(opts.reconnect === true ? {} : opts.reconnect) : null;
  // Notices reach the client through its connections, including ones a reconnect opens later.
  let client: ReflexClient | null = null;
  const connOpts: ConnectionOptions = {
    onNotice: (notice, lba) => client?.handleNotice(notice, lba),
    host: opts.host,
    port: opts.port,
    timeoutMs: opts.timeoutMs,
    connectTimeoutMs: opts.connectTimeoutMs,
    sectorSize,
    tls: opts.tls,
    // Reconnecting, a timeout means a dead connection: replace it.
    closeOnTimeout: opts.reconnect ? true : undefined,
  };
  const pool = await Pool.open(opts.connections ?? 1, connOpts);
  client = new ReflexClient(pool, sectorSize);
  const hello = opts.hello ?? true;
  if (hello) {
    try {
      if (opts.attach) await client.attach(opts.attach);
      else await client.hello();
    } catch (err) {
      pool.destroy();
      throw err;
    }
  }
  if (reconnect !== null) client.enableReconnect(connOpts, hello ? (opts.attach ?? null) : null, hello, reconnect);
  return client;
}
