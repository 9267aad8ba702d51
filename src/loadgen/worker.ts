/**
 * One load-generator thread of a multi-threaded run: opens its share of the
 * connections, runs the phases, and posts events and results (histograms in
 * HDR's compressed encoding) to the main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { encodeHistogram } from './histogram.ts';
import { NetworkTarget } from './network-target.ts';
import { runSequence } from './phases.ts';
import type { WorkerEvent, WorkerJob } from './runner.ts';

const job = workerData as WorkerJob;
const post = (ev: WorkerEvent): void => parentPort!.postMessage(ev);

try {
  const target = await NetworkTarget.open(job.target);
  try {
    await runSequence(target, job.plan, {
      onWindowStart: (phase) => post({ type: 'window-start', phase }),
      onWindowEnd: (phase) => post({ type: 'window-end', phase }),
      onProgress: (phase, p) => post({ type: 'progress', phase, p }),
      onResult: (phase, r) =>
        post({ type: 'result', phase, completed: r.completed, errors: r.errors, firstError: r.firstError, late: r.late, dropped: r.dropped, windowSec: r.windowSec, histogram: encodeHistogram(r.histogram) }),
    });
  } finally {
    await target.close();
  }
} catch (err) {
  post({ type: 'failed', message: (err as Error).message });
}
