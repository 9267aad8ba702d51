import { CompletionQueue } from './completion-queue.ts';
import { Errno, Op, type CompletionHandler, type Engine, type IoRequest } from './engine.ts';

/**
 * RAM-backed device in a SharedArrayBuffer, so every worker thread's engine
 * instance sees the same bytes (pass `store` from the main thread). The
 * kernel backs the buffer lazily: unwritten ranges cost no memory and read as
 * zeros, as on a fresh SSD.
 */
export class MemoryEngine implements Engine {
  readonly name = 'memory';
  readonly blockSize = 1;
  readonly size: number;
  readonly store: SharedArrayBuffer;
  onComplete: CompletionHandler = () => {
    throw new Error('MemoryEngine: onComplete not set');
  };
  private readonly bytes: Buffer;
  private readonly done = new CompletionQueue((r) => {
    this.pending--;
    this.onComplete(r);
  });
  private pending = 0;

  constructor(sizeOrStore: number | SharedArrayBuffer) {
    this.store = typeof sizeOrStore === 'number' ? new SharedArrayBuffer(sizeOrStore) : sizeOrStore;
    this.size = this.store.byteLength;
    this.bytes = Buffer.from(this.store);
  }

  get inFlight(): number {
    return this.pending;
  }

  allocBuffer(length: number): Buffer {
    return Buffer.allocUnsafeSlow(length);
  }

  submit(req: IoRequest): void {
    req.result = this.execute(req);
    this.pending++;
    this.done.push(req);
  }

  kick(): void {}

  async close(): Promise<void> {}

  private execute(req: IoRequest): number {
    if (req.op === Op.FLUSH) return 0;
    const end = req.offset + req.length;
    if (req.offset < 0 || req.length < 0 || end > this.size) return Errno.EINVAL;
    switch (req.op) {
      case Op.READ:
        this.bytes.copy(req.buf!, 0, req.offset, end);
        return 0;
      case Op.WRITE:
        req.buf!.copy(this.bytes, req.offset, 0, req.length);
        return 0;
      case Op.TRIM:
      case Op.WRITE_ZEROES:
        this.bytes.fill(0, req.offset, end);
        return 0;
      default:
        return Errno.EOPNOTSUPP;
    }
  }
}
