/**
 * Client error classes. Every failure a caller can see is a `ReflexError`
 * with a stable string `code` (errno-style), so callers branch on `code`
 * rather than on message text.
 *
 * Server-side failures arrive as a status byte in the response's opcode
 * field (see src/protocol/reflex-constants.ts). Failures the client detects
 * itself (timeout, lost connection, garbled stream) get "local" status
 * numbers above 0xff, so the low-level callback API can report any outcome
 * as one number without allocating an error object.
 */
import { STATUS_NAMES, Status } from '../protocol/reflex-constants.ts';

/** Outcomes detected by the client, outside the wire's 8-bit status space. */
export const LocalStatus = {
  /** The request's deadline passed without a response. */
  TIMEOUT: 0x100,
  /** The connection closed (or was closed) while the request was outstanding. */
  CLOSED: 0x101,
  /** The server's byte stream could not be framed; the connection was dropped. */
  PROTOCOL: 0x102,
  /**
   * The client gave the connection up after another request on it timed
   * out; this request may still be carried out by the server.
   */
  ABANDONED: 0x103,
} as const;

/** 0 means success; anything else is a wire Status or a LocalStatus. */
export const STATUS_OK = 0;

export type ReflexErrorCode =
  | 'EINVAL'
  | 'ERANGE'
  | 'EPERM'
  | 'EIO'
  | 'EBUSY'
  | 'ENOTSUP'
  | 'ENOSPC'
  | 'ESHUTDOWN'
  | 'ETIMEDOUT'
  | 'ECONNRESET'
  | 'ECONNABORTED'
  | 'EPROTO'
  | 'EUNKNOWN';

export class ReflexError extends Error {
  override name = 'ReflexError';
  readonly code: ReflexErrorCode;
  /** The wire status or LocalStatus this error came from. */
  readonly status: number;

  constructor(code: ReflexErrorCode, status: number, message: string) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** The server answered the request with an error status. */
export class ReflexServerError extends ReflexError {
  override name = 'ReflexServerError';
}

/** No response within the request's timeout. */
export class ReflexTimeoutError extends ReflexError {
  override name = 'ReflexTimeoutError';
}

/** The connection went away with the request outstanding (or was already closed). */
export class ReflexConnectionError extends ReflexError {
  override name = 'ReflexConnectionError';
}

/** The server sent bytes that do not frame as ReFlex responses. */
export class ReflexProtocolError extends ReflexError {
  override name = 'ReflexProtocolError';
}

const SERVER_MESSAGES: Record<number, string> = {
  [Status.EINVAL]: 'invalid request',
  [Status.ERANGE]: 'out of range of the volume',
  [Status.EPERM]: 'not permitted',
  [Status.EIO]: 'I/O error on the device',
  [Status.EBUSY]: 'server busy or over quota',
  [Status.ENOTSUP]: 'not supported by the server',
  [Status.ENOSPC]: 'no space left on the device',
  [Status.ESHUTDOWN]: 'server shutting down',
};

/** Builds the error for a non-zero status (wire or local). `what` names the request. */
export function errorFromStatus(status: number, what = 'request'): ReflexError {
  switch (status) {
    case LocalStatus.TIMEOUT:
      return new ReflexTimeoutError('ETIMEDOUT', status, `${what}: no response before the timeout`);
    case LocalStatus.CLOSED:
      return new ReflexConnectionError('ECONNRESET', status, `${what}: connection closed`);
    case LocalStatus.ABANDONED:
      return new ReflexConnectionError('ECONNABORTED', status, `${what}: connection given up after a timeout; the server may still carry it out`);
    case LocalStatus.PROTOCOL:
      return new ReflexProtocolError('EPROTO', status, `${what}: malformed response stream`);
  }
  const name = STATUS_NAMES[status];
  if (name === undefined) return new ReflexServerError('EUNKNOWN', status, `${what}: unknown status 0x${status.toString(16)}`);
  return new ReflexServerError(name as ReflexErrorCode, status, `${what}: ${name} (${SERVER_MESSAGES[status]})`);
}
