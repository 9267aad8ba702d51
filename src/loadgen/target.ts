/**
 * What the load generator drives. A target has `lanes` independent queues
 * (network: one connection each) and reports completions through one
 * listener with the generator's numeric tag, so the generator's hot path
 * allocates nothing. The network client is one implementation; a local
 * storage-engine target (`reflex bench --local`) can be another.
 *
 * Requests submitted during one event-loop callback should leave together
 * (the network target coalesces them into one socket write per lane).
 */
export const IoKind = { READ: 0, WRITE: 1 } as const;
export type IoKindCode = (typeof IoKind)[keyof typeof IoKind];

export interface CompletionListener {
  /** `status` 0 is success; otherwise a protocol Status or client LocalStatus (src/client/errors.ts). */
  onComplete(tag: number, status: number): void;
}

export interface IoTarget {
  readonly lanes: number;
  /** Addressable bytes. */
  readonly size: number;
  readonly sectorSize: number;
  setListener(listener: CompletionListener): void;
  /** `offset` and `length` in bytes, sector multiples, within `size`. */
  submit(lane: number, kind: IoKindCode, offset: number, length: number, tag: number): void;
  close(): Promise<void>;
}
