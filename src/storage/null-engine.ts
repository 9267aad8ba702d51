import { CompletionQueue } from './completion-queue.ts';
import { Op, type CompletionHandler, type Engine, type IoRequest } from './engine.ts';

/**
 * Reads return zeros, writes are discarded: the original's FAKE_FLASH mode,
 * for measuring the data plane without a device.
 */
export class NullEngine implements Engine {
  readonly name = 'null';
  readonly blockSize = 1;
  readonly size: number;
  onComplete: CompletionHandler = () => {
    throw new Error('NullEngine: onComplete not set');
  };
  private readonly done = new CompletionQueue((r) => {
    this.pending--;
    this.onComplete(r);
  });
  private pending = 0;

  constructor(size: number) {
    this.size = size;
  }

  get inFlight(): number {
    return this.pending;
  }

  allocBuffer(length: number): Buffer {
    return Buffer.allocUnsafeSlow(length);
  }

  submit(req: IoRequest): void {
    if (req.op === Op.READ && req.buf !== null) req.buf.fill(0, 0, req.length);
    req.result = 0;
    this.pending++;
    this.done.push(req);
  }

  kick(): void {}

  async close(): Promise<void> {}
}
