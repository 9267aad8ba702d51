/**
 * CPU time of another process (all its threads), from /proc/PID/stat:
 * fields 14 and 15 are utime and stime in clock ticks. Linux fixes the
 * user-visible tick (USER_HZ) at 100 on every mainstream architecture.
 */
import fs from 'node:fs';

const USER_HZ = 100;

/** User + system CPU seconds used so far by `pid`. Throws when the process is gone. */
export function processCpuSeconds(pid: number): number {
  const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may contain spaces: split after it.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so field N is rest[N - 3].
  const utime = Number(rest[14 - 3]);
  const stime = Number(rest[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`/proc/${pid}/stat: cannot parse CPU times`);
  return (utime + stime) / USER_HZ;
}
