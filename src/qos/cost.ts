/**
 * Request cost in tokens (QOS.md, "Tokens and the request cost model").
 *
 * READ / WRITE: ceil(bytes / 4096) × the 4 KiB cost; anything under 4 KiB
 *   (including 0 bytes) costs a full 4 KiB, because the device does a
 *   page's worth of work regardless.
 * FLUSH: one 4 KiB read. A flush moves no data through the tenant's share,
 *   but it is not free (a command slot, a cache drain), and a nonzero cost
 *   keeps a flush storm rate-limited.
 * TRIM: one 4 KiB write, whatever the range: an FTL metadata update whose
 *   cost does not scale with the range, but which perturbs the device more
 *   than a read.
 * WRITE_ZEROES: as a WRITE of the same length. The server cannot know whether
 *   the device unmaps or writes zeros, so it charges the expensive case.
 *
 * Op numbers equal Op in src/storage/engine.ts (src/qos imports nothing
 * outside src/qos; test/unit/qos-cost.test.ts checks they agree).
 */

export const CostOp = {
  READ: 0,
  WRITE: 1,
  FLUSH: 2,
  TRIM: 3,
  WRITE_ZEROES: 4,
} as const;
export type CostOpCode = (typeof CostOp)[keyof typeof CostOp];

export const PAGE_BYTES = 4096;

export interface CostModel {
  readCost4k: number;
  writeCost4k: number;
}

/** Number of 4 KiB units charged for `bytes` (at least 1). */
export function pages4k(bytes: number): number {
  return bytes <= PAGE_BYTES ? 1 : Math.ceil(bytes / PAGE_BYTES);
}

export function requestCost(model: CostModel, op: number, bytes: number): number {
  switch (op) {
    case CostOp.READ:
      return pages4k(bytes) * model.readCost4k;
    case CostOp.WRITE:
    case CostOp.WRITE_ZEROES:
      return pages4k(bytes) * model.writeCost4k;
    case CostOp.FLUSH:
      return model.readCost4k;
    case CostOp.TRIM:
      return model.writeCost4k;
    default:
      throw new RangeError(`requestCost: unknown op ${op}`);
  }
}

/** Tokens per 4 KiB request for a read fraction `readFraction` in [0, 1]. */
export function mixedCost4k(model: CostModel, readFraction: number): number {
  return readFraction * model.readCost4k + (1 - readFraction) * model.writeCost4k;
}
