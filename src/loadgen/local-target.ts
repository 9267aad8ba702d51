/**
 * The load generator's local target (`reflex bench --local PATH`): the same
 * storage engine the server would use (io_uring with O_DIRECT where it can,
 * else Node's fs), driven directly with no network, so remote and local are
 * measured by one generator with one set of histograms.
 *
 * Lanes only split the queue depth, as connections do for the network
 * target. Submissions made in one tick are issued with one `kick`.
 *
 * In closed loop the generator has nothing to do between completions, so
 * (with an engine that can) it takes them straight from the ring, polling
 * at low depth and waiting in the kernel at depth, as fio does, instead of
 * going back to the event loop for an eventfd wake-up: the local run then
 * measures the engine and the device, not libuv. It yields to the event
 * loop every millisecond so the run's timers still fire.
 */
import { randomFillSync } from 'node:crypto';
import type { DeviceSpec } from '../control/config.ts';
import { Errno, Op, newRequest, type Engine, type IoRequest } from '../storage/engine.ts';
import { openEngine } from '../storage/open-engine.ts';
import { Status } from '../protocol/reflex-constants.ts';
import { IoKind, type CompletionListener, type IoKindCode, type IoTarget } from './target.ts';

interface LocalRequest extends IoRequest {
  tag: number;
}

export interface LocalTargetOptions {
  path: string;
  /** Bytes; a new or shorter regular file is extended (sparse). */
  size?: number;
  lanes: number;
  /** Largest request the generator will make. */
  maxLength: number;
  engine?: 'auto' | 'uring' | 'fs';
  /** Wait for completions in the kernel (closed loop). Default false. */
  waitInKernel?: boolean;
}

/** How long one kernel-waiting stretch may hold the event loop. */
const YIELD_MS = 1;
/** Fewer requests in flight than this: poll for completions rather than sleep. */
const POLL_DEPTH = 4;

export class LocalTarget implements IoTarget {
  readonly lanes: number;
  readonly size: number;
  readonly sectorSize: number;
  readonly engine: Engine;
  /** Why io_uring was not used, when it was not. */
  readonly fallbackReason: string | undefined;
  private listener: CompletionListener | null = null;
  private readonly free: LocalRequest[] = [];
  private readonly payload: Buffer;
  private readonly maxLength: number;
  private kickQueued = false;
  private readonly kickBound = (): void => {
    this.kickQueued = false;
    this.engine.kick();
    if (this.waitInKernel && !this.reapQueued && this.engine.inFlight > 0) {
      this.reapQueued = true;
      setImmediate(this.reapBound);
    }
  };
  /** Set when the engine can reap and the caller asked for it. */
  private readonly waitInKernel: boolean;
  private reapQueued = false;
  private reaping = false;
  private readonly reapBound = (): void => {
    this.reapQueued = false;
    const engine = this.engine;
    const until = performance.now() + YIELD_MS;
    this.reaping = true;
    // Completion handlers submit the next requests; reap() issues them in
    // the io_uring_enter that waits, so one loop covers many round trips.
    // Below POLL_DEPTH it polls (min 0), as ReFlex and `serve --poll` do: on
    // this kind of VM a sleep and wake-up costs ~15 µs, a third of a 4 KiB
    // read. Deeper, it sleeps until a quarter of what is in flight is done,
    // which batches the device doorbells.
    try {
      while (engine.inFlight > 0 && performance.now() < until) {
        const n = engine.inFlight;
        engine.reap!(n < POLL_DEPTH ? 0 : n >> 2);
      }
    } finally {
      this.reaping = false;
    }
    if (engine.inFlight > 0) {
      this.reapQueued = true;
      setImmediate(this.reapBound);
    }
  };

  private constructor(engine: Engine, lanes: number, maxLength: number, fallbackReason: string | undefined, waitInKernel: boolean) {
    this.engine = engine;
    this.lanes = lanes;
    this.size = engine.size;
    this.sectorSize = Math.max(512, engine.blockSize);
    this.maxLength = maxLength;
    this.fallbackReason = fallbackReason;
    this.waitInKernel = waitInKernel && engine.reap !== undefined;
    if (this.waitInKernel) engine.setEventLoopNotify?.(false);
    this.payload = engine.allocBuffer(maxLength);
    randomFillSync(this.payload);
    engine.onComplete = (r: IoRequest) => {
      const req = r as LocalRequest;
      const status = req.result === 0 ? 0 : req.result === Errno.EINVAL ? Status.EINVAL : Status.EIO;
      const tag = req.tag;
      this.free.push(req);
      this.listener!.onComplete(tag, status);
    };
  }

  static async open(o: LocalTargetOptions): Promise<LocalTarget> {
    const spec: DeviceSpec = { kind: 'file', path: o.path, create: o.size !== undefined };
    if (o.size !== undefined) spec.size = o.size;
    const opened = await openEngine(spec, { engine: o.engine ?? 'auto' });
    return new LocalTarget(opened.engine, o.lanes, o.maxLength, opened.fallbackReason, o.waitInKernel ?? false);
  }

  setListener(listener: CompletionListener): void {
    this.listener = listener;
  }

  submit(_lane: number, kind: IoKindCode, offset: number, length: number, tag: number): void {
    let req = this.free.pop();
    if (req === undefined) {
      req = newRequest() as LocalRequest;
      req.buf = this.engine.allocBuffer(this.maxLength);
    }
    req.op = kind === IoKind.READ ? Op.READ : Op.WRITE;
    req.offset = offset;
    req.length = length;
    req.fua = false;
    req.result = 0;
    req.tag = tag;
    if (kind === IoKind.WRITE) this.payload.copy(req.buf!, 0, 0, length);
    this.engine.submit(req);
    // While reaping, the next reap issues it; otherwise kick at the end of the tick.
    if (!this.kickQueued && !this.reaping) {
      this.kickQueued = true;
      queueMicrotask(this.kickBound);
    }
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}
