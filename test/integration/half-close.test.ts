/**
 * A client that pipelines requests and then half-closes (shutdown(SHUT_WR))
 * gets every reply before the server closes: on the native protocol and on
 * NBD, including requests the server held back behind its reply high-water
 * mark (32 reads of 1 MiB against a 4 MiB window).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';
import { Cmd, HEADER_SIZE } from '../../src/protocol/reflex-constants.ts';
import { Cmd as NbdCmd } from '../../src/nbd/constants.ts';
import { encodeRequest } from '../../src/nbd/client-codec.ts';
import { header } from '../helpers/raw-peer.ts';
import { go, greet, simple } from '../helpers/nbd-raw.ts';

const MiB = 1 << 20;
const READS = 32;
let server: RunningServer;

before(async () => {
  server = await startServer(resolveConfig({ memory: 64 * MiB, workers: 1, nbdPort: 0, ports: [{ port: 0, tenant: 'half', volumeOffset: 0, volumeSize: 32 * MiB }] }, 1));
});
after(async () => {
  await server.close();
});

test('native: every reply arrives after a half-close, then the server closes', async () => {
  const s = net.connect({ port: server.bindings[0].port, host: '127.0.0.1' });
  await once(s, 'connect');
  try {
    for (let i = 0; i < READS; i++) s.write(header(Cmd.GET, 1 + i, (i * MiB) / 512, MiB / 512));
    s.end();
    // Not reading for a while: the server's replies back up and it stops parsing.
    s.pause();
    await new Promise((r) => setTimeout(r, 200));
    let bytes = 0;
    s.on('data', (c: Buffer) => (bytes += c.length));
    s.resume();
    await once(s, 'close');
    assert.equal(bytes, READS * (HEADER_SIZE + MiB));
  } finally {
    s.destroy();
  }
});

test('NBD: every reply arrives after a half-close, then the server closes', async () => {
  const nbd = await greet(server.nbdPort!);
  try {
    await go(nbd, 'half');
    for (let i = 0; i < READS; i++) nbd.send(encodeRequest({ type: NbdCmd.READ, cookieLo: 1 + i, offset: i * MiB, length: MiB }));
    nbd.sock.end();
    const cookies: number[] = [];
    for (let i = 0; i < READS; i++) {
      const r = await simple(nbd, MiB);
      assert.equal(r.error, 0);
      cookies.push(r.cookie);
    }
    assert.deepEqual(cookies.sort((a, b) => a - b), Array.from({ length: READS }, (_, i) => 1 + i));
    assert.equal((await nbd.closed()).length, 0, 'nothing after the last reply, then the close');
  } finally {
    nbd.destroy();
  }
});

test('a half-close while reading is paused at maxOutstanding still ends the connection, native and NBD', async () => {
  const tight = await startServer(
    resolveConfig({ memory: 16 * MiB, workers: 1, maxOutstanding: 4, faults: 'delay-us=1000', nbdPort: 0, ports: [{ port: 0, tenant: 'tight', volumeOffset: 0, volumeSize: 8 * MiB }] }, 1),
  );
  try {
    for (const n of [4, 8]) {
      const s = net.connect({ port: tight.bindings[0].port, host: '127.0.0.1' });
      await once(s, 'connect');
      let bytes = 0;
      s.on('data', (c: Buffer) => (bytes += c.length));
      for (let i = 0; i < n; i++) s.write(header(Cmd.GET, 1 + i, i * 8, 8));
      s.end();
      await Promise.race([once(s, 'close'), new Promise((_, reject) => setTimeout(() => reject(new Error(`native, ${n} reads: the server never ended the connection`)), 3000))]);
      assert.equal(bytes, n * (HEADER_SIZE + 4096));
    }
    const nbd = await greet(tight.nbdPort!);
    await go(nbd, 'tight');
    for (let i = 0; i < 8; i++) nbd.send(encodeRequest({ type: NbdCmd.READ, cookieLo: 1 + i, offset: i * 4096, length: 4096 }));
    nbd.sock.end();
    for (let i = 0; i < 8; i++) assert.equal((await simple(nbd, 4096)).error, 0);
    await nbd.closed(3000);
    nbd.destroy();
  } finally {
    await tight.close();
  }
});
