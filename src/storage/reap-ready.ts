/**
 * Takes every completion an engine has ready, for a caller that polls.
 *
 * One reap is not enough: since Linux 6.13 an io_uring_enter runs at most
 * 20 deferred completions (IO_LOCAL_TW_DEFAULT_MAX), so a device that
 * finishes 85 requests at once would hand them over 20 per polling turn, and
 * their refills would reach the device a turn (a round of socket work)
 * apart. Each reap is followed by a kick, so the slots it freed are refilled
 * at once.
 */

import type { Engine } from './engine.ts';

/**
 * Reaps until a reap delivers nothing, nothing is in flight, or `maxReaps`
 * calls were made (so a device that completes as fast as it is refilled
 * cannot starve the caller's other work). Returns completions delivered.
 */
export function reapReady(e: Engine, maxReaps: number): number {
  let total = 0;
  for (let k = 0; k < maxReaps && e.inFlight > 0; k++) {
    const got = e.reap!(0);
    e.kick();
    if (got <= 0) break;
    total += got;
  }
  return total;
}
