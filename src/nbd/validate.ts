/**
 * Protocol-level checks of a parsed request against what was negotiated.
 *
 *   validateRequest(req: NbdRequest, session: NbdSession): number
 *     returns 0 when the request may be executed, otherwise the NBD error to
 *     reply with (the request is then not executed).
 *
 * What it checks, in order: known command; flags known, advertised and
 * meaningful for the command; command advertised; read-only export;
 * FLUSH/DISC carry no range; block-size constraints (alignment, maximum)
 * only when the client asked for them in NBD_OPT_GO; range inside the
 * export (ENOSPC for writes past the end, EINVAL otherwise, as the spec
 * asks). Zero-length data commands are accepted as no-ops, except
 * BLOCK_STATUS, which cannot describe an empty range.
 */
import { Cmd, CmdFlag, KNOWN_CMD_FLAGS, NbdError, TxFlag } from './constants.ts';
import { maxPayloadOf } from './export-info.ts';
import type { NbdSession } from './export-info.ts';
import type { NbdRequest } from './transmission.ts';

/** Command flags meaningful per command (FUA is accepted on any command, see below). */
function allowedFlags(type: number, tx: number): number {
  // The spec lets clients set FUA on any command once SEND_FUA is advertised;
  // it only has an effect on commands that write.
  let allowed = (tx & TxFlag.SEND_FUA) !== 0 ? CmdFlag.FUA : 0;
  switch (type) {
    case Cmd.READ:
      if ((tx & TxFlag.SEND_DF) !== 0) allowed |= CmdFlag.DF;
      break;
    case Cmd.WRITE_ZEROES:
      allowed |= CmdFlag.NO_HOLE;
      if ((tx & TxFlag.SEND_FAST_ZERO) !== 0) allowed |= CmdFlag.FAST_ZERO;
      break;
    case Cmd.BLOCK_STATUS:
      allowed |= CmdFlag.REQ_ONE;
      break;
  }
  return allowed;
}

export function validateRequest(req: NbdRequest, session: NbdSession): number {
  const tx = session.transmissionFlags;
  const e = session.export;
  const type = req.type;

  switch (type) {
    case Cmd.READ:
    case Cmd.WRITE:
    case Cmd.DISC:
    case Cmd.FLUSH:
      break;
    case Cmd.TRIM:
      if ((tx & TxFlag.SEND_TRIM) === 0) return e.readOnly ? NbdError.EPERM : NbdError.EINVAL;
      break;
    case Cmd.CACHE:
      if ((tx & TxFlag.SEND_CACHE) === 0) return NbdError.EINVAL;
      break;
    case Cmd.WRITE_ZEROES:
      if ((tx & TxFlag.SEND_WRITE_ZEROES) === 0) return e.readOnly ? NbdError.EPERM : NbdError.EINVAL;
      break;
    case Cmd.BLOCK_STATUS:
      // Needs a selected context, which needs structured replies.
      if (!session.structuredReplies || session.metaContexts.length === 0) return NbdError.EINVAL;
      break;
    default:
      return NbdError.EINVAL;
  }

  if ((req.flags & ~KNOWN_CMD_FLAGS) !== 0) return NbdError.EINVAL;
  if ((req.flags & ~allowedFlags(type, tx)) !== 0) return NbdError.EINVAL;

  if (type === Cmd.DISC) return NbdError.OK;
  if (type === Cmd.FLUSH) {
    if ((tx & TxFlag.SEND_FLUSH) === 0) return NbdError.EINVAL;
    return req.offset === 0 && req.length === 0 ? NbdError.OK : NbdError.EINVAL;
  }

  const writes = type === Cmd.WRITE || type === Cmd.WRITE_ZEROES || type === Cmd.TRIM;
  if (writes && (tx & TxFlag.READ_ONLY) !== 0) return NbdError.EPERM;

  if (type === Cmd.BLOCK_STATUS && req.length === 0) return NbdError.EINVAL;

  if (session.blockSizeRequested && type !== Cmd.BLOCK_STATUS) {
    const min = e.minBlock;
    if (req.offset % min !== 0 || req.length % min !== 0) return NbdError.EINVAL;
  }
  if ((type === Cmd.READ || type === Cmd.WRITE) && req.length > maxPayloadOf(session)) {
    return NbdError.EOVERFLOW;
  }

  // offset may be an imprecise number >= 2^53 (see transmission.ts); any such
  // value exceeds every export size, so the comparison below still holds.
  if (req.offset > e.size || req.length > e.size - req.offset) {
    return type === Cmd.WRITE || type === Cmd.WRITE_ZEROES ? NbdError.ENOSPC : NbdError.EINVAL;
  }
  return NbdError.OK;
}
