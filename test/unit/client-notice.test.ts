/**
 * A RESIZED notice is newer than the HELLO reply it follows, even when both
 * arrive in one read, before the code awaiting that reply runs: the client
 * must end on the notice's size, on a first connect and on a reconnect, and
 * never report a shrink that did not happen. (A scripted server on loopback.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { connect } from '../../src/client/index.ts';
import { encodeHelloInfo, FrameParser, HELLO_REPLY_SIZE, requestPayload, writeHeader } from '../../src/protocol/reflex-codec.ts';
import { Cmd, HEADER_SIZE, Notice } from '../../src/protocol/reflex-constants.ts';

const MiB = 1 << 20;

/**
 * Answers HELLO with a 1 MiB volume and, in the same write, a notice that it
 * is now 2 MiB (unless `withNotice` says no for this connection), with
 * `handle` (a real notice has 0).
 */
function scriptedServer(withNotice: (connection: number) => boolean, after?: (s: net.Socket, connection: number) => void, handle = 0): Promise<net.Server> {
  let n = 0;
  const srv = net.createServer((s) => {
    const mine = n++;
    s.on('error', () => {});
    const p = new FrameParser({ sectorSize: 512, maxPayload: MiB, rule: requestPayload });
    s.on('data', (chunk) =>
      p.push(chunk, {
        onFrame(f) {
          if ((f.opcode & 0xff) !== Cmd.HELLO) return true;
          const out = Buffer.alloc(2 * HEADER_SIZE + HELLO_REPLY_SIZE);
          writeHeader(out, 0, Cmd.HELLO, f.handleLo, f.handleHi, 0, 0, HELLO_REPLY_SIZE);
          encodeHelloInfo({ version: 2, sectorSize: 512, volumeSize: MiB, maxRequestBytes: MiB, features: 0, maxOutstanding: 64, tenantId: 1, nonce: Buffer.alloc(16) }, out, HEADER_SIZE);
          writeHeader(out, HEADER_SIZE + HELLO_REPLY_SIZE, Notice.RESIZED, handle, 0, (2 * MiB) / 512, 0, 0);
          s.write(withNotice(mine) ? out : out.subarray(0, HEADER_SIZE + HELLO_REPLY_SIZE));
          after?.(s, mine);
          return true;
        },
        onError() {},
      }),
    );
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

test('first connect: a notice in the same read as the HELLO reply wins', async () => {
  const srv = await scriptedServer(() => true);
  const c = await connect({ port: (srv.address() as net.AddressInfo).port, timeoutMs: 1000 });
  try {
    assert.equal(c.size, 2 * MiB);
  } finally {
    c.destroy();
    srv.close();
  }
});

test('reconnect: the notice behind the new HELLO reply wins, and no false shrink is reported', async () => {
  // The first connection learns 1 MiB and is cut; the second hears 1 MiB then the 2 MiB notice at once.
  const srv = await scriptedServer(
    (conn) => conn > 0,
    (s, conn) => {
      if (conn === 0) setTimeout(() => s.destroy(), 50);
    },
  );
  const c = await connect({ port: (srv.address() as net.AddressInfo).port, timeoutMs: 1000, reconnect: { initialDelayMs: 10, maxDelayMs: 20 } });
  const events: unknown[] = [];
  c.on('resize', (e) => events.push(e));
  c.on('disconnect', () => {});
  try {
    assert.equal(c.size, MiB);
    await new Promise<void>((resolve) => c.once('reconnect', () => resolve()));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(c.size, 2 * MiB);
    assert.deepEqual(events, [{ size: 2 * MiB, previous: MiB }]);
  } finally {
    c.destroy();
    srv.close();
  }
});

test('a RESIZED frame with a handle is not a notice: counted as unmatched, the size stays', async () => {
  const srv = await scriptedServer(() => true, undefined, 5);
  const c = await connect({ port: (srv.address() as net.AddressInfo).port, timeoutMs: 1000 });
  try {
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(c.size, MiB);
    assert.equal(c.pool.connections[0].unmatched, 1);
  } finally {
    c.destroy();
    srv.close();
  }
});
