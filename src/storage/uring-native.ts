/**
 * Loader and typed view of the io_uring addon (native/, built by node-gyp
 * into native/build/Release/reflex_uring.node).
 *
 * `loadUring()` never throws: a missing build, a kernel without io_uring
 * (ENOSYS), io_uring switched off by `kernel.io_uring_disabled` (EPERM) or
 * `REFLEX_NO_URING=1` all come back as `{ ok: false, reason }`, so callers can
 * fall back to the portable engine and say why.
 */

import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';

/** Doubles per submission descriptor (must match native/src/addon.c). */
export const DESC_STRIDE = 8;
/** Field offsets inside one descriptor. */
export const Desc = {
  OP: 0,
  FLAGS: 1,
  FD: 2,
  OFFSET: 3,
  LENGTH: 4,
  /** >= 0: id from `alloc`; <= -2: index -2-id into submit's `foreign` array. */
  BUF_ID: 5,
  BUF_OFF: 6,
  TAG: 7,
} as const;

/** Native operation codes. */
export const NativeOp = {
  READ: 0,
  WRITE: 1,
  FSYNC: 2,
  /** fallocate(PUNCH_HOLE | KEEP_SIZE), asynchronous through the ring. */
  PUNCH_HOLE: 3,
  /** fallocate(ZERO_RANGE | KEEP_SIZE), asynchronous through the ring. */
  ZERO_RANGE: 4,
  /** ioctl(BLKDISCARD): synchronous inside submit, completes on a later tick. */
  BLKDISCARD: 5,
  /** ioctl(BLKZEROOUT): synchronous inside submit, completes on a later tick. */
  BLKZEROOUT: 6,
  NOP: 7,
} as const;

export const DescFlag = {
  /** WRITE with RWF_DSYNC. */
  FUA: 1,
  /** FD is an index into the ring's registered files. */
  FIXED_FILE: 2,
  /** FSYNC as fdatasync. */
  DATASYNC: 4,
  /** READ: evict the buffer's lines from the CPU caches first (native/src/cache-evict.h). */
  EVICT: 8,
} as const;

/** One io_uring with its eventfd watched by this thread's event loop. */
export interface NativeRing {
  readonly sqEntries: number;
  readonly cqEntries: number;
  /**
   * Takes `count` descriptors from the start of the ring's descriptor array
   * and enters the kernel once. Returns how many were taken (fewer only when
   * the submission queue is full) or a negative errno.
   */
  submit(count: number, foreign?: Uint8Array[]): number;
  /** 0 or a negative errno. */
  registerFiles(fds: Int32Array): number;
  /**
   * Takes `count` descriptors as submit does and, in the same
   * io_uring_enter, waits for `min` completions (capped at those in
   * flight); delivers what is ready through onBatch and returns the number
   * delivered or a negative errno.
   */
  reap(min: number, count?: number, foreign?: Uint8Array[]): number;
  /** Whether CQEs signal the eventfd; 0 or a negative errno (ENOTSUP before Linux 5.8). */
  notify(on: boolean): number;
  /** Idempotent. Pending completions are dropped. */
  close(): void;
}

export interface NativeRingConstructor {
  /**
   * `desc` holds at least sqEntries * DESC_STRIDE doubles; `comp` receives
   * (tag, result) int32 pairs and `onBatch(n)` is called once per drained
   * batch on this thread's event loop (or, inside `reap`, synchronously). Throws if the ring cannot be set up.
   */
  new (entries: number, desc: Float64Array, comp: Int32Array, onBatch: (n: number) => void): NativeRing;
}

export interface UringNative {
  /** 0 when io_uring can be set up here, else a negative errno. */
  probe(): number;
  /** 1 when this build can evict cache lines from user space (DescFlag.EVICT works), else 0. */
  cacheEvictSupported(): number;
  /** Zeroed, page-aligned memory freed when the Buffer is collected, and its table id. */
  alloc(length: number): [Buffer, number];
  /** [isBlock, size, logicalBlockSize, dioMemAlign, dioOffsetAlign] or a negative errno. */
  deviceInfo(fd: number): [number, number, number, number, number] | number;
  Ring: NativeRingConstructor;
  descStride: number;
}

export type UringLoad = { ok: true; native: UringNative } | { ok: false; reason: string };

const ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/reflex_uring.node', import.meta.url));

let cached: UringLoad | null = null;

function errnoName(code: number): string {
  for (const [name, value] of Object.entries(os.constants.errno)) {
    if (value === code) return name;
  }
  return `errno ${code}`;
}

function tryLoad(): UringLoad {
  if (process.platform !== 'linux') return { ok: false, reason: `io_uring needs Linux (platform ${process.platform})` };
  if (!existsSync(ADDON_PATH)) {
    return { ok: false, reason: `native addon not built (${ADDON_PATH} missing; run npm install)` };
  }
  let native: UringNative;
  try {
    native = createRequire(import.meta.url)(ADDON_PATH) as UringNative;
  } catch (err) {
    return { ok: false, reason: `native addon failed to load: ${(err as Error).message}` };
  }
  if (native.descStride !== DESC_STRIDE) {
    return { ok: false, reason: `native addon is stale (descriptor stride ${native.descStride}, expected ${DESC_STRIDE}); rebuild it` };
  }
  const rc = native.probe();
  if (rc < 0) {
    const name = errnoName(-rc);
    const why =
      name === 'EPERM' ? ' (io_uring disabled by kernel.io_uring_disabled or a seccomp policy)' :
      name === 'ENOSYS' ? ' (kernel without io_uring)' : '';
    return { ok: false, reason: `io_uring_setup failed: ${name}${why}` };
  }
  return { ok: true, native };
}

/**
 * Loads the addon once per thread (each worker gets its own module instance
 * and therefore its own buffer table and rings). Never throws.
 */
export function loadUring(): UringLoad {
  if (process.env.REFLEX_NO_URING === '1') {
    return { ok: false, reason: 'io_uring disabled by REFLEX_NO_URING=1' };
  }
  if (cached === null) {
    try {
      cached = tryLoad();
    } catch (err) {
      cached = { ok: false, reason: `io_uring probe failed: ${(err as Error).message}` };
    }
  }
  return cached;
}
