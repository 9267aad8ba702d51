/**
 * A deliberately dumb protocol peer for server tests: it writes whatever
 * bytes a test gives it and decodes responses with the codec, so tests can
 * send malformed frames that a real client would refuse to build.
 */
import net from 'node:net';
import { FrameParser, responsePayload, writeHeader, lo32, hi32 } from '../../src/protocol/reflex-codec.ts';
import { HEADER_SIZE } from '../../src/protocol/reflex-constants.ts';

export interface Reply {
  opcode: number;
  handle: number;
  lba: number;
  count: number;
  payload: Buffer | null;
}

export function header(opcode: number, handle: number, lba: number, count: number, magic = 24): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  writeHeader(b, 0, opcode, lo32(handle), hi32(handle), lo32(lba), hi32(lba), count);
  b.writeUInt16LE(magic, 0);
  return b;
}

export class RawPeer {
  readonly socket: net.Socket;
  readonly replies: Reply[] = [];
  closed = false;
  private waiters: Array<() => void> = [];
  private readonly parser: FrameParser;

  private constructor(socket: net.Socket, sectorSize: number) {
    this.socket = socket;
    this.parser = new FrameParser({ sectorSize, maxPayload: 1 << 30, rule: responsePayload });
    socket.on('data', (chunk: Buffer) =>
      this.parser.push(chunk, {
        onFrame: (f) => {
          this.replies.push({
            opcode: f.opcode,
            handle: f.handleHi * 2 ** 32 + f.handleLo,
            lba: f.lbaHi * 2 ** 32 + f.lbaLo,
            count: f.count,
            payload: f.payload ? Buffer.from(f.payload) : null,
          });
          this.wake();
        },
        onError: () => {
          throw new Error('server sent a malformed frame');
        },
      }),
    );
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static connect(port: number, sectorSize = 512): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => resolve(new RawPeer(s, sectorSize)));
      s.once('error', reject);
    });
  }

  send(...bufs: Buffer[]): void {
    this.socket.write(Buffer.concat(bufs));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves once `n` replies have arrived (or the socket closed); rejects after `timeoutMs`. */
  async waitReplies(n: number, timeoutMs = 5000): Promise<Reply[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.replies.length < n && !this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out: ${this.replies.length}/${n} replies`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.replies.slice(0, n);
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('timed out waiting for close');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  byHandle(h: number): Reply | undefined {
    return this.replies.find((r) => r.handle === h);
  }

  close(): void {
    this.socket.destroy();
  }
}
