/**
 * The scheduler inside the real data plane: with a device model whose token
 * rate is small, a latency-critical tenant gets its reserved IOPS and a
 * best-effort tenant pushing flat out gets the rest, no more; with QoS off
 * the same clients run unthrottled.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer } from '../../src/dataplane/server.ts';
import { buildC } from '../helpers/build-c.ts';

const run = promisify(execFile);
let client: string;
let modelFile: string;

// 1,000,000 tokens/s: 10,000 4 KiB reads per second for the whole device.
const MODEL = `read_cost_4KB = 100; write_cost_4KB = 1000; max_token_rate = 1000000;
token_limits = ( { p95_latency_limit = 1000; max_token_rate = 1000000; max_rdonly_token_rate = 1000000; } );`;

before(() => {
  client = buildC(fileURLToPath(new URL('../interop/v1client.c', import.meta.url)), 'v1client');
  modelFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-qos-')), 'small.devmodel');
  fs.writeFileSync(modelFile, MODEL);
});

after(() => fs.rmSync(path.dirname(modelFile), { recursive: true, force: true }));

async function load(port: number, seconds: number): Promise<{ iops: number; errors: number }> {
  const { stdout } = await run(client, ['load', '127.0.0.1', String(port), '2', '16', String(seconds), '60000', '100', '8']);
  return JSON.parse(stdout) as { iops: number; errors: number };
}

async function scenario(qos: boolean): Promise<[{ iops: number }, { iops: number }]> {
  const server = await startServer(
    resolveConfig(
      {
        memory: '64M',
        workers: 2,
        qos,
        deviceModel: modelFile,
        ports: [
          { port: 0, tenant: 'lc', class: 'LC', iops: 4000, p95Us: 1000, readPct: 100 },
          { port: 0, tenant: 'be', class: 'BE' },
        ],
      },
      2,
    ),
  );
  try {
    const [lc, be] = await Promise.all([load(server.bindings[0].port, 3), load(server.bindings[1].port, 3)]);
    assert.equal(lc.errors + be.errors, 0);
    return [lc, be];
  } finally {
    await server.close();
  }
}

it('QoS on: LC gets its 4,000 IOPS, BE gets the remaining ~6,000, the device rate is not exceeded', async () => {
  const [lc, be] = await scenario(true);
  assert.ok(lc.iops >= 4000 * 0.95, `LC got ${lc.iops} IOPS, objective 4000`);
  assert.ok(be.iops >= 6000 * 0.7, `BE got ${be.iops} IOPS, expected about 6000`);
  assert.ok(lc.iops + be.iops <= 10_000 * 1.15, `total ${lc.iops + be.iops} IOPS over the 10,000 the model allows`);
});

it('QoS off: the same clients are not throttled', async () => {
  const [lc, be] = await scenario(false);
  assert.ok(lc.iops + be.iops > 20_000, `total ${lc.iops + be.iops} IOPS`);
});

it('an LC objective the device cannot meet stops the start with the numbers', async () => {
  await assert.rejects(
    startServer(resolveConfig({ memory: '16M', workers: 1, deviceModel: modelFile, ports: [{ port: 0, class: 'LC', iops: 20000, p95Us: 1000 }] }, 1)),
    /refused: .*\d/,
  );
});
