/**
 * Opens the file or block device to calibrate. Calibration wants O_DIRECT
 * (io_uring engine): through the page cache, reads of a span that fits in
 * memory measure RAM, not Flash. openEngine gives io_uring when it can; if
 * it fell back to Node's fs engine this tries the io_uring engine's own
 * opener once more, and otherwise reports the fallback so the caller can
 * warn that the numbers describe the page cache.
 */
import fs from 'node:fs';
import type { Engine } from '../storage/engine.ts';
import { openEngine } from '../storage/open-engine.ts';

export interface CalibrationDevice {
  engine: Engine;
  /** True when I/O bypasses the page cache. */
  direct: boolean;
  /** Why the device is not opened with O_DIRECT io_uring, when it is not. */
  note?: string;
  /** The path did not exist and was created. */
  created: boolean;
  /** Bytes the filesystem has allocated for a regular file (Infinity for block devices). */
  allocatedBytes: number;
}

export async function openCalibrationDevice(path: string, o: { size?: number; engine: 'auto' | 'uring' | 'fs' }): Promise<CalibrationDevice> {
  const existed = fs.existsSync(path);
  const spec: { kind: 'file'; path: string; size?: number; create: boolean } = { kind: 'file', path, create: true };
  if (o.size !== undefined) spec.size = o.size;
  const opened = await openEngine(spec, { engine: o.engine });
  let engine = opened.engine;
  let note = opened.fallbackReason;
  if (note !== undefined && o.engine === 'auto') {
    try {
      const specifier = '../storage/uring-engine.ts';
      const mod = (await import(specifier)) as { UringEngine?: { open(p: string, x: { size?: number; create?: boolean }): Engine } };
      if (mod.UringEngine !== undefined) {
        const uring = mod.UringEngine.open(path, o.size === undefined ? {} : { size: o.size });
        await engine.close();
        engine = uring;
        note = undefined;
      }
    } catch (err) {
      note = `${note}; io_uring engine: ${(err as Error).message}`;
    }
  }
  const direct = engine.blockSize > 1 || (engine as { direct?: boolean }).direct === true;
  if (direct) note = undefined;
  else if (note === undefined) note = `engine '${engine.name}' does not use O_DIRECT`;
  const st = fs.statSync(path);
  const allocatedBytes = st.isFile() ? st.blocks * 512 : Infinity;
  const out: CalibrationDevice = { engine, direct, created: !existed, allocatedBytes };
  if (note !== undefined) out.note = note;
  return out;
}
