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
 * (with an engine that can) it polls the ring for them, as ReFlex polls its
 * queue pairs, instead of going back to the event loop for an eventfd
 * wake-up, and each request a completion handler makes goes to the kernel
 * at once, as fio submits by default: on a virtio disk, small doorbells
 * keep the device queue fuller than one batch per wake-up (measured at
 * depth 32: ~0.89 of fio's IOPS batched, ~1.0 one by one). The local run
 * then measures the engine and the device, not libuv. It yields to the
 * event loop every millisecond so the run's timers still fire.
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
  /** io_uring slots (default 128). */
  queueDepth?: number;
  /** Poll the ring for completions (closed loop). Default false. */
  poll?: boolean;
}

/** How long one polling stretch may hold the event loop. */
const YIELD_MS = 1;

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
    if (this.poll && !this.reapQueued && this.engine.inFlight > 0) {
      this.reapQueued = true;
      setImmediate(this.reapBound);
    }
  };
  /** Set when the engine can reap and the caller asked for polling. */
  private readonly poll: boolean;
  private reapQueued = false;
  private reaping = false;
  private readonly reapBound = (): void => {
    this.reapQueued = false;
    const engine = this.engine;
    const until = performance.now() + YIELD_MS;
    this.reaping = true;
    // Polling (min 0), as ReFlex and `serve --poll` do: on this kind of VM a
    // sleep and wake-up costs ~15 µs, a third of a 4 KiB read. Completion
    // handlers submit the next requests, which the engine issues one by one.
    try {
      while (engine.inFlight > 0 && performance.now() < until) engine.reap!(0);
    } finally {
      this.reaping = false;
    }
    if (engine.inFlight > 0) {
      this.reapQueued = true;
      setImmediate(this.reapBound);
    }
  };

  private constructor(engine: Engine, lanes: number, maxLength: number, fallbackReason: string | undefined, poll: boolean) {
    this.engine = engine;
    this.lanes = lanes;
    this.size = engine.size;
    this.sectorSize = Math.max(512, engine.blockSize);
    this.maxLength = maxLength;
    this.fallbackReason = fallbackReason;
    this.poll = poll && engine.reap !== undefined;
    if (this.poll) {
      engine.setEventLoopNotify?.(false);
      engine.setSubmitEach?.(true);
    }
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
    const opened = await openEngine(spec, { engine: o.engine ?? 'auto', queueDepth: o.queueDepth });
    return new LocalTarget(opened.engine, o.lanes, o.maxLength, opened.fallbackReason, o.poll ?? false);
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
    // While polling, the engine issues it (submitEach); otherwise kick at the end of the tick.
    if (!this.kickQueued && !this.reaping) {
      this.kickQueued = true;
      queueMicrotask(this.kickBound);
    }
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}
