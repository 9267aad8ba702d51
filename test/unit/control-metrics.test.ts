import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WorkerField } from '../../src/dataplane/worker-stats.ts';
import { AdminMetrics } from '../../src/control/metrics.ts';
import { Sampler } from '../../src/control/sampler.ts';
import { Field } from '../../src/dataplane/tenant-counters.ts';
import { DEVICE_SIZE, makeControl, simulateReads } from './control-fixture.ts';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A strict parser of the Prometheus text format (the subset we emit). */
function parse(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const t = /^# TYPE (\w+) (counter|gauge|histogram)$/.exec(line);
    if (t) {
      assert.ok(!types.has(t[1]), `family ${t[1]} declared twice`);
      types.set(t[1], t[2]);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) for (const kv of m[2].split(',')) {
      const p = /^(\w+)="((?:[^"\\]|\\.)*)"$/.exec(kv);
      assert.ok(p, `bad label ${kv} in ${line}`);
      labels[p[1]] = p[2];
    }
    const value = m[3] === '+Inf' ? Infinity : Number(m[3]);
    assert.ok(!Number.isNaN(value), `bad value in ${line}`);
    samples.push({ name: m[1], labels, value });
  }
  return { types, samples };
}

function value(samples: Sample[], name: string, labels: Record<string, string>): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

test('metrics: families, per-tenant counters, histogram buckets, gauges and device figures', async () => {
  const { control, counters, workerStats } = makeControl();
  const row = workerStats.row(0);
  row[WorkerField.COALESCE_CHECKS] = 50;
  row[WorkerField.COALESCE_SLEEPS] = 20;
  row[WorkerField.COALESCE_SLEPT_US] = 800;
  const lc = await control.createTenant({ name: 'lc', class: 'LC', iops: 5000, p95Us: 500, volumeSize: 1 << 20 });
  const be = await control.createTenant({ name: 'be', class: 'BE' });
  assert.ok(lc.ok && be.ok);
  let now = 0;
  const sampler = new Sampler(control, { now: () => now });
  sampler.sample();
  const id = lc.value.tenant.id;
  simulateReads(counters, id, 90, 100);
  simulateReads(counters, id, 10, 3000);
  counters.add(id, Field.WRITE_OPS, 7);
  counters.add(id, Field.WRITE_BYTES, 7 * 8192);
  counters.add(id, Field.REFUSED, 3);
  counters.add(id, Field.ERRORS, 2);
  counters.set(id, Field.CONNECTIONS, 4);
  counters.set(id, Field.QUEUED, 5);
  now += 1000;
  sampler.sample();

  const m = new AdminMetrics(control, sampler);
  const { types, samples } = parse(await m.text());
  for (const [name, type] of Object.entries({
    reflex_tenant_requests_total: 'counter',
    reflex_tenant_bytes_total: 'counter',
    reflex_tenant_errors_total: 'counter',
    reflex_tenant_refused_total: 'counter',
    reflex_tenant_latency_seconds: 'histogram',
    reflex_tenant_p95_seconds: 'gauge',
    reflex_tenant_p95_objective_seconds: 'gauge',
    reflex_tenant_iops_objective: 'gauge',
    reflex_tenant_rate_tokens_per_second: 'gauge',
    reflex_tenant_queue_depth: 'gauge',
    reflex_tenant_connections: 'gauge',
    reflex_device_size_bytes: 'gauge',
    reflex_device_rate_tokens_per_second: 'gauge',
    reflex_device_allocated_bytes: 'gauge',
    reflex_worker_coalesce_checks_total: 'counter',
    reflex_worker_coalesce_sleeps_total: 'counter',
    reflex_worker_coalesce_sleep_seconds_total: 'counter',
  })) assert.equal(types.get(name), type, name);

  assert.equal(value(samples, 'reflex_worker_coalesce_checks_total', { worker: '0' }), 50);
  assert.equal(value(samples, 'reflex_worker_coalesce_sleeps_total', { worker: '0' }), 20);
  assert.equal(value(samples, 'reflex_worker_coalesce_sleep_seconds_total', { worker: '0' }), 0.0008);

  assert.equal(value(samples, 'reflex_tenant_requests_total', { tenant: 'lc', op: 'read' }), 100);
  assert.equal(value(samples, 'reflex_tenant_requests_total', { tenant: 'lc', op: 'write' }), 7);
  assert.equal(value(samples, 'reflex_tenant_requests_total', { tenant: 'be', op: 'read' }), 0);
  assert.equal(value(samples, 'reflex_tenant_bytes_total', { tenant: 'lc', dir: 'write' }), 7 * 8192);
  assert.equal(value(samples, 'reflex_tenant_refused_total', { tenant: 'lc' }), 3);
  assert.equal(value(samples, 'reflex_tenant_errors_total', { tenant: 'lc' }), 2);
  assert.equal(value(samples, 'reflex_tenant_connections', { tenant: 'lc' }), 4);
  assert.equal(value(samples, 'reflex_tenant_queue_depth', { tenant: 'lc' }), 5);
  assert.equal(value(samples, 'reflex_tenant_p95_objective_seconds', { tenant: 'lc' }), 0.0005);
  assert.equal(value(samples, 'reflex_tenant_iops_objective', { tenant: 'lc' }), 5000);
  assert.equal(value(samples, 'reflex_tenant_iops_objective', { tenant: 'be' }), undefined);
  // 10% of the window's requests took 3 ms, so p95 is about 3 ms.
  const p95 = value(samples, 'reflex_tenant_p95_seconds', { tenant: 'lc' })!;
  assert.ok(p95 >= 0.003 && p95 <= 0.0034, `p95 ${p95}`);
  assert.ok(value(samples, 'reflex_tenant_rate_tokens_per_second', { tenant: 'lc', class: 'LC' })! > 0);

  // Histogram: cumulative, non-decreasing, +Inf equals count, exact at power-of-two bounds.
  const buckets = samples.filter((s) => s.name === 'reflex_tenant_latency_seconds_bucket' && s.labels.tenant === 'lc');
  const les = buckets.map((b) => (b.labels.le === '+Inf' ? Infinity : Number(b.labels.le)));
  for (let i = 1; i < buckets.length; i++) {
    assert.ok(les[i] > les[i - 1], 'le ascending');
    assert.ok(buckets[i].value >= buckets[i - 1].value, 'cumulative');
  }
  assert.equal(value(samples, 'reflex_tenant_latency_seconds_bucket', { tenant: 'lc', le: '0.000128' }), 90);
  assert.equal(value(samples, 'reflex_tenant_latency_seconds_bucket', { tenant: 'lc', le: '0.002048' }), 90);
  assert.equal(value(samples, 'reflex_tenant_latency_seconds_bucket', { tenant: 'lc', le: '0.004096' }), 100);
  assert.equal(value(samples, 'reflex_tenant_latency_seconds_bucket', { tenant: 'lc', le: '+Inf' }), 100);
  assert.equal(value(samples, 'reflex_tenant_latency_seconds_count', { tenant: 'lc' }), 100);
  assert.ok(Math.abs(value(samples, 'reflex_tenant_latency_seconds_sum', { tenant: 'lc' })! - (90 * 100 + 10 * 3000) / 1e6) < 1e-9);

  assert.equal(value(samples, 'reflex_device_size_bytes', { device: 'default', engine: 'memory' }), DEVICE_SIZE);
  assert.equal(value(samples, 'reflex_device_allocated_bytes', { device: 'default' }), 1 << 20);

  // A removed tenant leaves every family on the next scrape.
  assert.ok((await control.removeTenant('lc')).ok);
  const after = parse(await m.text()).samples;
  assert.equal(after.filter((s) => s.labels.tenant === 'lc').length, 0);
  assert.ok(after.some((s) => s.labels.tenant === 'be'));
});
