/**
 * Engine results (negative host errno, see src/storage/engine.ts) to NBD
 * reply errors.
 *
 *   nbdErrorFromResult(result: number): number   0 stays 0
 *
 * The protocol defines a small fixed set of error values; anything the spec
 * does not name maps to EIO, the catch-all a client reports as an I/O error.
 */
import { NbdError } from './constants.ts';

// Linux errno numbers an engine may surface (positive form).
const EPERM = 1;
const EIO = 5;
const ENOMEM = 12;
const EACCES = 13;
const EFBIG = 27;
const ENOSPC = 28;
const EROFS = 30;
const EINVAL = 22;
const EOVERFLOW = 75;
const EOPNOTSUPP = 95;
const ESHUTDOWN = 108;
const EDQUOT = 122;
const ECANCELED = 125;

export function nbdErrorFromResult(result: number): number {
  if (result >= 0) return NbdError.OK;
  switch (-result) {
    case EPERM:
    case EACCES:
    case EROFS:
      return NbdError.EPERM;
    case ENOMEM:
      return NbdError.ENOMEM;
    case EINVAL:
      return NbdError.EINVAL;
    case ENOSPC:
    case EFBIG:
    case EDQUOT:
      return NbdError.ENOSPC;
    case EOVERFLOW:
      return NbdError.EOVERFLOW;
    case EOPNOTSUPP:
      return NbdError.ENOTSUP;
    // A request cancelled because the server is going away: ESHUTDOWN tells
    // the client to disconnect cleanly rather than retry.
    case ECANCELED:
    case ESHUTDOWN:
      return NbdError.ESHUTDOWN;
    case EIO:
    default:
      return NbdError.EIO;
  }
}
