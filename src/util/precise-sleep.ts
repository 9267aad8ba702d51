/**
 * A sleep of a few µs for the calling thread, from the native addon
 * (nanosleep with a 1 µs timer slack: the default 50 µs slack would turn a
 * 20 µs nap into 70). null where the addon is not built: Atomics.wait has
 * millisecond-scale overhead here and would do more harm than good.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ADDON = fileURLToPath(new URL('../../native/build/Release/reflex_uring.node', import.meta.url));

function load(): ((us: number) => void) | null {
  if (process.platform !== 'linux' || !existsSync(ADDON)) return null;
  try {
    const native = createRequire(import.meta.url)(ADDON) as { sleepUs?: (us: number) => void };
    return typeof native.sleepUs === 'function' ? native.sleepUs : null;
  } catch {
    return null;
  }
}

export const sleepUs: ((us: number) => void) | null = load();
