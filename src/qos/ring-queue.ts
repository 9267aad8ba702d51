import { assert } from '../util/assert.ts';

/**
 * FIFO of items with a token cost each, in a power-of-two ring that grows by
 * doubling: O(1) push/pop with no Array.shift() and no per-item allocation
 * once warm. Keeps the sum of queued costs (a tenant's demand).
 */
export class CostQueue<T> {
  private items: (T | undefined)[];
  private costs: Float64Array;
  private head = 0;
  private count = 0;
  private mask: number;
  /** Sum of the costs of queued items. */
  totalCost = 0;

  constructor(initialCapacity = 16) {
    let cap = 1;
    while (cap < initialCapacity) cap <<= 1;
    this.items = new Array<T | undefined>(cap);
    this.costs = new Float64Array(cap);
    this.mask = cap - 1;
  }

  get length(): number {
    return this.count;
  }

  push(item: T, cost: number): void {
    if (this.count === this.items.length) this.grow();
    const i = (this.head + this.count) & this.mask;
    this.items[i] = item;
    this.costs[i] = cost;
    this.count++;
    this.totalCost += cost;
  }

  /** Cost of the oldest item; the queue must not be empty. */
  headCost(): number {
    assert(this.count > 0, 'CostQueue.headCost on empty queue');
    return this.costs[this.head];
  }

  shift(): T {
    assert(this.count > 0, 'CostQueue.shift on empty queue');
    const item = this.items[this.head] as T;
    this.items[this.head] = undefined;
    this.totalCost -= this.costs[this.head];
    this.head = (this.head + 1) & this.mask;
    this.count--;
    // Float sums drift; an empty queue has exactly zero demand.
    if (this.count === 0) this.totalCost = 0;
    return item;
  }

  /** Removes and returns everything, oldest first. */
  drain(): T[] {
    const out: T[] = [];
    while (this.count > 0) out.push(this.shift());
    return out;
  }

  private grow(): void {
    const cap = this.items.length * 2;
    const items = new Array<T | undefined>(cap);
    const costs = new Float64Array(cap);
    for (let k = 0; k < this.count; k++) {
      const j = (this.head + k) & this.mask;
      items[k] = this.items[j];
      costs[k] = this.costs[j];
    }
    this.items = items;
    this.costs = costs;
    this.head = 0;
    this.mask = cap - 1;
  }
}
