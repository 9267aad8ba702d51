/**
 * Reconnection for the promise API (`connect({ reconnect: true })`): what a
 * block-device client does when its server restarts. The Linux nbd driver
 * requeues the requests it had in flight on a dead connection and sends them
 * again on a new one; this does the same.
 *
 * - A connection that closes without the caller asking is reopened, with
 *   the same handshake (HELLO, or HELLO + ATTACH), after a wait that doubles
 *   from `initialDelayMs` up to `maxDelayMs` while the server is away.
 * - Requests that were outstanding on it, or that the server refused with
 *   ESHUTDOWN because it was draining, are sent again: on another open
 *   connection at once, otherwise when one is back. Re-sending is safe for a
 *   block device: a read has no effect, and a write that may already have
 *   landed lands again with the same bytes (the caller has not seen it
 *   complete, so it has nothing overlapping it in flight that it ordered
 *   after it). A FLUSH sent again makes durable what the new server holds;
 *   like the Linux nbd driver, it cannot know whether a server that lost
 *   power also lost writes it had acknowledged before the flush.
 * - A connection whose server answered ESHUTDOWN gets no new requests;
 *   the refused ones wait for a connection that takes them (another one,
 *   or the reconnected one once the draining server has gone).
 * - A request that times out after its whole timeout on a connection
 *   closes that connection, presumed dead (a hung server, or a path gone
 *   without a FIN), as the nbd driver does. The reads and flushes on it are
 *   sent again on the new connection; its writes fail with ECONNABORTED,
 *   since a server that is only slow may still carry them out later, over
 *   a newer write of the same blocks.
 * - Each request keeps its own deadline (the client's `timeoutMs`, from its
 *   first send), across re-sends: past it, it fails with ETIMEDOUT, and the
 *   client keeps trying to reconnect.
 * - Each attempt (connect and handshake) is bounded by `connectTimeoutMs`
 *   (default 10 s), so a server that accepts and never answers does not
 *   stall reconnecting.
 * - A refusal that another attempt cannot change ends the reconnection:
 *   ATTACH refused (EPERM: the credential or the volume is gone), or a
 *   server whose sector size is no longer the one requests were framed
 *   with. Waiting and later requests then fail with that error.
 * - Waiting keeps the process alive only while some request waits; an idle
 *   client whose server is gone does not hold Node open.
 *
 * Not re-sent: SET_NO_ACK (no reply, so no way to know it was lost).
 */
import type { EventEmitter } from 'node:events';
import { OPCODE_MASK } from '../protocol/reflex-codec.ts';
import { Cmd, Status } from '../protocol/reflex-constants.ts';
import { ClientConnection, type ConnectionOptions, type ResponseSink } from './connection.ts';
import { LocalStatus, ReflexError } from './errors.ts';
import type { Pool } from './pool.ts';

export interface ReconnectOptions {
  /** Wait before the first attempt, ms. Default 50. */
  initialDelayMs?: number;
  /** Longest wait between attempts, ms; the wait doubles up to it. Default 2000. */
  maxDelayMs?: number;
}

/** The options with their defaults; a RangeError for values that make no sense. */
export function resolveReconnectOptions(opts: ReconnectOptions): Required<ReconnectOptions> {
  const initialDelayMs = opts.initialDelayMs ?? 50;
  const maxDelayMs = opts.maxDelayMs ?? 2000;
  if (!Number.isFinite(initialDelayMs) || !Number.isFinite(maxDelayMs) || initialDelayMs < 1 || maxDelayMs < initialDelayMs) {
    throw new RangeError(`reconnect: need 1 <= initialDelayMs (${initialDelayMs}) <= maxDelayMs (${maxDelayMs}), both finite`);
  }
  return { initialDelayMs, maxDelayMs };
}

/** A request that can be sent again: everything `Pool.send` needs, plus its deadline. */
export interface Resendable extends ResponseSink {
  readonly opcode: number;
  readonly lba: number;
  readonly count: number;
  readonly data: Buffer | null;
  readonly dataLen: number;
  /** performance.now() after which it fails instead of waiting (Infinity: never). */
  readonly deadline: number;
  fail(err: Error | number): void;
}

/**
 * Whether a request that ended with `status` may be sent again: it was not
 * carried out (ESHUTDOWN), or its server went away (CLOSED). After the client
 * abandoned a connection whose server may be alive (ABANDONED), only reads
 * and flushes are: a write could still land later and overwrite what the
 * caller writes next, so it fails with ECONNABORTED instead.
 */
export function isRetriable(status: number, opcode: number): boolean {
  if (status === LocalStatus.CLOSED || status === Status.ESHUTDOWN) return true;
  if (status !== LocalStatus.ABANDONED) return false;
  const op = opcode & OPCODE_MASK;
  return op === Cmd.GET || op === Cmd.FLUSH;
}

const permanentErrors = new WeakSet<Error>();

/** Marks a handshake failure as one no new connection can fix; returns it. */
export function permanent<E extends Error>(err: E): E {
  permanentErrors.add(err);
  return err;
}

/** The error is one no new connection can fix: ATTACH refused, or marked by the handshake. */
function isPermanent(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return permanentErrors.has(err) || (err instanceof ReflexError && (err.code === 'EPERM' || err.code === 'ENOTSUP'));
}

/** Sweep period for waiting requests' deadlines, ms. */
const SWEEP_MS = 50;

export class Reconnector {
  private readonly waiting: Resendable[] = [];
  private stopped = false;
  private fatal: Error | null = null;
  private repairing = false;
  private timer: NodeJS.Timeout | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  /** The connection an attempt is opening, not yet in the pool. */
  private opening: ClientConnection | null = null;
  private readonly attemptTimeoutMs: number;
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly pool: Pool;
  private readonly connOpts: ConnectionOptions;
  /** Makes a fresh connection ready for requests (HELLO / ATTACH, sector size); throws to refuse it. */
  private readonly handshake: (conn: ClientConnection) => Promise<void>;
  private readonly events: EventEmitter;

  constructor(pool: Pool, connOpts: ConnectionOptions, handshake: (conn: ClientConnection) => Promise<void>, events: EventEmitter, opts: ReconnectOptions) {
    this.pool = pool;
    this.connOpts = connOpts;
    this.handshake = handshake;
    this.events = events;
    ({ initialDelayMs: this.initialDelayMs, maxDelayMs: this.maxDelayMs } = resolveReconnectOptions(opts));
    this.attemptTimeoutMs = connOpts.connectTimeoutMs ?? 10_000;
    for (let i = 0; i < pool.connections.length; i++) this.watch(i);
    // One may have closed before anyone watched it.
    if (pool.connections.some((c) => c.closed)) void this.repair();
  }

  /** Why reconnecting ended for good, or null. */
  get gaveUp(): Error | null {
    return this.fatal;
  }

  /** Requests waiting for a connection. */
  get waitingCount(): number {
    return this.waiting.length;
  }

  /**
   * Takes a request that failed with a retriable status; false when it
   * should fail as it is (the client is closing, or its deadline passed).
   */
  requeue(p: Resendable): boolean {
    if (this.stopped) return false;
    if (this.fatal !== null) {
      p.fail(this.fatal);
      return true;
    }
    if (p.deadline <= performance.now()) {
      p.fail(LocalStatus.TIMEOUT);
      return true;
    }
    this.waiting.push(p);
    // Keep Node alive while a caller waits on a request.
    this.timer?.ref();
    if (this.sweepTimer === null) this.sweepTimer = setInterval(() => this.sweep(), SWEEP_MS);
    // A later tick: the connection that failed it may be completing others right now.
    if (this.pool.usable) queueMicrotask(() => this.drain());
    return true;
  }

  /** No more reconnecting; waiting requests fail with ECONNRESET. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.opening?.destroy();
    this.opening = null;
    this.failWaiting(LocalStatus.CLOSED);
  }

  private watch(i: number): void {
    const conn = this.pool.connections[i];
    conn.socket.once('close', () => {
      if (this.stopped || this.pool.connections[i] !== conn) return;
      this.events.emit('disconnect', { connection: i, error: conn.lastError });
      void this.repair();
    });
  }

  /** Reopens every closed connection, retrying with backoff until all are open or it must stop. */
  private async repair(): Promise<void> {
    if (this.repairing) return;
    this.repairing = true;
    let delay = this.initialDelayMs;
    let attempts = 0;
    try {
      while (!this.stopped && this.fatal === null) {
        const closed = this.pool.connections.flatMap((c, i) => (c.closed ? [i] : []));
        if (closed.length === 0) return;
        await this.sleep(delay);
        if (this.stopped) return;
        attempts++;
        for (const i of closed) {
          const conn = await this.reopen();
          if (conn === null) break;
          if (this.stopped) {
            conn.destroy();
            return;
          }
          this.pool.replace(i, conn);
          this.watch(i);
          this.events.emit('reconnect', { connection: i, attempts });
          this.drain();
        }
        delay = Math.min(delay * 2, this.maxDelayMs);
      }
    } finally {
      this.repairing = false;
    }
  }

  /** One attempt: a ready connection, or null (a transient failure, or a permanent one recorded). */
  private async reopen(): Promise<ClientConnection | null> {
    let conn: ClientConnection | null = null;
    let timer: NodeJS.Timeout | null = null;
    try {
      conn = await ClientConnection.open(this.connOpts);
      if (this.stopped) {
        conn.destroy();
        return null;
      }
      this.opening = conn;
      // Closing the connection fails its HELLO/ATTACH, which ends the handshake.
      const c = conn;
      timer = setTimeout(() => c.destroy(), this.attemptTimeoutMs);
      await this.handshake(conn);
      if (c.closed) return null;
      return conn;
    } catch (err) {
      conn?.destroy();
      if (isPermanent(err) && !this.stopped) this.giveUp(err as Error);
      return null;
    } finally {
      if (timer !== null) clearTimeout(timer);
      this.opening = null;
    }
  }

  private giveUp(err: Error): void {
    this.fatal = err;
    this.events.emit('giveup', err);
    this.failWaiting(err);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.timer = setTimeout(() => {
        this.timer = null;
        resolve();
      }, ms);
      if (this.waiting.length === 0) this.timer.unref();
    });
  }

  /** Sends every waiting request on the open connections, each with its first deadline. */
  private drain(): void {
    if (this.waiting.length === 0 || !this.pool.usable) return;
    const batch = this.waiting.splice(0);
    this.stopSweep();
    for (const p of batch) this.pool.send(p.opcode, p.lba, p.count, p.data, p.dataLen, p, 0, p.deadline === Infinity ? undefined : p.deadline);
  }

  private sweep(): void {
    const now = performance.now();
    let kept = 0;
    for (const p of this.waiting) {
      if (p.deadline <= now) p.fail(LocalStatus.TIMEOUT);
      else this.waiting[kept++] = p;
    }
    this.waiting.length = kept;
    if (kept === 0) this.stopSweep();
  }

  private stopSweep(): void {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    if (this.waiting.length === 0) this.timer?.unref();
  }

  private failWaiting(err: Error | number): void {
    const batch = this.waiting.splice(0);
    this.stopSweep();
    for (const p of batch) p.fail(err);
  }
}
