/**
 * A benchmark in one thread: the target rates (or one closed-loop run),
 * each a measured phase over the same target. Shared by the in-process
 * runner and the worker threads of a multi-threaded run.
 */
import { runPhase, type LoadSpec, type PhaseHooks, type PhaseResult } from './generator.ts';
import type { IoTarget } from './target.ts';

export interface PhasePlan {
  spec: Omit<LoadSpec, 'iops' | 'mode'>;
  /** Open-loop rates for this thread, in order; empty for one closed-loop phase. */
  rates: number[];
}

export interface SequenceHooks {
  onWindowStart?(phase: number): void;
  onWindowEnd?(phase: number): void;
  onProgress?(phase: number, p: Parameters<NonNullable<PhaseHooks['onProgress']>>[0]): void;
  onResult?(phase: number, r: PhaseResult): void;
}

export async function runSequence(target: IoTarget, plan: PhasePlan, hooks: SequenceHooks = {}): Promise<PhaseResult[]> {
  const phases: LoadSpec[] =
    plan.rates.length === 0 ? [{ ...plan.spec, mode: 'closed', iops: 0 }] : plan.rates.map((iops) => ({ ...plan.spec, mode: 'open' as const, iops }));
  const results: PhaseResult[] = [];
  for (let i = 0; i < phases.length; i++) {
    const r = await runPhase(target, phases[i], {
      onWindowStart: () => hooks.onWindowStart?.(i),
      onWindowEnd: () => hooks.onWindowEnd?.(i),
      onProgress: (p) => hooks.onProgress?.(i, p),
    });
    hooks.onResult?.(i, r);
    results.push(r);
  }
  return results;
}
