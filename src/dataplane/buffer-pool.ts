import type { Engine } from '../storage/engine.ts';

const MIN_SHIFT = 9; // 512 B

/**
 * Reuses transfer buffers by power-of-two size class, so the steady state
 * allocates nothing per request. Buffers come from the engine, which knows
 * the alignment it needs (O_DIRECT). The pool keeps at most `keep` buffers
 * per class and `keepBytes` bytes in all, so a burst of large requests does
 * not pin its memory after it is over; the rest go back to the collector.
 */
export class BufferPool {
  private readonly classes: Buffer[][] = [];
  private readonly engine: Engine;
  private readonly keep: number;
  private readonly keepBytes: number;
  private pooledBytes = 0;

  constructor(engine: Engine, keep = 1024, keepBytes = 32 << 20) {
    this.engine = engine;
    this.keep = keep;
    this.keepBytes = keepBytes;
  }

  /** Bytes held for reuse. */
  get bytes(): number {
    return this.pooledBytes;
  }

  /** A buffer of at least `length` bytes. */
  get(length: number): Buffer {
    const c = classOf(length);
    const b = this.classes[c]?.pop();
    if (b === undefined) return this.engine.allocBuffer(1 << (c + MIN_SHIFT));
    this.pooledBytes -= b.length;
    return b;
  }

  put(buf: Buffer): void {
    const c = classOf(buf.length);
    if (1 << (c + MIN_SHIFT) !== buf.length) return; // not one of ours
    const list = (this.classes[c] ??= []);
    if (list.length < this.keep && this.pooledBytes + buf.length <= this.keepBytes) {
      list.push(buf);
      this.pooledBytes += buf.length;
    }
  }
}

function classOf(length: number): number {
  if (length <= 1 << MIN_SHIFT) return 0;
  return 32 - Math.clz32(length - 1) - MIN_SHIFT;
}
