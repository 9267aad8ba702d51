import type { IoRequest } from './engine.ts';

/**
 * Delivers completions of synchronous engines (memory, null, fs fallbacks)
 * asynchronously and in batches: requests finished during one tick are handed
 * back together from one microtask, so an engine never completes inside
 * `submit` and the data plane sees the same batching it gets from io_uring.
 */
export class CompletionQueue {
  private items: IoRequest[] = [];
  private scheduled = false;
  private readonly deliver: (req: IoRequest) => void;
  private readonly flushBound = (): void => this.flush();

  constructor(deliver: (req: IoRequest) => void) {
    this.deliver = deliver;
  }

  get length(): number {
    return this.items.length;
  }

  push(req: IoRequest): void {
    this.items.push(req);
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flushBound);
    }
  }

  private flush(): void {
    this.scheduled = false;
    const items = this.items;
    this.items = [];
    for (let i = 0; i < items.length; i++) this.deliver(items[i]);
  }
}
