/**
 * Adaptive receive coalescing: software interrupt moderation for a worker.
 *
 * A client that pipelines (fio's nbd engine, most NBD clients) sends one
 * request per segment, so a worker that answers each as it lands pays a
 * wake-up, a read, a write and an epoll_wait per request: on this kind of
 * VM ~10 µs of CPU, almost all of it kernel. Sleeping a few tens of µs
 * after a turn that carried several requests lets the next ones pile up in
 * the socket; the next turn takes them with one read and answers with one
 * write. Measured with fio's nbd engine at depth 32: server CPU per request
 * roughly halves and IOPS do not drop (the client gets its replies in
 * batches too).
 *
 * The policy is the part that decides, and it only looks at how many
 * requests the turn carried: a turn with at least two (concurrency: a
 * pipelining client, or several clients) is followed by a sleep; a turn
 * with one or none is not. So a lone client at depth 1 (one request per
 * turn, the next only after our reply) never waits, and as soon as a sleep
 * gathers at most one request the worker stops sleeping. Polling workers
 * (`--poll`) never coalesce: they trade a core for the lowest latency.
 *
 * A sleep delays whatever arrives during it, latency-critical requests
 * included, so it is capped at LC_SHARE of the strictest p95 objective among
 * the registered LC tenants: a 1.5 ms objective leaves the default 40 µs
 * alone, a 200 µs one cuts the sleep to 10 µs.
 */

import { WORKER_FIELD_COUNT, WorkerField } from './worker-stats.ts';

/** Largest part of an LC tenant's p95 objective a coalescing sleep may take. */
export const LC_SHARE = 0.05;

/** The strictest (smallest) p95 objective among LC tenants, or null when there are none. */
export function strictestObjective(tenants: ReadonlyArray<{ p95Us: number | null }>): number | null {
  let min: number | null = null;
  for (const t of tenants) if (t.p95Us !== null && (min === null || t.p95Us < min)) min = t.p95Us;
  return min;
}

export class CoalescingPolicy {
  private requests = 0;
  /** The configured sleep. */
  readonly sleepUs: number;
  /** The sleep in force: sleepUs, or less under an LC objective. */
  effectiveUs: number;

  /** `sleepUs` 0 turns coalescing off. */
  constructor(sleepUs: number) {
    this.sleepUs = sleepUs;
    this.effectiveUs = sleepUs;
  }

  /** The strictest p95 objective (µs) among LC tenants, or null for none. */
  setStrictestObjective(p95Us: number | null): void {
    this.effectiveUs = p95Us === null ? this.sleepUs : Math.min(this.sleepUs, Math.floor(p95Us * LC_SHARE));
  }

  /** A request entered the data plane during this turn. */
  noteRequest(): void {
    this.requests++;
  }

  /** End of a turn that sent replies: µs to sleep before polling again (0: none). */
  endTurn(): number {
    const n = this.requests;
    this.requests = 0;
    return n >= 2 ? this.effectiveUs : 0;
  }
}

/**
 * The shell around the policy for one worker thread: one end-of-turn check
 * per event-loop turn (a setImmediate, so it runs after every socket that
 * was readable in the turn), and the sleep itself. Shared by all of the
 * worker's data planes.
 */
export class Coalescer {
  readonly policy: CoalescingPolicy;
  private readonly sleep: (us: number) => void;
  private queued = false;
  /** Counters (WorkerField order): the worker's shared row, or a private one. */
  private readonly stats: Float64Array;
  private readonly endTurnBound = (): void => {
    this.queued = false;
    const us = this.policy.endTurn();
    this.stats[WorkerField.COALESCE_CHECKS]++;
    if (us > 0) {
      this.stats[WorkerField.COALESCE_SLEEPS]++;
      this.stats[WorkerField.COALESCE_SLEPT_US] += us;
      this.sleep(us);
    }
  };

  constructor(sleepUs: number, sleep: (us: number) => void, stats: Float64Array = new Float64Array(WORKER_FIELD_COUNT)) {
    this.policy = new CoalescingPolicy(sleepUs);
    this.sleep = sleep;
    this.stats = stats;
  }

  /** Sleeps taken since creation. */
  get sleeps(): number {
    return this.stats[WorkerField.COALESCE_SLEEPS];
  }

  /** µs slept since creation. */
  get sleptUs(): number {
    return this.stats[WorkerField.COALESCE_SLEPT_US];
  }

  noteRequest(): void {
    this.policy.noteRequest();
  }

  /** Replies went out this turn: check, once, at the turn's end. */
  noteFlush(): void {
    if (this.queued) return;
    this.queued = true;
    setImmediate(this.endTurnBound);
  }
}
