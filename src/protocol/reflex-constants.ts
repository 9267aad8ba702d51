/**
 * ReFlex protocol numbers. Part 1 (v1) values are fixed by the original
 * server and its clients; part 2 values are this project's, documented in
 * docs/protocol.md and stable once released.
 */

/** Header size, and the value of the magic field (the original uses sizeof(header)). */
export const HEADER_SIZE = 24;
export const MAGIC = 24;

/** Request opcodes. */
export const Cmd = {
  GET: 0x00,
  SET: 0x01,
  SET_NO_ACK: 0x02,
  // Extensions (never sent by v1 clients).
  FLUSH: 0x10,
  TRIM: 0x11,
  WRITE_ZEROES: 0x12,
  HELLO: 0x20,
  ATTACH: 0x21,
} as const;

/**
 * Server-to-client notices: unsolicited frames with handle 0 and no payload,
 * sent only on connections whose HELLO asked for them (HelloFlag.NOTICES),
 * so a v1 client never sees one. RESIZED: the volume now holds `lba` sectors.
 */
export const Notice = {
  RESIZED: 0x22,
} as const;

/** Bits a client may set in HELLO's lba field. */
export const HelloFlag = {
  /** Send this connection notices (Notice.*). */
  NOTICES: 1 << 0,
} as const;

/**
 * Error codes, carried in the response's opcode field with lba_count = 0 and
 * no payload, so v1 clients (which only look for a payload when opcode == GET)
 * keep their framing. 0x04 is the original's reserved RESP_EINVAL.
 */
export const Status = {
  EINVAL: 0x04,
  ERANGE: 0x05,
  EPERM: 0x06,
  EIO: 0x07,
  EBUSY: 0x08,
  ENOTSUP: 0x09,
  ENOSPC: 0x0a,
  ESHUTDOWN: 0x0b,
} as const;

export const STATUS_NAMES: Record<number, string> = {
  0x04: 'EINVAL',
  0x05: 'ERANGE',
  0x06: 'EPERM',
  0x07: 'EIO',
  0x08: 'EBUSY',
  0x09: 'ENOTSUP',
  0x0a: 'ENOSPC',
  0x0b: 'ESHUTDOWN',
};

export function isErrorStatus(opcode: number): boolean {
  return opcode >= 0x04 && opcode <= 0x0f;
}

/** Feature bits reported by HELLO. */
export const Feature = {
  FLUSH: 1 << 0,
  TRIM: 1 << 1,
  WRITE_ZEROES: 1 << 2,
  ERRORS: 1 << 3,
  ATTACH: 1 << 4,
  FUA: 1 << 5,
} as const;

/** Protocol version spoken by this server in HELLO. */
export const PROTOCOL_VERSION = 2;

/** The original caps a request at 256 pages of 4 KiB. */
export const DEFAULT_MAX_REQUEST_BYTES = 1 << 20;
export const DEFAULT_SECTOR_SIZE = 512;
