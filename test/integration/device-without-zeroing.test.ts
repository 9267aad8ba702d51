/**
 * A device that can neither discard nor zero a range (fault injection:
 * `unsupported=trim/write-zeroes`, as tmpfs or some block devices):
 * WRITE_ZEROES still zeroes (the server writes zeros), over NBD and the
 * native protocol; NBD's TRIM, advisory by the spec, succeeds; the native
 * TRIM, which promises zeros, says ENOTSUP.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';
import { connect } from '../../src/client/index.ts';
import { Cmd as NbdCmd, CmdFlag } from '../../src/nbd/constants.ts';
import { encodeRequest } from '../../src/nbd/client-codec.ts';
import { Status } from '../../src/protocol/reflex-constants.ts';
import { go, greet, simple } from '../helpers/nbd-raw.ts';

const MiB = 1 << 20;
let server: RunningServer;

before(async () => {
  server = await startServer(
    resolveConfig({ memory: 64 * MiB, workers: 1, faults: 'unsupported=trim/write-zeroes', nbdPort: 0, ports: [{ port: 0, tenant: 'z', volumeOffset: 0, volumeSize: 32 * MiB }] }, 1),
  );
});
after(async () => {
  await server.close();
});

test('NBD: WRITE_ZEROES (with FUA) zeroes by writing; TRIM succeeds as the advisory command it is', async () => {
  const c = await connect({ port: server.bindings[0].port });
  for (let at = 0; at < 3 * MiB; at += MiB) await c.write(at, Buffer.alloc(MiB, 0xab));
  const nbd = await greet(server.nbdPort!);
  try {
    await go(nbd, 'z');
    nbd.send(encodeRequest({ type: NbdCmd.WRITE_ZEROES, flags: CmdFlag.FUA, cookieLo: 1, offset: 4096, length: 2 * MiB }));
    assert.equal((await simple(nbd)).error, 0);
    nbd.send(encodeRequest({ type: NbdCmd.TRIM, cookieLo: 2, offset: 0, length: MiB }));
    assert.equal((await simple(nbd)).error, 0);
    const back = Buffer.concat([await c.read(0, MiB), await c.read(MiB, MiB), await c.read(2 * MiB, MiB)]);
    assert.ok(back.subarray(4096, 4096 + 2 * MiB).every((b) => b === 0), 'the range reads as zeros');
    assert.equal(back[4095], 0xab);
    assert.equal(back[4096 + 2 * MiB], 0xab);
  } finally {
    nbd.destroy();
    await c.close();
  }
});

test('native: WRITE_ZEROES zeroes by writing; TRIM answers ENOTSUP (it promises zeros the device cannot give)', async () => {
  const c = await connect({ port: server.bindings[0].port });
  try {
    await c.write(8 * MiB, Buffer.alloc(MiB, 0xcd));
    await c.writeZeroes(8 * MiB, MiB);
    assert.ok((await c.read(8 * MiB, MiB)).every((b) => b === 0));
    await assert.rejects(c.trim(8 * MiB, MiB), (e: { status?: number }) => e.status === Status.ENOTSUP);
  } finally {
    await c.close();
  }
});

test('zeroing by writes stops when its connection is cut: a shrink frees the tail to another tenant, whose data survives', async () => {
  // 100 ms per request: zeroing 8 MiB in 1 MiB writes takes ~0.8 s.
  const slow = await startServer(
    resolveConfig({ memory: 32 * MiB, workers: 1, faults: 'unsupported=write-zeroes,delay-us=100000', nbdPort: 0, ports: [{ port: 0, tenant: 't', volumeOffset: 0, volumeSize: 8 * MiB }] }, 1),
  );
  try {
    const a = await greet(slow.nbdPort!);
    await go(a, 't');
    a.send(encodeRequest({ type: NbdCmd.WRITE_ZEROES, cookieLo: 1, offset: 0, length: 8 * MiB }));
    await new Promise((r) => setTimeout(r, 150));
    // The shrink cuts t's connection and scrubs [4, 8) MiB, which then goes to u.
    assert.ok((await slow.control.resizeVolume('t', 4 * MiB)).ok);
    assert.ok((await slow.control.createTenant({ name: 'u', class: 'BE' })).ok);
    assert.ok((await slow.control.createVolume({ name: 'u', owner: 'u', size: 4 * MiB, offset: 4 * MiB })).ok);
    const u = await greet(slow.nbdPort!);
    await go(u, 'u');
    u.send(encodeRequest({ type: NbdCmd.WRITE, cookieLo: 2, offset: 0, length: 4 * MiB }, Buffer.alloc(4 * MiB, 0xee)));
    assert.equal((await simple(u)).error, 0);
    // Long enough for the rest of t's zeroing to have landed, had it gone on.
    await new Promise((r) => setTimeout(r, 1200));
    u.send(encodeRequest({ type: NbdCmd.READ, cookieLo: 3, offset: 0, length: 4 * MiB }));
    const back = await simple(u, 4 * MiB);
    assert.equal(back.error, 0);
    assert.ok(back.data.every((b) => b === 0xee), `${back.data.filter((b) => b === 0).length} bytes of u's data were zeroed`);
    a.destroy();
    u.destroy();
  } finally {
    await slow.close();
  }
});

test('writes still queued when a shrink cuts their connection land before the freed tail is zeroed', async () => {
  // 10,000 tokens/s and 1,000 per 4 KiB write: t's ten writes trickle out over a second.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-settle-'));
  const deviceModel = path.join(dir, 'slow.devmodel');
  fs.writeFileSync(deviceModel, `read_cost_4KB = 100; write_cost_4KB = 1000; max_token_rate = 10000;
token_limits = ( { p95_latency_limit = 1000; max_token_rate = 10000; max_rdonly_token_rate = 10000; } );`);
  const slow = await startServer(resolveConfig({ memory: 32 * MiB, workers: 1, deviceModel, nbdPort: 0, ports: [{ port: 0, tenant: 't', volumeOffset: 0, volumeSize: 8 * MiB }] }, 1));
  try {
    const t = await connect({ port: slow.bindings[0].port, timeoutMs: 10_000 });
    const writes = Array.from({ length: 10 }, (_, i) => t.write(4 * MiB + i * 4096, Buffer.alloc(4096, 0x77)).catch(() => 'cut'));
    await new Promise((r) => setTimeout(r, 100));
    // Cuts t's connection with writes queued, then zeroes [4, 8) MiB; u's new volume takes that range.
    assert.ok((await slow.control.resizeVolume('t', 4 * MiB)).ok);
    await Promise.all(writes);
    t.destroy();
    assert.ok((await slow.control.createTenant({ name: 'u', class: 'BE' })).ok);
    assert.ok((await slow.control.createVolume({ name: 'u', owner: 'u', size: 4 * MiB, offset: 4 * MiB })).ok);
    await new Promise((r) => setTimeout(r, 300));
    const u = await greet(slow.nbdPort!);
    await go(u, 'u');
    u.send(encodeRequest({ type: NbdCmd.READ, cookieLo: 1, offset: 0, length: 64 * 1024 }));
    const back = await simple(u, 64 * 1024);
    assert.equal(back.error, 0);
    assert.ok(back.data.every((b) => b === 0), `${back.data.filter((b) => b === 0x77).length} bytes of t's writes are in u's new volume`);
    u.destroy();
  } finally {
    await slow.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
