/**
 * A fixed set of connections to one server. Each request goes to the
 * connection with the fewest outstanding requests, so one slow connection
 * (or one stuck behind a large transfer) does not collect the queue.
 */
import { assert } from '../util/assert.ts';
import { ClientConnection, type ConnectionOptions, type ResponseSink } from './connection.ts';

export class Pool {
  readonly connections: ClientConnection[];
  private next = 0;

  private constructor(connections: ClientConnection[]) {
    assert(connections.length > 0, 'a pool needs at least one connection');
    this.connections = connections;
  }

  /** Opens `count` connections; if any fails, the others are closed and the error is thrown. */
  static async open(count: number, opts: ConnectionOptions): Promise<Pool> {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`connections: ${count} must be an integer >= 1`);
    const settled = await Promise.allSettled(Array.from({ length: count }, () => ClientConnection.open(opts)));
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed !== undefined) {
      for (const s of settled) if (s.status === 'fulfilled') s.value.destroy();
      throw (failed as PromiseRejectedResult).reason;
    }
    return new Pool(settled.map((s) => (s as PromiseFulfilledResult<ClientConnection>).value));
  }

  /**
   * The open connection with the fewest outstanding requests (ties: round
   * robin), preferring one whose server is not draining.
   */
  pick(): ClientConnection {
    const conns = this.connections;
    const n = conns.length;
    let best: ClientConnection | null = null;
    let start = this.next;
    this.next = start + 1 === n ? 0 : start + 1;
    for (let i = 0; i < n; i++) {
      const c = conns[start];
      if (!c.closed && (best === null || (best.draining && !c.draining) || (best.draining === c.draining && c.outstanding < best.outstanding))) best = c;
      start = start + 1 === n ? 0 : start + 1;
    }
    // All closed: any of them completes the request with ECONNRESET.
    return best ?? conns[0];
  }

  send(opcode: number, lba: number, count: number, data: Buffer | null, dataLen: number, sink: ResponseSink | null, tag: number, deadline?: number): void {
    this.pick().send(opcode, lba, count, data, dataLen, sink, tag, deadline);
  }

  /** Some connection is open and its server is not draining. */
  get usable(): boolean {
    for (const c of this.connections) if (!c.closed && !c.draining) return true;
    return false;
  }

  /** Puts a new connection in slot `i` (a reconnect); the old one must be closed. */
  replace(i: number, conn: ClientConnection): void {
    assert(this.connections[i].closed, 'replacing an open connection');
    this.connections[i] = conn;
  }

  get outstanding(): number {
    let n = 0;
    for (const c of this.connections) n += c.outstanding;
    return n;
  }

  setSectorSize(size: number): void {
    for (const c of this.connections) c.setSectorSize(size);
  }

  async close(): Promise<void> {
    await Promise.all(this.connections.map((c) => c.close()));
  }

  destroy(): void {
    for (const c of this.connections) c.destroy();
  }
}
