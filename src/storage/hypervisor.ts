/**
 * Whether this machine is a virtual one, for settings that only pay off
 * where the disk is emulated by a host thread (see readCacheEvict).
 */

import fs from 'node:fs';

/** True when a /proc/cpuinfo text lists the `hypervisor` CPU flag (x86's CPUID bit, set by every common hypervisor). */
export function cpuinfoSaysHypervisor(cpuinfo: string): boolean {
  return /^flags\s*:.*\bhypervisor\b/m.test(cpuinfo);
}

/** This machine, read once; false where /proc/cpuinfo cannot be read or has no flags (AArch64). */
export function underHypervisor(): boolean {
  if (cached === undefined) {
    try {
      cached = cpuinfoSaysHypervisor(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    } catch {
      cached = false;
    }
  }
  return cached;
}

let cached: boolean | undefined;
