/**
 * Pushes this server's stats to a cluster controller: every interval, one
 * HTTP POST of JSON (what GET /api/stats returns, without the charts'
 * five-minute series, plus who this server is). ReFlex's monitoring branch
 * did the same over its own channel; a controller that places tenants
 * across servers wants each server's load without polling every one.
 *
 * - Off the data path entirely: it reads the control plane's sampled
 *   counters on the main thread.
 * - One POST at a time: a tick that finds the previous one still running
 *   is skipped (a slow controller gets fewer pushes, never a pile-up), and
 *   each POST gives up after the interval or 5 s, whichever is shorter.
 *   Stopping aborts a POST in flight, so a hung controller never holds up
 *   a server's shutdown.
 * - Nothing it meets (a throwing snapshot, a network error) escapes as an
 *   exception: it is counted and logged like a failed push.
 * - A failing controller is reported once when it starts failing and once
 *   when it recovers, not every tick.
 */
import type { StatsView, TenantStatsView } from './admin-stats.ts';

export interface PushTarget {
  url: string;
  intervalMs: number;
}

export interface PushState {
  sent: number;
  failed: number;
  skipped: number;
  lastError: string | null;
  lastSuccessAt: number | null;
}

/** Sends one body; resolves to the HTTP status, rejects on a network error, a timeout or `abort`. */
export type Poster = (url: string, body: string, timeoutMs: number, abort: AbortSignal) => Promise<number>;

const fetchPoster: Poster = async (url, body, timeoutMs, abort) => {
  const signal = AbortSignal.any([abort, AbortSignal.timeout(timeoutMs)]);
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal });
  // Drain the answer so the connection can be reused.
  await r.arrayBuffer();
  return r.status;
};

export class StatsPusher {
  readonly state: PushState = { sent: 0, failed: 0, skipped: 0, lastError: null, lastSuccessAt: null };
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private readonly stopping = new AbortController();
  private failing = false;
  private readonly target: PushTarget;
  private readonly snapshot: () => unknown;
  private readonly post: Poster;
  private readonly log: (line: string) => void;

  constructor(target: PushTarget, snapshot: () => unknown, opts: { post?: Poster; log?: (line: string) => void } = {}) {
    this.target = target;
    this.snapshot = snapshot;
    this.post = opts.post ?? fetchPoster;
    this.log = opts.log ?? ((line) => console.error(line));
  }

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => void this.tick(), this.target.intervalMs);
    // Pushing never keeps a server process alive by itself.
    this.timer.unref();
  }

  /** Stops the ticks and aborts a POST in flight. */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.stopping.abort();
    await this.inFlight;
  }

  /** One push now (skipped if one is running); resolves when it is done. */
  tick(): Promise<void> {
    if (this.inFlight !== null) {
      this.state.skipped++;
      return this.inFlight;
    }
    this.inFlight = this.pushOnce().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  private async pushOnce(): Promise<void> {
    if (this.stopping.signal.aborted) return;
    const timeoutMs = Math.min(this.target.intervalMs, 5000);
    let problem: string | null = null;
    try {
      const body = JSON.stringify(this.snapshot());
      const status = await this.post(this.target.url, body, timeoutMs, this.stopping.signal);
      if (status < 200 || status >= 300) problem = `HTTP ${status}`;
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      problem = e.cause?.code ?? e.cause?.message ?? e.message;
    }
    if (problem === null) {
      this.state.sent++;
      this.state.lastSuccessAt = Date.now();
      if (this.failing) this.log(`stats push to ${this.target.url}: working again`);
      this.failing = false;
      return;
    }
    this.state.failed++;
    this.state.lastError = problem;
    if (!this.failing) this.log(`stats push to ${this.target.url} failed: ${problem} (retrying every ${this.target.intervalMs} ms; reported again when it works)`);
    this.failing = true;
  }
}

/** Who is pushing: enough for a controller to tell servers apart and reach them. */
export interface ServerIdentity {
  id: string;
  host: string;
  ports: number[];
  nbdPort: number | null;
  attachPort: number | null;
  adminPort: number | null;
  startedAt: number;
}

/** The pushed document: the stats view without its per-second series (a controller keeps its own history). */
export function pushPayload(server: ServerIdentity, view: StatsView): PushedStats {
  return { server, ...view, tenants: view.tenants.map(({ series: _series, ...rest }) => rest) };
}

export type PushedStats = Omit<StatsView, 'tenants'> & { server: ServerIdentity; tenants: Array<Omit<TenantStatsView, 'series'>> };
