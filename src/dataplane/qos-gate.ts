/**
 * The QoS scheduler as the data plane's gate: requests wait in per-tenant
 * queues and reach the engine when their tenant's tokens allow.
 *
 * A tenant's connections may land on several workers (the kernel spreads
 * them), so each worker runs the tenant at a share of its rate proportional
 * to the tenant's connections on this worker (`rebalance`). Spare best-effort
 * capacity moves between workers through the global bucket.
 */
import { requestCost, type CostModel } from '../qos/cost.ts';
import { GlobalBucket } from '../qos/global-bucket.ts';
import { Scheduler, type SchedTenant } from '../qos/scheduler.ts';
import type { Gate } from './data-plane.ts';
import type { DpRequest } from './request.ts';

export interface GateTenant {
  kind: 'LC' | 'BE';
  /** Tokens/s for the whole server. */
  rate: number;
}

export class QosGate implements Gate {
  private readonly sched: Scheduler<DpRequest>;
  private readonly handles: SchedTenant[] = [];
  private readonly cost: CostModel;
  private tenants: GateTenant[];

  constructor(opts: { cost: CostModel; bucket: SharedArrayBuffer; workerIndex: number; tenants: GateTenant[]; nowMs: number }) {
    this.cost = opts.cost;
    this.tenants = opts.tenants;
    this.sched = new Scheduler<DpRequest>({
      readCost4k: opts.cost.readCost4k,
      writeCost4k: opts.cost.writeCost4k,
      bucket: new GlobalBucket(opts.bucket),
      workerIndex: opts.workerIndex,
      nowNs: opts.nowMs * 1e6,
    });
    opts.tenants.forEach((t, id) => this.handles.push(this.sched.addTenant({ id, kind: t.kind, rateTokensPerSec: 0 })));
  }

  enqueue(req: DpRequest): void {
    req.cost = requestCost(this.cost, req.op, req.length);
    this.sched.enqueueTenant(this.handles[req.tenant], req, req.cost);
  }

  round(nowMs: number, issue: (req: DpRequest) => void): number {
    return this.sched.round(nowMs * 1e6, issue);
  }

  get queued(): number {
    return this.sched.queued();
  }

  /** New server-wide rates from the control plane. */
  setRates(rates: number[]): void {
    this.tenants = this.tenants.map((t, i) => ({ ...t, rate: rates[i] ?? t.rate }));
  }

  /** Applies this worker's share of each tenant's rate, from connection counts. */
  rebalance(localConns: (t: number) => number, totalConns: (t: number) => number, workers: number): void {
    for (let t = 0; t < this.tenants.length; t++) {
      const total = totalConns(t);
      // A tenant with no connection anywhere is idle on every worker: spreading
      // its rate evenly lets each worker's scheduler pass it on to BE tenants.
      const share = total > 0 ? Math.max(0, localConns(t)) / total : 1 / workers;
      this.sched.setRate(t, this.tenants[t].rate * share);
    }
  }
}
