/**
 * The load generator's network target: one client connection per lane,
 * driven through the low-level callback API (no promise per request). Write
 * requests all send the same preallocated payload.
 */
import { randomFillSync } from 'node:crypto';
import { Pool } from '../client/pool.ts';
import { connect } from '../client/index.ts';
import type { ResponseSink } from '../client/connection.ts';
import { Cmd } from '../protocol/reflex-constants.ts';
import { assert } from '../util/assert.ts';
import { IoKind, type CompletionListener, type IoKindCode, type IoTarget } from './target.ts';

export interface NetworkTargetOptions {
  host: string;
  port: number;
  connections: number;
  /** Ask the server with HELLO for sector and volume size. */
  hello: boolean;
  /** Used when HELLO is off or unanswered. */
  sectorSize: number;
  /** Bytes addressable when HELLO is off (required then). */
  span?: number;
  /** Largest request the generator will make: the write payload's size. */
  maxLength: number;
  timeoutMs: number;
}

export class NetworkTarget implements IoTarget, ResponseSink {
  readonly lanes: number;
  readonly size: number;
  readonly sectorSize: number;
  private readonly pool: Pool;
  private readonly payload: Buffer;
  private listener: CompletionListener | null = null;

  private constructor(pool: Pool, size: number, sectorSize: number, maxLength: number) {
    this.pool = pool;
    this.lanes = pool.connections.length;
    this.size = size;
    this.sectorSize = sectorSize;
    this.payload = randomFillSync(Buffer.allocUnsafe(maxLength));
  }

  static async open(o: NetworkTargetOptions): Promise<NetworkTarget> {
    if (o.hello) {
      const client = await connect({ host: o.host, port: o.port, connections: o.connections, timeoutMs: o.timeoutMs, sectorSize: o.sectorSize, hello: true });
      const size = client.info?.volumeSize ?? o.span;
      if (size === undefined) {
        client.destroy();
        throw new Error('the server does not answer HELLO: give --span');
      }
      return new NetworkTarget(client.pool, size, client.sectorSize, o.maxLength);
    }
    if (o.span === undefined) throw new Error('without HELLO the span must be given');
    const pool = await Pool.open(o.connections, { host: o.host, port: o.port, timeoutMs: o.timeoutMs, sectorSize: o.sectorSize });
    return new NetworkTarget(pool, o.span, o.sectorSize, o.maxLength);
  }

  setListener(listener: CompletionListener): void {
    this.listener = listener;
  }

  submit(lane: number, kind: IoKindCode, offset: number, length: number, tag: number): void {
    const s = this.sectorSize;
    if (kind === IoKind.READ) {
      this.pool.connections[lane].send(Cmd.GET, offset / s, length / s, null, 0, this, tag);
    } else {
      assert(length <= this.payload.length, 'write longer than the payload buffer');
      this.pool.connections[lane].send(Cmd.SET, offset / s, length / s, this.payload, length, this, tag);
    }
  }

  onResponse(tag: number, status: number): void {
    this.listener!.onComplete(tag, status);
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
