import type { DeviceSpec } from '../control/config.ts';
import type { Engine } from './engine.ts';
import type { UringOpenOptions } from './uring-engine.ts';
import { FaultEngine, parseFaultSpec } from './fault-engine.ts';
import { FileEngine } from './file-engine.ts';
import { MemoryEngine } from './memory-engine.ts';
import { NullEngine } from './null-engine.ts';

export interface OpenOptions {
  /** For memory devices: the store shared by all workers. */
  memoryStore?: SharedArrayBuffer;
  engine?: 'auto' | 'uring' | 'fs';
  /** Fault injection around the engine (see fault-engine.ts), e.g. "read-error=0.01,seed=1". */
  faults?: string;
  /** io_uring slots (requests at the device at once); default 128. */
  queueDepth?: number;
  /** io_uring: evict READ buffers from the CPU caches before submission (UringOpenOptions). */
  evictReadBuffers?: boolean;
}

export interface Opened {
  engine: Engine;
  /** Why a faster engine was not used, when it was not. */
  fallbackReason?: string;
}

/** The one line a front end prints when it had to fall back from io_uring. */
export function fallbackWarning(reason: string): string {
  const why = reason.replace(/^io_uring unavailable: /, '');
  return `warning: io_uring engine unavailable (${why}); using Node's fs engine (buffered, through the thread pool)`;
}

/** Opens the engine for a device spec; io_uring for files where it can, Node's fs otherwise; faults wrap it. */
export async function openEngine(spec: DeviceSpec, opts: OpenOptions = {}): Promise<Opened> {
  const opened = await openBare(spec, opts);
  if (opts.faults === undefined || opts.faults === '') return opened;
  return { ...opened, engine: new FaultEngine(opened.engine, parseFaultSpec(opts.faults)) };
}

async function openBare(spec: DeviceSpec, opts: OpenOptions): Promise<Opened> {
  switch (spec.kind) {
    case 'memory':
      return { engine: new MemoryEngine(opts.memoryStore ?? spec.size) };
    case 'null':
      return { engine: new NullEngine(spec.size) };
    case 'file': {
      let reason: string | undefined;
      if (opts.engine !== 'fs') {
        const uring = await tryUring(spec, opts);
        if (uring.engine) return { engine: uring.engine };
        reason = uring.reason;
        if (opts.engine === 'uring') throw new Error(`io_uring engine unavailable: ${reason}`);
      }
      const fileOpts: { size?: number; create?: boolean } = {};
      if (spec.size !== undefined) fileOpts.size = spec.size;
      if (spec.create !== undefined) fileOpts.create = spec.create;
      return { engine: new FileEngine(spec.path, fileOpts), fallbackReason: reason };
    }
  }
}

/** The io_uring engine, or why not (no addon, io_uring disabled, REFLEX_NO_URING=1, ...). */
async function tryUring(spec: Extract<DeviceSpec, { kind: 'file' }>, opts: OpenOptions): Promise<{ engine?: Engine; reason: string }> {
  try {
    const { UringEngine } = await import('./uring-engine.ts');
    const o: UringOpenOptions = {};
    if (opts.queueDepth !== undefined) o.queueDepth = opts.queueDepth;
    if (opts.evictReadBuffers !== undefined) o.evictReadBuffers = opts.evictReadBuffers;
    if (spec.size !== undefined) o.size = spec.size;
    if (spec.create !== undefined) o.create = spec.create;
    return { engine: UringEngine.open(spec.path, o), reason: '' };
  } catch (err) {
    return { reason: (err as Error).message };
  }
}
