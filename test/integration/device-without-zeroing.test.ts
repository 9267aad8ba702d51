/**
 * A device that can neither discard nor zero a range (fault injection:
 * `unsupported=trim/write-zeroes`, as tmpfs or some block devices):
 * WRITE_ZEROES still zeroes (the server writes zeros), over NBD and the
 * native protocol; NBD's TRIM, advisory by the spec, succeeds; the native
 * TRIM, which promises zeros, says ENOTSUP.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
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
