/**
 * The QoS scheduler as one device's gate: requests wait in per-tenant queues
 * and reach the engine when their tenant's tokens allow.
 *
 * A tenant's connections may land on several workers (the kernel spreads
 * them), so each worker runs the tenant at a share of its rate proportional
 * to the tenant's connections on this worker (`rebalance`). Spare best-effort
 * capacity moves between workers through the global bucket.
 *
 * Tenants come and go at run time (`sync`): the control plane posts the
 * whole tenant list after every change.
 */
import { requestCost, type CostModel } from '../qos/cost.ts';
import { GlobalBucket } from '../qos/global-bucket.ts';
import { Scheduler, type SchedTenant } from '../qos/scheduler.ts';
import type { Gate } from './data-plane.ts';
import type { DpRequest } from './request.ts';

export interface GateTenant {
  id: number;
  kind: 'LC' | 'BE';
  /** Tokens/s for the whole server. */
  rate: number;
}

export class QosGate implements Gate {
  private readonly sched: Scheduler<DpRequest>;
  /** Scheduler handle by tenant id (sparse). */
  private readonly handles: Array<SchedTenant | undefined> = [];
  private readonly cost: CostModel;
  private tenants = new Map<number, GateTenant>();

  constructor(opts: { cost: CostModel; bucket: SharedArrayBuffer; workerIndex: number; nowMs: number }) {
    this.cost = opts.cost;
    this.sched = new Scheduler<DpRequest>({
      readCost4k: opts.cost.readCost4k,
      writeCost4k: opts.cost.writeCost4k,
      bucket: new GlobalBucket(opts.bucket),
      workerIndex: opts.workerIndex,
      nowNs: opts.nowMs * 1e6,
    });
  }

  enqueue(req: DpRequest): void {
    req.cost = requestCost(this.cost, req.op, req.length);
    const h = this.handles[req.tenant];
    if (h === undefined) throw new Error(`QosGate: tenant ${req.tenant} is not on this device`);
    this.sched.enqueueTenant(h, req, req.cost);
  }

  has(tenant: number): boolean {
    return this.handles[tenant] !== undefined;
  }

  round(nowMs: number, issue: (req: DpRequest) => void): number {
    return this.sched.round(nowMs * 1e6, issue);
  }

  get queued(): number {
    return this.sched.queued();
  }

  /** Requests of one tenant waiting here. */
  queuedOf(tenant: number): number {
    return this.handles[tenant]?.queued ?? 0;
  }

  /**
   * Makes the gate's tenants exactly `list`. Returns the queued requests of
   * tenants that are gone, for the caller to fail. A tenant that changed
   * class keeps its queued requests: they move, in order, to its new queue.
   */
  sync(list: GateTenant[]): DpRequest[] {
    const orphans: DpRequest[] = [];
    const moved: DpRequest[] = [];
    const next = new Map<number, GateTenant>();
    for (const t of list) next.set(t.id, t);
    for (const [id, old] of this.tenants) {
      const now = next.get(id);
      if (now === undefined || now.kind !== old.kind) {
        (now === undefined ? orphans : moved).push(...this.sched.removeTenant(id));
        this.handles[id] = undefined;
      }
    }
    for (const t of list) {
      if (this.handles[t.id] === undefined) this.handles[t.id] = this.sched.addTenant({ id: t.id, kind: t.kind, rateTokensPerSec: 0 });
    }
    this.tenants = next;
    for (const req of moved) this.enqueue(req);
    return orphans;
  }

  /** Applies this worker's share of each tenant's rate, from connection counts. */
  rebalance(localConns: (t: number) => number, totalConns: (t: number) => number, workers: number): void {
    for (const t of this.tenants.values()) {
      const total = totalConns(t.id);
      // A tenant with no connection anywhere is idle on every worker: spreading
      // its rate evenly lets each worker's scheduler pass it on to BE tenants.
      const share = total > 0 ? Math.max(0, localConns(t.id)) / total : 1 / workers;
      this.sched.setRate(t.id, t.rate * share);
    }
  }
}
