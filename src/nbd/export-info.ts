/**
 * What the NBD layer needs to know about an export, and what a finished
 * handshake hands to the transmission phase.
 *
 *   interface ExportInfo          supplied by the caller (volume config)
 *   interface NbdSession          the result of a successful handshake
 *   checkExportInfo(e): void      throws on an export the spec forbids advertising
 *   transmissionFlags(e, structuredReplies): number
 */
import { DEFAULT_MAX_PAYLOAD, TxFlag } from './constants.ts';

export interface ExportInfo {
  name: string;
  description?: string;
  /** Size in bytes (< 2^53). */
  size: number;
  /** Block size constraints sent in NBD_INFO_BLOCK_SIZE (see checkExportInfo). */
  minBlock: number;
  preferredBlock: number;
  maxBlock: number;
  readOnly: boolean;
  canTrim: boolean;
  /** Flush and FUA are shared across connections (NBD_FLAG_CAN_MULTI_CONN). */
  canMultiConn: boolean;
  /** Defaults: flush, FUA and write-zeroes on; fast-zero, cache, rotational off. */
  canFlush?: boolean;
  canFua?: boolean;
  canWriteZeroes?: boolean;
  canFastZero?: boolean;
  canCache?: boolean;
  rotational?: boolean;
}

export interface MetaContext {
  /** Server-chosen id echoed in NBD_REPLY_TYPE_BLOCK_STATUS chunks. */
  id: number;
  name: string;
}

/** Everything the transmission phase needs from negotiation. */
export interface NbdSession {
  export: ExportInfo;
  /** NBD_OPT_STRUCTURED_REPLY was acknowledged: READ must use structured replies. */
  structuredReplies: boolean;
  /** Contexts selected with NBD_OPT_SET_META_CONTEXT for this export (may be empty). */
  metaContexts: MetaContext[];
  /** Flags the client was sent; validateRequest checks commands against them. */
  transmissionFlags: number;
  /**
   * The client asked for NBD_INFO_BLOCK_SIZE in NBD_OPT_GO, which obliges it
   * to honour minBlock/maxBlock. When false (kernel client, EXPORT_NAME) the
   * server must accept any byte-aligned request up to 32 MiB.
   */
  blockSizeRequested: boolean;
  /** Entered through NBD_OPT_EXPORT_NAME rather than NBD_OPT_GO. */
  viaExportName: boolean;
  /** Negotiation happened over TLS. */
  tls: boolean;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/**
 * The spec's rules for NBD_INFO_BLOCK_SIZE: minimum a power of two, at most
 * 64 KiB; preferred a power of two, at least the minimum; maximum a multiple
 * of the minimum, at least the preferred size (or the size of the export).
 */
export function checkExportInfo(e: ExportInfo): void {
  const where = `export ${JSON.stringify(e.name)}`;
  if (Buffer.byteLength(e.name) > 4096) throw new Error(`${where}: name longer than 4096 bytes`);
  if (!Number.isSafeInteger(e.size) || e.size < 0) throw new Error(`${where}: bad size ${e.size}`);
  if (!isPowerOfTwo(e.minBlock) || e.minBlock > 65536) {
    throw new Error(`${where}: minBlock ${e.minBlock} must be a power of two <= 65536`);
  }
  if (!isPowerOfTwo(e.preferredBlock) || e.preferredBlock < e.minBlock) {
    throw new Error(`${where}: preferredBlock ${e.preferredBlock} must be a power of two >= minBlock`);
  }
  if (!Number.isInteger(e.maxBlock) || e.maxBlock % e.minBlock !== 0 || e.maxBlock > 0xffffffff) {
    throw new Error(`${where}: maxBlock ${e.maxBlock} must be a u32 multiple of minBlock`);
  }
  if (e.maxBlock < Math.min(e.preferredBlock, e.size)) {
    throw new Error(`${where}: maxBlock ${e.maxBlock} below preferredBlock`);
  }
}

/** The 16-bit transmission flags an export is advertised with. */
export function transmissionFlags(e: ExportInfo, structuredReplies: boolean): number {
  let f: number = TxFlag.HAS_FLAGS;
  if (e.readOnly) f |= TxFlag.READ_ONLY;
  if (e.canFlush !== false) f |= TxFlag.SEND_FLUSH;
  if (e.canFua !== false) f |= TxFlag.SEND_FUA;
  if (e.rotational === true) f |= TxFlag.ROTATIONAL;
  // Write-side features are pointless on a read-only export; leaving them
  // out keeps clients from sending commands that can only fail with EPERM.
  if (!e.readOnly) {
    if (e.canTrim) f |= TxFlag.SEND_TRIM;
    if (e.canWriteZeroes !== false) {
      f |= TxFlag.SEND_WRITE_ZEROES;
      if (e.canFastZero === true) f |= TxFlag.SEND_FAST_ZERO;
    }
  }
  // DF only means something for structured reads, and the spec says the
  // flag must stay clear without them. We never fragment reads, so DF is free.
  if (structuredReplies) f |= TxFlag.SEND_DF;
  if (e.canMultiConn) f |= TxFlag.CAN_MULTI_CONN;
  if (e.canCache === true) f |= TxFlag.SEND_CACHE;
  return f;
}

/** Largest READ/WRITE a session accepts (block size constraints when agreed). */
export function maxPayloadOf(s: NbdSession): number {
  return s.blockSizeRequested ? s.export.maxBlock : Math.max(s.export.maxBlock, DEFAULT_MAX_PAYLOAD);
}
