/**
 * The one seam between the data plane and storage.
 *
 * Every engine (file, io_uring, memory, null, simulated SSD, and wrappers such
 * as fault injection) implements this interface. The data plane owns request
 * objects and hands them to `submit`; the engine fills `result` and hands
 * them back through the single `onComplete` handler, so no closure is
 * allocated per request. `kick` marks the end of a submission batch: engines
 * that batch (io_uring) issue everything queued since the last kick in one
 * system call.
 */

/** Operation codes. Numbers rather than strings: compared on the hot path. */
export const Op = {
  READ: 0,
  WRITE: 1,
  FLUSH: 2,
  TRIM: 3,
  WRITE_ZEROES: 4,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];

export const OP_NAMES: Record<OpCode, string> = {
  0: 'read',
  1: 'write',
  2: 'flush',
  3: 'trim',
  4: 'write_zeroes',
};

/** Negative errno values an engine may report in `IoRequest.result`. */
export const Errno = {
  EIO: -5,
  EINVAL: -22,
  ENOSPC: -28,
  EOPNOTSUPP: -95,
  ECANCELED: -125,
} as const;

export interface IoRequest {
  op: OpCode;
  /** Absolute byte offset on the engine's device. */
  offset: number;
  /** Byte count. 0 for FLUSH. */
  length: number;
  /**
   * READ: destination of at least `length` bytes. WRITE: source of `length` bytes.
   * Otherwise null. For engines with `blockSize > 1` (O_DIRECT) the buffer
   * must come from `allocBuffer`.
   */
  buf: Buffer | null;
  /** Force unit access: the write is durable before it completes. */
  fua: boolean;
  /** Set by the engine before completion: 0 on success, a negative errno. */
  result: number;
  /** Opaque to the engine: who to answer. */
  ctx: unknown;
}

export type CompletionHandler = (req: IoRequest) => void;

export interface Engine {
  readonly name: string;
  /** Usable size in bytes. */
  readonly size: number;
  /**
   * Alignment, in bytes, that offsets, lengths and buffer addresses must
   * have (the device's logical block size under O_DIRECT; 1 when any byte
   * range works).
   */
  readonly blockSize: number;
  /** Set once by the owner before the first submit. */
  onComplete: CompletionHandler;
  /** A buffer this engine can transfer into or out of directly. */
  allocBuffer(length: number): Buffer;
  /** Queue one request. It completes later, never inside this call. */
  submit(req: IoRequest): void;
  /** End of a batch: issue everything queued. */
  kick(): void;
  /** Requests submitted and not yet completed. */
  readonly inFlight: number;
  /**
   * Optional: wait in the kernel for `min` completions (fewer when fewer are
   * in flight, or after a transient kernel refusal) and deliver them through
   * onComplete before returning how many were delivered: at most one batch
   * per call, so a caller loops until it has what it needs. For a caller that has nothing else
   * to do meanwhile, as fio waits; an engine without it completes only
   * through the event loop.
   */
  reap?(min: number): number;
  /**
   * Optional, with reap: whether completions also wake the event loop. A
   * caller that reaps by itself turns this off so the loop does not wake
   * for completions already taken.
   */
  setEventLoopNotify?(on: boolean): void;
  /**
   * Optional, with reap: whether every request goes to the kernel at once,
   * in its own submission (as fio submits by default), instead of with the
   * rest of its turn's or handler loop's batch. For a caller that polls: it
   * keeps the device queue topped up without delay, and a virtio disk serves
   * requests that arrive one by one faster than the same requests in one
   * plugged batch (measured: remote/local at depth 128 went from ~0.88 to
   * ~1.0 with a polling server). Without polling the batch's saved syscalls
   * matter more, so the server batches then.
   */
  setSubmitEach?(on: boolean): void;
  /**
   * Optional: TRIM both frees the range and makes it read as zeros (a hole
   * punched in a regular file). Then scrubbing a freed volume trims instead
   * of writing zeros, which would allocate every byte of a sparse file.
   * Block devices do not promise zeros after a discard: false or absent.
   */
  readonly trimReadsZeroes?: boolean;
  /**
   * Optional: how many requests the engine keeps at the device at once (an
   * io_uring's slots); more wait in the engine, in order, for a slot.
   */
  readonly queueDepth?: number;
  /** Optional, with queueDepth: requests waiting for a slot now. */
  readonly awaitingSlot?: number;
  /** Waits for in-flight requests, then releases the device. */
  close(): Promise<void>;
}

export function newRequest(): IoRequest {
  return { op: Op.READ, offset: 0, length: 0, buf: null, fua: false, result: 0, ctx: null };
}
