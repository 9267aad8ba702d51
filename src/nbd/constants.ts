/**
 * NBD protocol numbers (NetworkBlockDevice project, doc/proto.md).
 *
 * Grouped in `as const` objects (erasable syntax: no enums). Every value here
 * is on the wire in network byte order.
 *
 *   Magic       64-bit handshake magics (bigint) and 32-bit transmission magics
 *   HandshakeFlag / ClientFlag     16-bit server and 32-bit client flags
 *   Opt         option numbers            Rep       option reply types
 *   Info        NBD_INFO_* types          TxFlag    transmission flags
 *   Cmd         command types             CmdFlag   command flags
 *   NbdError    error values (errno-like, but fixed by the spec, not the host)
 *   ReplyType / ReplyFlag   structured reply chunk types and flags
 *   StateFlag   base:allocation extent flags
 */

export const Magic = {
  /** 'NBDMAGIC', first 8 bytes the server sends. */
  NBDMAGIC: 0x4e42444d41474943n,
  /** 'IHAVEOPT': second greeting word, and prefix of every client option. */
  IHAVEOPT: 0x49484156454f5054n,
  /** Prefix of every fixed-newstyle option reply. */
  OPTION_REPLY: 0x0003e889045565a9n,
  REQUEST: 0x25609513,
  SIMPLE_REPLY: 0x67446698,
  STRUCTURED_REPLY: 0x668e33ef,
} as const;

/** Handshake flags, 16 bits, sent by the server in the greeting. */
export const HandshakeFlag = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/** Client flags, 32 bits, the client's answer to the greeting. */
export const ClientFlag = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/** Option numbers (NBD_OPT_*). */
export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4, // withdrawn; answered as unknown
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11, // not implemented: answered NBD_REP_ERR_UNSUP, clients fall back
} as const;

/** Bit 31 marks an error reply type. */
export const REP_ERR_BIT = 0x80000000;

/** Option reply types (NBD_REP_*). Error types have bit 31 set. */
export const Rep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: REP_ERR_BIT + 1,
  ERR_POLICY: REP_ERR_BIT + 2,
  ERR_INVALID: REP_ERR_BIT + 3,
  ERR_PLATFORM: REP_ERR_BIT + 4,
  ERR_TLS_REQD: REP_ERR_BIT + 5,
  ERR_UNKNOWN: REP_ERR_BIT + 6,
  ERR_SHUTDOWN: REP_ERR_BIT + 7,
  ERR_BLOCK_SIZE_REQD: REP_ERR_BIT + 8,
  ERR_TOO_BIG: REP_ERR_BIT + 9,
} as const;

/** Information types in NBD_OPT_INFO / NBD_OPT_GO requests and NBD_REP_INFO replies. */
export const Info = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Transmission flags, 16 bits, describing the export to the client. */
export const TxFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

/** Command types (NBD_CMD_*). */
export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const CMD_NAMES: Readonly<Record<number, string>> = {
  0: 'read',
  1: 'write',
  2: 'disc',
  3: 'flush',
  4: 'trim',
  5: 'cache',
  6: 'write_zeroes',
  7: 'block_status',
};

/** Command flags (NBD_CMD_FLAG_*), 16 bits. */
export const CmdFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

/** Every command flag this server understands; others make a request invalid. */
export const KNOWN_CMD_FLAGS =
  CmdFlag.FUA | CmdFlag.NO_HOLE | CmdFlag.DF | CmdFlag.REQ_ONE | CmdFlag.FAST_ZERO;

/**
 * Error values in replies. They happen to equal Linux errno numbers, but
 * they are protocol constants: a server on another OS sends the same ones.
 */
export const NbdError = {
  OK: 0,
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** Structured reply chunk types. Error types have bit 15 set. */
export const ReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: (1 << 15) + 1,
  ERROR_OFFSET: (1 << 15) + 2,
} as const;

export const ReplyFlag = {
  /** Last chunk of a structured reply. */
  DONE: 1 << 0,
} as const;

/** Extent flags of the `base:allocation` metadata context. */
export const StateFlag = {
  HOLE: 1 << 0,
  ZERO: 1 << 1,
} as const;

/** The one metadata context this server implements. */
export const BASE_ALLOCATION = 'base:allocation';

// Sizes of fixed wire structures, in bytes.
export const GREETING_SIZE = 18; // NBDMAGIC + IHAVEOPT + u16 handshake flags
export const CLIENT_FLAGS_SIZE = 4;
export const OPTION_HEADER_SIZE = 16; // IHAVEOPT + u32 option + u32 length
export const OPTION_REPLY_HEADER_SIZE = 20; // magic + u32 option + u32 type + u32 length
export const EXPORT_NAME_REPLY_ZEROES = 124;
export const REQUEST_HEADER_SIZE = 28;
export const SIMPLE_REPLY_SIZE = 16;
export const STRUCTURED_HEADER_SIZE = 20;

/** Longest string (export name, query, message) the spec allows. */
export const MAX_STRING = 4096;
/** Maximum payload a client may assume when no block size was negotiated. */
export const DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024;
