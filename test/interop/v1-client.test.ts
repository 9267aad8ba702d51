/**
 * Compatibility with the original's clients: a C client that frames requests
 * exactly as they do (packed header, raw pointer as req_handle, no HELLO,
 * 512-byte sectors, pipelined) writes and verifies data through the server,
 * across several connections spread over two workers.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';
import { buildC } from '../helpers/build-c.ts';

const run = promisify(execFile);
let server: RunningServer;
let client: string;

before(async () => {
  client = buildC(fileURLToPath(new URL('./v1client.c', import.meta.url)), 'v1client');
  server = await startServer(resolveConfig({ memory: '128M', workers: 2, ports: [{ port: 0 }, { port: 0, tenant: 'second' }] }, 2));
});

after(async () => {
  await server.close();
});

it('a v1 C client writes and reads back identical data, pipelined over 4 connections', async () => {
  const { stdout } = await run(client, ['verify', '127.0.0.1', String(server.bindings[0].port), '4', '16', '40', String((64 << 20) / 512)]);
  const m = /verified (\d+) mismatches (\d+) errors (\d+)/.exec(stdout);
  assert.ok(m, stdout);
  assert.equal(Number(m[2]), 0, 'mismatched reads');
  assert.equal(Number(m[3]), 0, 'error responses');
  assert.equal(Number(m[1]), 4 * 16 * 40);
});

it('a second port is a second tenant; its counters see its own traffic only', async () => {
  const port = server.bindings[1].port;
  const { stdout } = await run(client, ['load', '127.0.0.1', String(port), '1', '4', '1', String((64 << 20) / 512), '100', '8']);
  const result = JSON.parse(stdout) as { iops: number; requests: number; errors: number };
  assert.equal(result.errors, 0);
  assert.ok(result.requests > 100, `only ${result.requests} requests in a second`);
  // Counters are written by workers as they answer: by now they cover this run.
  const reads = server.counters.total(1, 0);
  assert.ok(reads >= result.requests, `tenant 1 counted ${reads} reads for ${result.requests} requests`);
  assert.equal(server.counters.total(0, 0), 4 * 16 * 40, 'tenant 0 counts only the verify run');
});
