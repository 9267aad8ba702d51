/**
 * Deterministic QoS simulation: open-loop (Poisson) and closed-loop tenants
 * -> per-worker schedulers sharing one global bucket -> a simulated SSD,
 * all on one virtual clock. Same seed, same result.
 *
 * Time advances in scheduler rounds of `roundNs`. Within a round, arrivals
 * and completions happen at their exact times (latency is measured from
 * arrival to completion, scheduler queueing included); requests are issued
 * at the round boundary, as a data-plane worker polling every `roundNs` would.
 */
import { TenantRegistry, type TenantSpec } from '../../src/qos/admission.ts';
import { requestCost, CostOp } from '../../src/qos/cost.ts';
import type { DeviceModel } from '../../src/qos/device-model.ts';
import { GlobalBucket } from '../../src/qos/global-bucket.ts';
import { Scheduler, type SchedTenant } from '../../src/qos/scheduler.ts';
import { newRequest, Op, type IoRequest } from '../../src/storage/engine.ts';
import { SeededRandom, SimulatedSsd, type SimulatedSsdOptions } from '../../src/storage/simulated-ssd.ts';

export type Load =
  | { type: 'poisson'; iops: number; readPct: number }
  | { type: 'closed'; depth: number; readPct: number };

export interface SimTenant {
  id: number;
  /** Objective registered through admission (LC) or BE. */
  spec: TenantSpec;
  load: Load;
  worker?: number;
  bytes?: number;
}

export interface SimOptions {
  model: DeviceModel;
  tenants: SimTenant[];
  qos: boolean;
  durationNs: number;
  /** Latencies and throughput are measured after this. */
  warmupNs?: number;
  roundNs?: number;
  workers?: number;
  seed?: number;
  ssd?: SimulatedSsdOptions;
}

export interface TenantResult {
  id: number;
  completed: number;
  iops: number;
  readIops: number;
  /** tokens/s of completed requests. */
  tokensPerSec: number;
  readP95Us: number;
  writeP95Us: number;
  offered: number;
  rate: number;
}

export interface SimResult {
  tenants: Map<number, TenantResult>;
  deviceRate: number;
  /** tokens/s completed by all tenants in the measured window. */
  totalTokensPerSec: number;
  maxQueued: number;
}

interface Ctx {
  tenant: number;
  arrivalNs: number;
  cost: number;
}

interface TenantState {
  sim: SimTenant;
  handle: SchedTenant | null;
  sched: Scheduler<IoRequest>;
  nextArrivalNs: number;
  readLat: number[];
  writeLat: number[];
  completed: number;
  reads: number;
  tokens: number;
  offered: number;
  rate: number;
}

function p95(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(0.95 * sorted.length))];
}

export function runSimulation(opts: SimOptions): SimResult {
  const roundNs = opts.roundNs ?? 10_000;
  const warmupNs = opts.warmupNs ?? 0;
  const nWorkers = opts.workers ?? 1;
  const rng = new SeededRandom(opts.seed ?? 42);
  const ssd = new SimulatedSsd({ storeData: false, seed: (opts.seed ?? 42) + 1, ...opts.ssd });
  const model = opts.model;

  const registry = new TenantRegistry<number>(model);
  for (const t of opts.tenants) {
    const r = registry.register(t.id, t.spec);
    if (!r.admitted) throw new Error(`simulation tenant ${t.id} refused: ${r.reason}`);
  }
  const rates = registry.rates();
  const bucket = GlobalBucket.create(nWorkers);
  const scheds: Scheduler<IoRequest>[] = [];
  for (let w = 0; w < nWorkers; w++) {
    scheds.push(
      new Scheduler<IoRequest>({
        readCost4k: model.readCost4k,
        writeCost4k: model.writeCost4k,
        bucket,
        workerIndex: w,
        nowNs: 0,
        qos: opts.qos,
      }),
    );
  }

  const states = new Map<number, TenantState>();
  for (const t of opts.tenants) {
    const sched = scheds[t.worker ?? 0];
    const rate = rates.get(t.id)!;
    const handle = sched.addTenant({ id: t.id, kind: t.spec.kind, rateTokensPerSec: rate });
    states.set(t.id, {
      sim: t,
      handle,
      sched,
      nextArrivalNs: t.load.type === 'poisson' ? rng.exp(1e9 / t.load.iops) : Infinity,
      readLat: [],
      writeLat: [],
      completed: 0,
      reads: 0,
      tokens: 0,
      offered: 0,
      rate,
    });
  }

  const blocks = Math.floor(ssd.size / 4096);
  const arrive = (st: TenantState, atNs: number): void => {
    const req = newRequest();
    const isRead = rng.next() * 100 < st.sim.load.readPct;
    req.op = isRead ? Op.READ : Op.WRITE;
    req.length = st.sim.bytes ?? 4096;
    req.offset = Math.floor(rng.next() * (blocks - 256)) * 4096;
    const cost = requestCost(model, isRead ? CostOp.READ : CostOp.WRITE, req.length);
    req.ctx = { tenant: st.sim.id, arrivalNs: atNs, cost } satisfies Ctx;
    if (atNs >= warmupNs) st.offered++;
    st.sched.enqueueTenant(st.handle!, req, cost);
  };

  ssd.onComplete = (req) => {
    const ctx = req.ctx as Ctx;
    const st = states.get(ctx.tenant)!;
    const now = ssd.nowNs;
    if (ctx.arrivalNs >= warmupNs && now <= opts.durationNs) {
      const latUs = (now - ctx.arrivalNs) / 1000;
      st.completed++;
      st.tokens += ctx.cost;
      if (req.op === Op.READ) {
        st.reads++;
        st.readLat.push(latUs);
      } else st.writeLat.push(latUs);
    }
    if (st.sim.load.type === 'closed') arrive(st, now);
  };

  for (const st of states.values()) {
    if (st.sim.load.type === 'closed') for (let i = 0; i < st.sim.load.depth; i++) arrive(st, 0);
  }

  const submit = (req: IoRequest): void => ssd.submit(req);
  let maxQueued = 0;
  let roundNo = 0;
  for (let t = roundNs; t <= opts.durationNs; t += roundNs) {
    // Arrivals and completions inside (t - roundNs, t], in time order.
    for (;;) {
      let nextSt: TenantState | null = null;
      for (const st of states.values()) if (st.nextArrivalNs <= t && (nextSt === null || st.nextArrivalNs < nextSt.nextArrivalNs)) nextSt = st;
      if (nextSt === null) break;
      const at = nextSt.nextArrivalNs;
      ssd.advance(Math.max(ssd.nowNs, at));
      arrive(nextSt, at);
      const load = nextSt.sim.load as { iops: number };
      nextSt.nextArrivalNs = at + rng.exp(1e9 / load.iops);
    }
    ssd.advance(t);
    // Alternate worker order so neither is always first at the shared bucket.
    for (let k = 0; k < nWorkers; k++) {
      const w = roundNo % 2 === 0 ? k : nWorkers - 1 - k;
      scheds[w].round(t, submit);
    }
    roundNo++;
    let q = 0;
    for (const s of scheds) q += s.queued();
    if (q > maxQueued) maxQueued = q;
  }

  const seconds = (opts.durationNs - warmupNs) / 1e9;
  const out = new Map<number, TenantResult>();
  let total = 0;
  for (const st of states.values()) {
    total += st.tokens;
    out.set(st.sim.id, {
      id: st.sim.id,
      completed: st.completed,
      iops: st.completed / seconds,
      readIops: st.reads / seconds,
      tokensPerSec: st.tokens / seconds,
      readP95Us: p95(st.readLat),
      writeP95Us: p95(st.writeLat),
      offered: st.offered,
      rate: st.rate,
    });
  }
  return { tenants: out, deviceRate: registry.deviceRate().rate, totalTokensPerSec: total / seconds, maxQueued };
}
