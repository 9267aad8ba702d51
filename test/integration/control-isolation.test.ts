/**
 * Isolation between tenants on one device: tenant A cannot read or write a
 * byte of tenant B's volume through any opcode, LBA, length, overflow trick
 * or credential game. Every attempt is counted; the successes must be 0.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';
import { connect } from '../../src/client/index.ts';
import { encodeAttach } from '../../src/protocol/attach.ts';
import { decodeHelloInfo } from '../../src/protocol/reflex-codec.ts';
import { Cmd, Status } from '../../src/protocol/reflex-constants.ts';
import { RawPeer, header } from '../helpers/raw-peer.ts';
import { greet, go, simple } from '../helpers/nbd-raw.ts';
import { Cmd as NbdCmd } from '../../src/nbd/constants.ts';
import { encodeRequest } from '../../src/nbd/client-codec.ts';

const MiB = 1 << 20;
const SECTOR = 512;
let server: RunningServer;
let attachPort: number;
const secrets: Record<string, string> = {};
let attempts = 0;
let successes = 0;

/** HELLO on a raw connection; returns the server nonce. */
async function hello(peer: RawPeer, handle = 1): Promise<Buffer> {
  const before = peer.replies.length;
  peer.send(header(Cmd.HELLO, handle, 0, 0));
  const r = (await peer.waitReplies(before + 1))[before];
  assert.equal(r.opcode, Cmd.HELLO);
  return decodeHelloInfo(r.payload!).nonce!;
}

/** Sends ATTACH with the given payload and returns the reply opcode. */
async function attach(peer: RawPeer, payload: Buffer, handle = 2): Promise<number> {
  const before = peer.replies.length;
  peer.send(header(Cmd.ATTACH, handle, 0, payload.length), payload);
  const r = (await peer.waitReplies(before + 1))[before];
  return r.opcode;
}

before(async () => {
  server = await startServer(resolveConfig({ memory: 64 * MiB, workers: 2, attachPort: 0, nbdPort: 0, ports: [{ port: 0, tenant: 'legacy', volumeOffset: 0, volumeSize: 8 * MiB }] }, 2));
  attachPort = server.attachPort!;
  for (const name of ['alpha', 'beta']) {
    const r = await server.control.createTenant({ name, class: 'BE', volumeSize: 4 * MiB, credential: true });
    assert.ok(r.ok, r.ok ? '' : r.reason);
    secrets[name] = r.value.secret!;
  }
  // Beta's volume holds a pattern alpha must never see.
  const b = await connect({ port: attachPort, attach: { tenant: 'beta', volume: 'beta', secret: secrets.beta } });
  for (let off = 0; off < 4 * MiB; off += MiB) await b.write(off, Buffer.alloc(MiB, 0xbb));
  await b.close();
});

after(async () => {
  // Close first: a failed assertion must not leave the workers holding the process.
  await server.close();
  assert.equal(successes, 0, `${successes} of ${attempts} attacks succeeded`);
});

describe('authentication', () => {
  it('the right credential attaches and serves the tenant its own volume', async () => {
    const a = await connect({ port: attachPort, connections: 2, attach: { tenant: 'alpha', volume: 'alpha', secret: secrets.alpha } });
    assert.equal(a.info!.volumeSize, 4 * MiB);
    const data = Buffer.alloc(8192, 0xaa);
    await a.write(4096, data);
    assert.deepEqual(await a.read(4096, 8192), data);
    await a.close();
  });

  it('refuses wrong secrets, other tenants’ volumes, unknown names, and I/O before ATTACH', async () => {
    const cases: Array<[string, (nonce: Buffer) => Buffer]> = [
      ['wrong secret', (n) => encodeAttach('00'.repeat(32), n, 'alpha', 'alpha')],
      ['alpha’s secret for beta’s volume as alpha', (n) => encodeAttach(secrets.alpha, n, 'alpha', 'beta')],
      ['alpha’s secret claiming to be beta', (n) => encodeAttach(secrets.alpha, n, 'beta', 'beta')],
      ['unknown tenant', (n) => encodeAttach(secrets.alpha, n, 'nobody', 'alpha')],
      ['unknown volume', (n) => encodeAttach(secrets.alpha, n, 'alpha', 'nothing')],
      ['MAC over another nonce', () => encodeAttach(secrets.alpha, Buffer.alloc(16, 7), 'alpha', 'alpha')],
    ];
    for (const [what, make] of cases) {
      const peer = await RawPeer.connect(attachPort);
      const nonce = await hello(peer);
      attempts++;
      const op = await attach(peer, make(nonce));
      if (op === Cmd.ATTACH) successes++;
      assert.equal(op, Status.EPERM, what);
      // Still nothing reachable on this connection.
      peer.send(header(Cmd.GET, 9, 0, 8));
      attempts++;
      const [, , r] = await peer.waitReplies(3);
      if (r.opcode === Cmd.GET) successes++;
      assert.equal(r.opcode, Status.EPERM, `${what}: read after refusal`);
      peer.close();
    }
    const bare = await RawPeer.connect(attachPort);
    for (const [i, frame] of [header(Cmd.GET, 1, 0, 1), Buffer.concat([header(Cmd.SET, 2, 0, 1), Buffer.alloc(SECTOR)]), header(Cmd.TRIM, 3, 0, 1), header(Cmd.FLUSH, 4, 0, 0)].entries()) {
      bare.send(frame);
      attempts++;
      const r = (await bare.waitReplies(i + 1))[i];
      if (r.opcode < 0x04 || r.opcode >= 0x10) successes++;
      assert.equal(r.opcode, Status.EPERM, `opcode ${frame.readUInt16LE(2)} without ATTACH`);
    }
    bare.close();
  });

  it('a recorded handshake cannot be replayed, on a new connection or twice on one', async () => {
    const peer = await RawPeer.connect(attachPort);
    const nonce = await hello(peer);
    const good = encodeAttach(secrets.alpha, nonce, 'alpha', 'alpha');
    assert.equal(await attach(peer, good), Cmd.ATTACH);
    attempts++;
    const again = await attach(peer, good, 3);
    if (again === Cmd.ATTACH) successes++;
    assert.equal(again, Status.EPERM, 'the same ATTACH twice on one connection');
    peer.close();
    const thief = await RawPeer.connect(attachPort);
    await hello(thief);
    attempts++;
    const stolen = await attach(thief, good);
    if (stolen === Cmd.ATTACH) successes++;
    assert.equal(stolen, Status.EPERM, 'a replay on another connection');
    thief.close();
  });

  it('three failures close the connection', async () => {
    const peer = await RawPeer.connect(attachPort);
    for (let i = 0; i < 3; i++) {
      await hello(peer, 10 + i);
      attempts++;
      if ((await attach(peer, encodeAttach('11'.repeat(32), Buffer.alloc(16), 'alpha', 'alpha'), 20 + i)) === Cmd.ATTACH) successes++;
    }
    await peer.waitClosed();
  });

  it('after the third refusal nothing else on the connection is carried out', async () => {
    // A v1 port: its connections reach the legacy volume without ATTACH.
    const legacyPort = server.bindings[0].port;
    const check = await RawPeer.connect(legacyPort);
    check.send(header(Cmd.SET, 1, 2048, 8), Buffer.alloc(4096, 0));
    await check.waitReplies(1);
    const peer = await RawPeer.connect(legacyPort);
    const bad = encodeAttach('11'.repeat(32), Buffer.alloc(16), 'alpha', 'alpha');
    const frames: Buffer[] = [];
    for (let i = 0; i < 3; i++) frames.push(header(Cmd.ATTACH, 20 + i, 0, bad.length), bad);
    frames.push(header(Cmd.SET, 30, 2048, 8), Buffer.alloc(4096, 0xee), header(Cmd.GET, 31, 2048, 8));
    peer.send(...frames);
    await peer.waitClosed();
    assert.deepEqual(peer.replies.map((r) => [r.handle, r.opcode]), [
      [20, Status.EPERM],
      [21, Status.EPERM],
      [22, Status.EPERM],
    ]);
    check.send(header(Cmd.GET, 2, 2048, 8));
    const [, read] = await check.waitReplies(2);
    assert.deepEqual(read.payload, Buffer.alloc(4096, 0), 'the SET sent after the third refusal was not written');
    check.close();
  });
});

describe('bounds', () => {
  it('no LBA, length or overflow trick reaches past the attached volume', async () => {
    const peer = await RawPeer.connect(attachPort);
    const nonce = await hello(peer);
    assert.equal(await attach(peer, encodeAttach(secrets.alpha, nonce, 'alpha', 'alpha')), Cmd.ATTACH);
    const sectors = (4 * MiB) / SECTOR;
    const tricks: Buffer[] = [
      header(Cmd.GET, 100, sectors, 1),
      header(Cmd.GET, 101, sectors - 1, 2),
      header(Cmd.GET, 102, 2 ** 40, 8),
      header(Cmd.GET, 103, 2 ** 53 - 1, 1),
      header(Cmd.GET, 104, sectors - 8, 0xffffffff),
      header(Cmd.TRIM, 105, sectors, 8),
      header(Cmd.WRITE_ZEROES, 106, sectors - 1, 2),
      header(Cmd.TRIM, 107, 0, 0xffffffff),
      Buffer.concat([header(Cmd.SET, 108, sectors, 1), Buffer.alloc(SECTOR, 0x11)]),
      Buffer.concat([header(Cmd.SET_NO_ACK, 109, sectors, 1), Buffer.alloc(SECTOR, 0x11)]),
    ];
    const wrap = header(Cmd.GET, 110, 0, 1);
    wrap.writeUInt32LE(0xffffffff, 12);
    wrap.writeUInt32LE(0xffffffff, 16);
    tricks.push(wrap);
    const base = peer.replies.length;
    for (const t of tricks) peer.send(t);
    const replies = (await peer.waitReplies(base + tricks.length)).slice(base);
    for (const r of replies) {
      attempts++;
      if (r.opcode < 0x04 || r.opcode >= 0x10) successes++;
      assert.ok(r.opcode === Status.ERANGE || r.opcode === Status.EINVAL, `handle ${r.handle}: got opcode ${r.opcode}`);
    }
    // Reading all of alpha's volume never shows beta's bytes.
    for (let lba = 0; lba < sectors; lba += 2048) {
      const at = peer.replies.length;
      peer.send(header(Cmd.GET, 1000 + lba, lba, 2048));
      const [r] = (await peer.waitReplies(at + 1)).slice(at);
      attempts++;
      if (r.payload!.includes(0xbb)) successes++;
    }
    peer.close();
  });

  it('a v1 port reaches only the volume its config grants', async () => {
    const peer = await RawPeer.connect(server.bindings[0].port);
    peer.send(header(Cmd.GET, 1, (8 * MiB) / SECTOR, 1), header(Cmd.GET, 2, (8 * MiB) / SECTOR - 1, 1));
    const [r1, r2] = await peer.waitReplies(2);
    const byHandle = new Map([r1, r2].map((r) => [r.handle, r]));
    attempts++;
    if (byHandle.get(1)!.opcode === Cmd.GET) successes++;
    assert.equal(byHandle.get(1)!.opcode, Status.ERANGE);
    assert.equal(byHandle.get(2)!.opcode, Cmd.GET);
    peer.close();
  });

  it('removing a tenant cuts its live connections', async () => {
    const r = await server.control.createTenant({ name: 'gamma', class: 'BE', volumeSize: MiB, credential: true });
    assert.ok(r.ok);
    const g = await connect({ port: attachPort, attach: { tenant: 'gamma', volume: 'gamma', secret: r.value.secret! }, timeoutMs: 3000 });
    await g.write(0, Buffer.alloc(4096, 1));
    const removed = await server.control.removeTenant('gamma');
    assert.ok(removed.ok);
    attempts++;
    const after = await g.read(0, 4096).then(
      () => 'read',
      (e: Error) => e.message,
    );
    if (after === 'read') successes++;
    assert.notEqual(after, 'read');
    g.destroy();
  });

  it('deleting a volume cuts its NBD connections before the range can serve anyone else', async () => {
    const d = await server.control.createTenant({ name: 'delta', class: 'BE', volumeSize: MiB });
    assert.ok(d.ok);
    const offset = d.value.volume!.offset;
    const nbd = await greet(server.nbdPort!);
    await go(nbd, 'delta');
    nbd.send(encodeRequest({ type: NbdCmd.WRITE, cookieLo: 1, offset: 0, length: 8192 }, Buffer.alloc(8192, 0xdd)));
    assert.equal((await simple(nbd)).error, 0);
    assert.ok((await server.control.removeTenant('delta')).ok);
    // The same bytes of the device now belong to another tenant, holding data of its own.
    const e = await server.control.createTenant({ name: 'epsilon', class: 'BE', volumeSize: MiB, credential: true });
    assert.ok(e.ok);
    assert.equal(e.value.volume!.offset, offset, 'the new volume reuses the freed range');
    const ec = await connect({ port: attachPort, attach: { tenant: 'epsilon', volume: 'epsilon', secret: e.value.secret! } });
    await ec.write(0, Buffer.alloc(4096, 0xee));
    await ec.close();
    // The old NBD connection must be gone: neither a read nor a write reaches the range.
    attempts++;
    nbd.send(encodeRequest({ type: NbdCmd.READ, cookieLo: 2, offset: 0, length: 4096 }));
    const outcome = await simple(nbd, 4096).then(
      (r) => (r.error === 0 ? r.data : null),
      () => null,
    );
    if (outcome !== null) successes++;
    assert.equal(outcome, null, 'a revoked NBD connection still read the range');
    await nbd.closed();
    const check = await connect({ port: attachPort, attach: { tenant: 'epsilon', volume: 'epsilon', secret: e.value.secret! } });
    assert.deepEqual(await check.read(0, 4096), Buffer.alloc(4096, 0xee));
    // What epsilon did not write reads as zeros: delta's bytes were scrubbed, not inherited.
    const inherited = await check.read(4096, 4096);
    attempts++;
    if (inherited.includes(0xdd)) successes++;
    assert.deepEqual(inherited, Buffer.alloc(4096), 'a new volume shows the bytes of a deleted one');
    await check.close();
    assert.ok((await server.control.removeTenant('epsilon')).ok);
  });

  it('a volume removed while an NBD client negotiates is not served to it', async () => {
    assert.ok((await server.control.createTenant({ name: 'eta', class: 'BE', volumeSize: MiB })).ok);
    const nbd = await greet(server.nbdPort!);
    // The tenant stays (its scheduler slot still admits requests); only the volume goes.
    assert.ok((await server.control.removeVolume('eta')).ok);
    attempts++;
    const served = await (async () => {
      await go(nbd, 'eta');
      nbd.send(encodeRequest({ type: NbdCmd.READ, cookieLo: 1, offset: 0, length: 4096 }));
      return (await simple(nbd, 4096)).error === 0;
    })().catch(() => false);
    if (served) successes++;
    assert.equal(served, false, 'the removed volume was served');
    nbd.destroy();
    assert.ok((await server.control.removeTenant('eta')).ok);
  });

  it('a grown volume keeps its connections, a shrunk one cuts them; new connections see the new size', async () => {
    const z = await server.control.createTenant({ name: 'zeta', class: 'BE', volumeSize: MiB, credential: true });
    assert.ok(z.ok);
    const attachZeta = () => connect({ port: attachPort, attach: { tenant: 'zeta', volume: 'zeta', secret: z.value.secret! }, timeoutMs: 3000 });
    const live = await attachZeta();
    const nbd = await greet(server.nbdPort!);
    // Zeta has a credential: NBD reaches its volume only over TLS with it as the key.
    await nbd.startTlsPsk('zeta', z.value.secret!);
    await go(nbd, 'zeta');
    await live.write(0, Buffer.alloc(4096, 0x5a));
    const grown = await server.control.resizeVolume('zeta', 2 * MiB);
    assert.ok(grown.ok, grown.ok ? '' : grown.reason);
    assert.deepEqual(await live.read(0, 4096), Buffer.alloc(4096, 0x5a), 'native connection survives a grow');
    nbd.send(encodeRequest({ type: NbdCmd.READ, cookieLo: 7, offset: 0, length: 4096 }));
    const r = await simple(nbd, 4096);
    assert.deepEqual([r.error, r.data], [0, Buffer.alloc(4096, 0x5a)], 'NBD connection survives a grow');
    const fresh = await attachZeta();
    assert.equal(fresh.info!.volumeSize, 2 * MiB);
    await fresh.write(2 * MiB - 4096, Buffer.alloc(4096, 0x77));
    await fresh.close();

    const shrunk = await server.control.resizeVolume('zeta', MiB / 2);
    assert.ok(shrunk.ok);
    attempts++;
    const after = await live.read(MiB / 2, 4096).then(
      () => 'read',
      (err: Error) => err.message,
    );
    if (after === 'read') successes++;
    assert.notEqual(after, 'read', 'a native connection outlived a shrink');
    await nbd.closed();
    live.destroy();
    // Grow again: the old tail comes back zeroed, not with the 0x77 written before the shrink.
    assert.ok((await server.control.resizeVolume('zeta', 2 * MiB)).ok);
    const again = await attachZeta();
    assert.equal(again.info!.volumeSize, 2 * MiB);
    assert.deepEqual(await again.read(2 * MiB - 4096, 4096), Buffer.alloc(4096));
    assert.deepEqual(await again.read(0, 4096), Buffer.alloc(4096, 0x5a), 'the kept part keeps its data');
    await again.close();
    assert.ok((await server.control.removeTenant('zeta')).ok);
  });
});
