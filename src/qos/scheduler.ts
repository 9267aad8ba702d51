/**
 * The per-worker ReFlex QoS scheduler. Pure: time comes in as `nowNs`,
 * decisions go out through the `issue` callback; no clock, no I/O. The same
 * code runs under the data plane's real clock and the simulator's virtual one.
 *
 * Units: rates in tokens per second, costs in tokens (src/qos/cost.ts),
 * time in nanoseconds (a plain number: 2^53 ns is 104 days).
 *
 * One round (`round(nowNs, issue)`), dt = nowNs − previous round:
 *
 * 1. LC sub-round. Each active LC tenant's credit grows by rate × dt. Queued
 *    requests are issued, oldest first, while credit > −(deficit limit),
 *    the larger of deficitLimit (default 100 × write cost, ReFlex's choice)
 *    and lcBurstSec (default 100 ms) of the tenant's own rate, so an LC
 *    tenant may run a little ahead of its rate. If credit then exceeds 3 × this round's increment, 90% of the
 *    credit goes to the round's leftover pool (ReFlex's giveaway): unused
 *    reservation becomes BE capacity.
 * 2. BE sub-round. Each active BE tenant holds rate × dt plus its saved
 *    tokens; its need is what its queued demand exceeds that by. If the
 *    total need exceeds the leftover pool, the shortfall is taken from the
 *    global bucket; a surplus is put there. Tenants are then served
 *    round-robin, the start moving one tenant per round: each receives
 *    min(need, pool left), issues while its head request's cost fits, and
 *    saves what it could not spend, capped at its remaining queued demand.
 *    Tokens a tenant cannot keep (its queue emptied) go back to the bucket.
 * 3. Spare to LC. Tokens still in the pool after the BE sub-round (idle
 *    tenants' rates, BE surplus) go to LC tenants that still have queued
 *    requests: an LC objective is a floor, not a cap, and Poisson arrivals
 *    at exactly the reserved rate would otherwise queue without bound. What
 *    is left then goes to the global bucket.
 * 4. `bucket.endRound(workerIndex)`; see global-bucket.ts for the reset rule.
 *
 * Scale: a round touches only *active* tenants (queued work, or an LC tenant
 * still in deficit), through two active lists with O(1) removal. Idle
 * tenants are accounted lazily and in aggregate: the sum of idle tenants'
 * rates × dt goes straight to the leftover pool each round (an idle LC
 * tenant would give its whole increment away; an idle BE tenant has no
 * demand), and an idle tenant's own credit stays frozen until it becomes
 * active again, from which point it accrues like any active tenant. Round
 * cost therefore does not grow with registered-but-idle tenants.
 *
 * Decisions:
 * - dt is capped at maxRoundNs (default 10 ms): a worker that stalled does
 *   not come back with a burst of catch-up credit. The data plane runs
 *   rounds when work arrives, and a loaded event loop delivers it in bunches
 *   a few ms apart; a cap near 1 ms would silently take most of an LC
 *   tenant's reservation away (test/unit/qos-spare-to-lc.test.ts).
 * - An LC tenant whose queue empties while in deficit stays active until
 *   its credit is back to ≥ 0, so it repays the burst before its rate flows
 *   to BE again.
 * - removeTenant returns the tenant's queued items, oldest first; the caller
 *   fails them (ECANCELED) or re-queues them elsewhere.
 * - Pass-through mode (qos: false, for `--no-qos`): round() issues every
 *   queued item, tenants in round-robin order, ignoring rates and credit.
 */
import { assert } from '../util/assert.ts';
import type { GlobalBucket } from './global-bucket.ts';
import { CostQueue } from './ring-queue.ts';

export type TenantKind = 'LC' | 'BE';

/** Per-tenant state, created by Scheduler.addTenant. Read-only to callers. */
export interface SchedTenant {
  readonly id: number;
  readonly kind: TenantKind;
  readonly rateTokensPerSec: number;
  /** LC: credit (may be negative, ≥ −deficitLimit − one request). BE: saved tokens. */
  readonly credit: number;
  /** Requests queued. */
  readonly queued: number;
  /** Sum of the costs of queued requests. */
  readonly queuedCost: number;
  /** Requests issued since creation. */
  readonly issuedCount: number;
  /** Tokens issued since creation. */
  readonly issuedCost: number;
}

class Tenant<T> implements SchedTenant {
  readonly id: number;
  readonly kind: TenantKind;
  readonly isLc: boolean;
  rateTokensPerSec: number;
  credit = 0;
  readonly queue: CostQueue<T> = new CostQueue<T>(8);
  /** Index in its active list, −1 when idle. */
  activeIdx = -1;
  issuedCount = 0;
  issuedCost = 0;
  removed = false;

  constructor(id: number, kind: TenantKind, rate: number) {
    this.id = id;
    this.kind = kind;
    this.isLc = kind === 'LC';
    this.rateTokensPerSec = rate;
  }

  get queued(): number {
    return this.queue.length;
  }

  get queuedCost(): number {
    return this.queue.totalCost;
  }
}

export interface SchedulerOptions {
  readCost4k: number;
  writeCost4k: number;
  /** LC tenants may issue while credit > −deficitLimit. Default 100 × writeCost4k. */
  deficitLimit?: number;
  /**
   * An LC tenant may also run this many seconds of its own rate ahead
   * (whichever allowance is larger). Default 0.1 s, or 0 when deficitLimit
   * is given explicitly.
   */
  lcBurstSec?: number;
  /** Shared BE bucket; null for a worker that shares with no one (surplus is dropped). */
  bucket: GlobalBucket | null;
  workerIndex: number;
  nowNs: number;
  /** false: pass-through, no rate control (`--no-qos`). Default true. */
  qos?: boolean;
  /** Longest dt a round accounts for. Default 10 ms. */
  maxRoundNs?: number;
}

/** ReFlex's giveaway: credit above GIVEAWAY_THRESHOLD × increment loses this fraction. */
const GIVEAWAY_THRESHOLD = 3;
const GIVEAWAY_FRACTION = 0.9;

export class Scheduler<T> {
  readonly readCost4k: number;
  readonly writeCost4k: number;
  readonly deficitLimit: number;
  readonly lcBurstSec: number;
  readonly qos: boolean;
  private readonly bucket: GlobalBucket | null;
  private readonly workerIndex: number;
  private readonly maxRoundNs: number;
  private readonly tenants = new Map<number, Tenant<T>>();
  private readonly activeLc: Tenant<T>[] = [];
  private readonly activeBe: Tenant<T>[] = [];
  private readonly retire: Tenant<T>[] = [];
  private idleLcRate = 0;
  private idleBeRate = 0;
  private idleCount = 0;
  private lastNs: number;
  private rr = 0;
  private totalQueued = 0;
  /** Tokens issued by this scheduler since creation. */
  issuedCost = 0;
  /** Tokens taken from / put into the global bucket since creation. */
  bucketTaken = 0;
  bucketPut = 0;

  constructor(opts: SchedulerOptions) {
    assert(opts.readCost4k > 0 && opts.writeCost4k > 0, 'Scheduler: costs must be positive');
    this.readCost4k = opts.readCost4k;
    this.writeCost4k = opts.writeCost4k;
    this.deficitLimit = opts.deficitLimit ?? 100 * opts.writeCost4k;
    this.lcBurstSec = opts.lcBurstSec ?? (opts.deficitLimit !== undefined ? 0 : 0.1);
    assert(this.deficitLimit >= 0, 'Scheduler: deficitLimit must be ≥ 0');
    this.bucket = opts.bucket;
    this.workerIndex = opts.workerIndex;
    this.qos = opts.qos ?? true;
    this.maxRoundNs = opts.maxRoundNs ?? 10_000_000;
    this.lastNs = opts.nowNs;
  }

  /** Registers a tenant on this worker. Ids are unique per scheduler. */
  addTenant(t: { id: number; kind: TenantKind; rateTokensPerSec: number }): SchedTenant {
    assert(!this.tenants.has(t.id), `Scheduler: tenant ${t.id} already added`);
    assert(t.kind === 'LC' || t.kind === 'BE', `Scheduler: bad kind ${String(t.kind)}`);
    assert(Number.isFinite(t.rateTokensPerSec) && t.rateTokensPerSec >= 0, 'Scheduler: rate must be ≥ 0');
    const tenant = new Tenant<T>(t.id, t.kind, t.rateTokensPerSec);
    this.tenants.set(t.id, tenant);
    this.addIdle(tenant);
    return tenant;
  }

  tenant(id: number): SchedTenant | undefined {
    return this.tenants.get(id);
  }

  get tenantCount(): number {
    return this.tenants.size;
  }

  setRate(id: number, rateTokensPerSec: number): void {
    const t = this.mustGet(id);
    assert(Number.isFinite(rateTokensPerSec) && rateTokensPerSec >= 0, 'Scheduler: rate must be ≥ 0');
    if (t.activeIdx < 0) {
      this.removeIdle(t);
      t.rateTokensPerSec = rateTokensPerSec;
      this.addIdle(t);
    } else {
      t.rateTokensPerSec = rateTokensPerSec;
    }
  }

  /** Forgets a tenant; returns its queued items, oldest first, for the caller to fail. */
  removeTenant(id: number): T[] {
    const t = this.mustGet(id);
    if (t.activeIdx >= 0) this.deactivate(t);
    this.removeIdle(t);
    this.tenants.delete(id);
    t.removed = true;
    this.totalQueued -= t.queue.length;
    return t.queue.drain();
  }

  enqueue(id: number, item: T, costTokens: number): void {
    this.enqueueTenant(this.mustGet(id), item, costTokens);
  }

  /** As enqueue, with the handle from addTenant (saves a Map lookup). */
  enqueueTenant(handle: SchedTenant, item: T, costTokens: number): void {
    const t = handle as Tenant<T>;
    if (t.removed) assert(false, `Scheduler: tenant ${t.id} was removed`);
    assert(costTokens >= 0 && Number.isFinite(costTokens), 'Scheduler: cost must be ≥ 0');
    t.queue.push(item, costTokens);
    this.totalQueued++;
    if (t.activeIdx < 0) {
      // Idle accrual was pooled up to the last round; from here on it is the tenant's own.
      this.removeIdle(t);
      const list = t.isLc ? this.activeLc : this.activeBe;
      t.activeIdx = list.length;
      list.push(t);
    }
  }

  queued(): number {
    return this.totalQueued;
  }

  /** Active tenants (queued work, or LC in deficit): what a round touches. */
  activeCount(): number {
    return this.activeLc.length + this.activeBe.length;
  }

  /** Runs one round at `nowNs` (must not go backwards); returns requests issued. */
  round(nowNs: number, issue: (item: T) => void): number {
    if (nowNs < this.lastNs) assert(false, `Scheduler.round: time went backwards (${nowNs} < ${this.lastNs})`);
    const dtNs = Math.min(nowNs - this.lastNs, this.maxRoundNs);
    this.lastNs = nowNs;
    if (!this.qos) return this.passThrough(issue);
    const dtSec = dtNs / 1e9;
    let leftover = (this.idleLcRate + this.idleBeRate) * dtSec;
    let issued = 0;
    const retire = this.retire;

    // 1. LC sub-round.
    const lc = this.activeLc;
    const deficit = this.deficitLimit;
    const burst = this.lcBurstSec;
    for (let i = 0; i < lc.length; i++) {
      const t = lc[i];
      const inc = t.rateTokensPerSec * dtSec;
      let credit = t.credit + inc;
      const q = t.queue;
      // The allowance to run ahead: ReFlex's 100 writes, or 100 ms of the
      // tenant's own rate when that is larger. Poisson arrivals at the
      // reserved rate wander by about sqrt(rate × t) requests; with a cheap
      // write cost (a calibrated device whose writes cost what reads do) 100
      // writes is only 100 reads, and the tenant would queue all the time.
      const inc2 = t.rateTokensPerSec * burst;
      const floor = -(inc2 > deficit ? inc2 : deficit);
      while (q.length > 0 && credit > floor) {
        const cost = q.headCost();
        const item = q.shift();
        credit -= cost;
        t.issuedCount++;
        t.issuedCost += cost;
        this.issuedCost += cost;
        issued++;
        issue(item);
      }
      if (credit > GIVEAWAY_THRESHOLD * inc && credit > 0) {
        const give = GIVEAWAY_FRACTION * credit;
        leftover += give;
        credit -= give;
      }
      t.credit = credit;
    }
    this.totalQueued -= issued;

    // 2. BE sub-round.
    const be = this.activeBe;
    const n = be.length;
    let pool = leftover;
    if (n > 0) {
      let need = 0;
      for (let i = 0; i < n; i++) {
        const t = be[i];
        t.credit += t.rateTokensPerSec * dtSec;
        const d = t.queue.totalCost - t.credit;
        if (d > 0) need += d;
      }
      if (this.bucket !== null) {
        if (need > pool) {
          const got = this.bucket.take(need - pool);
          this.bucketTaken += got;
          pool += got;
        } else {
          this.putBack(pool - need);
          pool = need;
        }
      }
      let unspent = 0;
      let beIssued = 0;
      const start = this.rr++ % n;
      for (let k = 0; k < n; k++) {
        const t = be[(start + k) % n];
        const q = t.queue;
        const d = q.totalCost - t.credit;
        let budget = t.credit;
        if (d > 0) {
          const give = d < pool ? d : pool;
          pool -= give;
          budget += give;
        }
        while (q.length > 0) {
          const cost = q.headCost();
          if (cost > budget) break;
          const item = q.shift();
          budget -= cost;
          t.issuedCount++;
          t.issuedCost += cost;
          this.issuedCost += cost;
          beIssued++;
          issue(item);
        }
        const keep = q.totalCost < budget ? q.totalCost : budget;
        unspent += budget - keep;
        t.credit = keep;
        if (q.length === 0) retire.push(t);
      }
      this.totalQueued -= beIssued;
      issued += beIssued;
      pool += unspent;
    }

    // 3. Spare to LC tenants still waiting. Capacity nobody used this round
    //    (idle tenants' rates, BE surplus) lets an LC tenant run past its own
    //    rate instead of queueing: its reservation is a floor, not a cap, and
    //    the total stays within the device rate. Arrivals at exactly the
    //    reserved rate would otherwise queue without bound.
    let spareIssued = 0;
    for (let i = 0; i < lc.length && pool >= 1; i++) {
      const t = lc[i];
      const q = t.queue;
      while (q.length > 0) {
        const cost = q.headCost();
        if (cost > pool) break;
        const item = q.shift();
        pool -= cost;
        t.issuedCount++;
        t.issuedCost += cost;
        this.issuedCost += cost;
        spareIssued++;
        issue(item);
      }
    }
    this.totalQueued -= spareIssued;
    issued += spareIssued;
    for (let i = 0; i < lc.length; i++) if (lc[i].queue.length === 0 && lc[i].credit >= 0) retire.push(lc[i]);
    if (this.bucket !== null) this.putBack(pool);

    for (let i = 0; i < retire.length; i++) this.deactivate(retire[i]);
    retire.length = 0;
    if (this.bucket !== null) this.bucket.endRound(this.workerIndex);
    assert(this.totalQueued >= 0, 'Scheduler: queued count went negative');
    return issued;
  }

  private putBack(tokens: number): void {
    if (tokens < 1) return;
    this.bucket!.put(tokens);
    this.bucketPut += Math.floor(tokens);
  }

  private passThrough(issue: (item: T) => void): number {
    let issued = 0;
    for (const list of [this.activeLc, this.activeBe]) {
      const n = list.length;
      const start = n === 0 ? 0 : this.rr % n;
      for (let k = 0; k < n; k++) {
        const t = list[(start + k) % n];
        const q = t.queue;
        while (q.length > 0) {
          const cost = q.headCost();
          const item = q.shift();
          t.issuedCount++;
          t.issuedCost += cost;
          this.issuedCost += cost;
          issued++;
          issue(item);
        }
      }
      while (list.length > 0) this.deactivate(list[list.length - 1]);
    }
    this.rr++;
    this.totalQueued -= issued;
    return issued;
  }

  private mustGet(id: number): Tenant<T> {
    const t = this.tenants.get(id);
    if (t === undefined) throw new RangeError(`Scheduler: no tenant ${id}`);
    return t;
  }

  /** Takes a tenant off its active list (O(1) swap-remove) and into the idle aggregate. */
  private deactivate(t: Tenant<T>): void {
    const list = t.isLc ? this.activeLc : this.activeBe;
    const i = t.activeIdx;
    assert(i >= 0 && list[i] === t, 'Scheduler: active list corrupt');
    const last = list.pop()!;
    if (last !== t) {
      list[i] = last;
      last.activeIdx = i;
    }
    t.activeIdx = -1;
    if (!t.isLc) t.credit = 0;
    this.addIdle(t);
  }

  private addIdle(t: Tenant<T>): void {
    if (t.isLc) this.idleLcRate += t.rateTokensPerSec;
    else this.idleBeRate += t.rateTokensPerSec;
    this.idleCount++;
  }

  private removeIdle(t: Tenant<T>): void {
    if (t.activeIdx >= 0) return;
    if (t.isLc) this.idleLcRate -= t.rateTokensPerSec;
    else this.idleBeRate -= t.rateTokensPerSec;
    this.idleCount--;
    // Repeated float add/subtract drifts; with nobody idle the sums are exactly zero.
    if (this.idleCount === 0) {
      this.idleLcRate = 0;
      this.idleBeRate = 0;
    }
  }
}
