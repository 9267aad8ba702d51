/**
 * Changing a tenant's class at run time keeps the requests it has queued in
 * the scheduler: they move to its new queue and complete. (They used to be
 * failed with ESHUTDOWN, which told clients the server was going away.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer } from '../../src/dataplane/server.ts';
import { Field } from '../../src/dataplane/tenant-counters.ts';
import { Cmd } from '../../src/protocol/reflex-constants.ts';
import { RawPeer, header } from '../helpers/raw-peer.ts';

const MiB = 1 << 20;
// 10,000 tokens/s: 100 reads of 4 KiB a second, so 80 reads queue for 0.8 s.
const MODEL = `read_cost_4KB = 100; write_cost_4KB = 1000; max_token_rate = 10000;
token_limits = ( { p95_latency_limit = 1000; max_token_rate = 10000; max_rdonly_token_rate = 10000; } );`;

test('a BE tenant with reads queued on a slow device becomes LC: every read completes, none refused', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-reclass-'));
  const deviceModel = path.join(dir, 'slow.devmodel');
  fs.writeFileSync(deviceModel, MODEL);
  const server = await startServer(resolveConfig({ memory: 64 * MiB, workers: 1, deviceModel, ports: [{ port: 0, tenant: 't', volumeOffset: 0, volumeSize: 32 * MiB }] }, 1));
  try {
    const id = server.control.listTenants().find((t) => t.name === 't')!.id;
    const peer = await RawPeer.connect(server.bindings[0].port);
    for (let i = 0; i < 80; i++) peer.send(header(Cmd.GET, 1 + i, i * 8, 8));
    await new Promise((r) => setTimeout(r, 300)); // the queue gauge is sampled every 250 ms
    const queued = server.counters.total(id, Field.QUEUED);
    assert.ok(queued >= 20, `${queued} reads queued behind the device's 100 reads/s`);
    const r = await server.control.updateTenant('t', { class: 'LC', iops: 50, p95Us: 1000 });
    assert.ok(r.ok, r.ok ? '' : r.reason);
    const replies = await peer.waitReplies(80, 3000);
    assert.equal(replies.length, 80);
    assert.deepEqual(new Set(replies.map((x) => x.opcode)), new Set([Cmd.GET]), 'no read refused');
    peer.close();
  } finally {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
