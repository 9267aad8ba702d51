/**
 * A volume grown while clients are connected: native connections reach the
 * new range at once; a client whose HELLO asked for notices is told the new
 * size (an unsolicited RESIZED frame), and a v1 client, which never asked,
 * gets no frame it did not request. A shrink cuts connections, and a
 * reconnecting client learns the smaller size from its new HELLO.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';
import { connect, type ReflexClient } from '../../src/client/index.ts';
import { Cmd, HEADER_SIZE, HelloFlag, Notice, Status } from '../../src/protocol/reflex-constants.ts';
import { HELLO_REPLY_SIZE } from '../../src/protocol/reflex-codec.ts';
import { RawPeer, header } from '../helpers/raw-peer.ts';

const MiB = 1 << 20;
let server: RunningServer;

before(async () => {
  // The v1 port's volume sits at the end of the device's first 4 MiB, with room after it to grow.
  server = await startServer(resolveConfig({ memory: 64 * MiB, workers: 2, attachPort: 0, ports: [{ port: 0, tenant: 'legacy', volumeOffset: 0, volumeSize: 4 * MiB }] }, 2));
});
after(async () => {
  await server.close();
});

function nextResize(c: ReflexClient, ms = 3000): Promise<{ size: number; previous: number }> {
  return Promise.race([
    once(c, 'resize').then(([e]) => e as { size: number; previous: number }),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no resize event')), ms).unref()),
  ]);
}

test('a client that said HELLO is told when its volume grows, and writes past the old end on the same connection', async () => {
  const t = await server.control.createTenant({ name: 'grow', class: 'BE', volumeSize: MiB, credential: true });
  assert.ok(t.ok, t.ok ? '' : t.reason);
  const c = await connect({ port: server.attachPort!, connections: 2, attach: { tenant: 'grow', volume: 'grow', secret: t.value.secret! }, timeoutMs: 3000 });
  try {
    assert.equal(c.size, MiB);
    const beyond = await c.write(MiB, Buffer.alloc(4096, 1)).then(
      () => 'written',
      (e: { status?: number }) => e.status,
    );
    assert.equal(beyond, Status.ERANGE, 'past the end before the grow');
    const told = nextResize(c);
    assert.ok((await server.control.resizeVolume('grow', 2 * MiB)).ok);
    assert.deepEqual(await told, { size: 2 * MiB, previous: MiB });
    assert.equal(c.size, 2 * MiB);
    // Both connections of the pool reach the new range without reconnecting.
    const data = Buffer.alloc(8192, 0x6b);
    await Promise.all([c.write(2 * MiB - 8192, data.subarray(0, 4096)), c.write(2 * MiB - 4096, data.subarray(4096))]);
    assert.deepEqual(await c.read(2 * MiB - 8192, 8192), data);
  } finally {
    await c.close();
    assert.ok((await server.control.removeTenant('grow')).ok);
  }
});

test('a v1 client gets no notice (its framing is the original one) but reaches the grown range', async () => {
  const port = server.bindings[0].port;
  const peer = await RawPeer.connect(port);
  try {
    peer.send(header(Cmd.GET, 1, 4 * MiB / 512, 8));
    const [refused] = await peer.waitReplies(1);
    assert.equal(refused.opcode, Status.ERANGE);
    assert.ok((await server.control.resizeVolume('legacy', 8 * MiB)).ok);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(peer.replies.length, 1, 'nothing unasked arrived');
    peer.send(header(Cmd.GET, 2, 4 * MiB / 512, 8));
    const replies = await peer.waitReplies(2);
    assert.deepEqual(replies.map((r) => [r.opcode, r.handle]), [
      [Status.ERANGE, 1],
      [Cmd.GET, 2],
    ]);
  } finally {
    peer.close();
  }
});

test('a raw HELLO with the NOTICES flag gets the RESIZED frame: handle 0, the size in sectors, no payload', async () => {
  const t = await server.control.createTenant({ name: 'raw', class: 'BE', volumeSize: MiB, port: 0 });
  assert.ok(t.ok, t.ok ? '' : t.reason);
  const port = t.value.port!;
  const asked = await RawPeer.connect(port);
  const silent = await RawPeer.connect(port);
  try {
    asked.send(header(Cmd.HELLO, 1, HelloFlag.NOTICES, 0));
    // Reserved flag bits set, NOTICES clear: answered as usual, and no notices.
    silent.send(header(Cmd.HELLO, 1, 0xfffffffe, 0));
    await asked.waitReplies(1);
    assert.equal((await silent.waitReplies(1))[0].opcode, Cmd.HELLO);
    assert.ok((await server.control.resizeVolume('raw', 3 * MiB)).ok);
    const [, notice] = await asked.waitReplies(2);
    assert.deepEqual([notice.opcode, notice.handle, notice.lba, notice.count], [Notice.RESIZED, 0, (3 * MiB) / 512, 0]);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(silent.replies.length, 1, 'a HELLO without the flag gets no notice');
  } finally {
    asked.close();
    silent.close();
    assert.ok((await server.control.removeTenant('raw')).ok);
  }
});

test('after a shrink cuts it, a reconnecting client learns the smaller size', async () => {
  const t = await server.control.createTenant({ name: 'shrink', class: 'BE', volumeSize: 2 * MiB, credential: true });
  assert.ok(t.ok, t.ok ? '' : t.reason);
  const c = await connect({
    port: server.attachPort!,
    attach: { tenant: 'shrink', volume: 'shrink', secret: t.value.secret! },
    timeoutMs: 3000,
    reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
  });
  try {
    const told = nextResize(c);
    assert.ok((await server.control.resizeVolume('shrink', MiB)).ok);
    assert.deepEqual(await told, { size: MiB, previous: 2 * MiB });
    assert.equal(c.size, MiB);
    await c.write(MiB - 4096, Buffer.alloc(4096, 2));
  } finally {
    await c.close();
    assert.ok((await server.control.removeTenant('shrink')).ok);
  }
});

test('a grow while a half-closed client is owed replies loses none of them', async () => {
  const t = await server.control.createTenant({ name: 'closing', class: 'BE', volumeSize: 32 * MiB, port: 0 });
  assert.ok(t.ok, t.ok ? '' : t.reason);
  const s = net.connect({ port: t.value.port!, host: '127.0.0.1' });
  await once(s, 'connect');
  try {
    s.write(header(Cmd.HELLO, 1, HelloFlag.NOTICES, 0));
    // 32 reads of 1 MiB, then a half-close: the server answers, then ends, while the client is not reading.
    for (let i = 0; i < 32; i++) s.write(header(Cmd.GET, 2 + i, (i * MiB) / 512, MiB / 512));
    s.end();
    s.pause();
    await new Promise((r) => setTimeout(r, 200));
    assert.ok((await server.control.resizeVolume('closing', 40 * MiB)).ok);
    let bytes = 0;
    s.on('data', (c: Buffer) => (bytes += c.length));
    s.resume();
    await once(s, 'close');
    // The notice comes too if the grow landed before the server saw the half-close; nothing else may.
    const owed = HEADER_SIZE + HELLO_REPLY_SIZE + 32 * (HEADER_SIZE + MiB);
    assert.ok(bytes === owed || bytes === owed + HEADER_SIZE, `${bytes} bytes, owed ${owed}`);
  } finally {
    s.destroy();
    assert.ok((await server.control.removeTenant('closing')).ok);
  }
});
