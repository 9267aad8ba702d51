/**
 * The client connection against a tiny fake peer over a real socket: the
 * peer decides the order and content of replies, so matching by handle,
 * error mapping, timeouts and the 64-bit handle counter can be checked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { FrameParser, requestPayload, writeHeader, type Frame } from '../../src/protocol/reflex-codec.ts';
import { Cmd, Status } from '../../src/protocol/reflex-constants.ts';
import { ClientConnection, connect, errorFromStatus, LocalStatus, ReflexError, ReflexServerError, ReflexTimeoutError, type ResponseSink } from '../../src/client/index.ts';

/** A frame as the fake peer saw it (the codec's Frame without the magic). */
type Req = Omit<Frame, 'magic'>;

/** A fake server: collects requests and lets the test answer them. */
async function fakePeer(onRequests: (reqs: Req[], sock: net.Socket) => void): Promise<{ port: number; close(): Promise<void>; chunks: number[] }> {
  const sockets = new Set<net.Socket>();
  const chunks: number[] = [];
  const server = net.createServer((sock) => {
    sockets.add(sock);
    const parser = new FrameParser({ sectorSize: 512, maxPayload: 1 << 24, rule: requestPayload });
    sock.on('data', (chunk: Buffer) => {
      chunks.push(chunk.length);
      const reqs: Req[] = [];
      parser.push(chunk, {
        onFrame: (f: Frame) => {
          reqs.push({ ...f, payload: f.payload ? Buffer.from(f.payload) : null });
        },
        onError: () => sock.destroy(),
      });
      if (reqs.length > 0) onRequests(reqs, sock);
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    chunks,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

function reply(sock: net.Socket, r: Req, opcode: number, count = 0, payload: Buffer | null = null): void {
  const b = Buffer.alloc(24 + (payload?.length ?? 0));
  writeHeader(b, 0, opcode, r.handleLo, r.handleHi, r.lbaLo, r.lbaHi, count);
  payload?.copy(b, 24);
  sock.write(b);
}

test('replies sent in reverse order reach the right requests', async () => {
  const peer = await fakePeer((reqs, sock) => {
    // Answer each batch backwards; each read's data names its LBA.
    for (const r of [...reqs].reverse()) {
      const data = Buffer.alloc(r.count * 512, r.lbaLo & 0xff);
      reply(sock, r, Cmd.GET, r.count, data);
    }
  });
  const c = await connect({ port: peer.port, hello: false });
  try {
    const reads = Array.from({ length: 50 }, (_, i) => c.read(i * 512, 512 * (1 + (i % 3))));
    const got = await Promise.all(reads);
    got.forEach((buf, i) => {
      assert.equal(buf.length, 512 * (1 + (i % 3)));
      assert.ok(buf.every((b) => b === (i & 0xff)), `read ${i} got another request's data`);
    });
    // Requests issued in one tick left in one socket write.
    assert.ok(peer.chunks.length <= 2, `expected the 50 requests coalesced, got ${peer.chunks.length} chunks`);
  } finally {
    await c.close();
    await peer.close();
  }
});

test('handles are 64-bit: the counter crosses 2^32 and the high half is matched', async () => {
  const seen: Array<[number, number]> = [];
  const peer = await fakePeer((reqs, sock) => {
    for (const r of reqs) {
      seen.push([r.handleHi, r.handleLo]);
      reply(sock, r, Cmd.SET);
    }
  });
  const conn = await ClientConnection.open({ port: peer.port, firstHandle: 2 ** 32 - 2 });
  const statuses: number[] = [];
  const sink: ResponseSink = { onResponse: (tag, status) => void statuses.push(tag * 1000 + status) };
  try {
    for (let i = 0; i < 4; i++) conn.send(Cmd.SET, i, 1, Buffer.alloc(512), 512, sink, i);
    await waitFor(() => statuses.length === 4);
    assert.deepEqual(seen, [
      [0, 0xffff_fffe],
      [0, 0xffff_ffff],
      [1, 0],
      [1, 1],
    ]);
    assert.deepEqual(statuses.sort((a, b) => a - b), [0, 1000, 2000, 3000]);
    assert.equal(conn.unmatched, 0);
  } finally {
    await conn.close();
    await peer.close();
  }
});

test('a reply whose high handle half differs is not taken for the request', async () => {
  const peer = await fakePeer((reqs, sock) => {
    for (const r of reqs) {
      reply(sock, { ...r, handleHi: r.handleHi + 7 }, Cmd.SET); // bogus
      reply(sock, r, Cmd.SET); // genuine
    }
  });
  const c = await connect({ port: peer.port, hello: false });
  try {
    await c.write(0, Buffer.alloc(512));
    assert.equal(c.pool.connections[0].unmatched, 1);
  } finally {
    await c.close();
    await peer.close();
  }
});

test('server statuses map to typed errors with stable codes', async () => {
  const codes = [Status.EINVAL, Status.ERANGE, Status.EPERM, Status.EIO, Status.EBUSY, Status.ENOTSUP, Status.ENOSPC, Status.ESHUTDOWN];
  const peer = await fakePeer((reqs, sock) => {
    for (const r of reqs) reply(sock, r, codes[r.lbaLo]);
  });
  const c = await connect({ port: peer.port, hello: false });
  try {
    const results = await Promise.allSettled(codes.map((_, i) => c.read(i * 512, 512)));
    const got = results.map((r) => {
      assert.equal(r.status, 'rejected');
      const e = (r as PromiseRejectedResult).reason as ReflexError;
      assert.ok(e instanceof ReflexServerError);
      return e.code;
    });
    assert.deepEqual(got, ['EINVAL', 'ERANGE', 'EPERM', 'EIO', 'EBUSY', 'ENOTSUP', 'ENOSPC', 'ESHUTDOWN']);
  } finally {
    await c.close();
    await peer.close();
  }
  assert.equal(errorFromStatus(LocalStatus.TIMEOUT).code, 'ETIMEDOUT');
  assert.equal(errorFromStatus(LocalStatus.CLOSED).code, 'ECONNRESET');
  assert.equal(errorFromStatus(LocalStatus.PROTOCOL).code, 'EPROTO');
  assert.equal(errorFromStatus(0x0e).code, 'EUNKNOWN');
});

test('an unanswered request times out; the connection still serves others; a late reply is ignored', async () => {
  let held: { r: Req; sock: net.Socket } | null = null;
  const peer = await fakePeer((reqs, sock) => {
    for (const r of reqs) {
      if (r.lbaLo === 99 && held === null) held = { r, sock };
      else reply(sock, r, Cmd.SET);
    }
  });
  const c = await connect({ port: peer.port, hello: false, timeoutMs: 100 });
  try {
    const t0 = performance.now();
    await assert.rejects(c.write(99 * 512, Buffer.alloc(512)), (e: unknown) => e instanceof ReflexTimeoutError && e.code === 'ETIMEDOUT');
    const waited = performance.now() - t0;
    assert.ok(waited >= 95 && waited < 1000, `timed out after ${waited} ms`);
    await c.write(0, Buffer.alloc(512));
    const h = held as { r: Req; sock: net.Socket } | null;
    assert.ok(h !== null);
    reply(h.sock, h.r, Cmd.SET);
    await c.write(512, Buffer.alloc(512));
    assert.equal(c.pool.connections[0].unmatched, 1);
  } finally {
    await c.close();
    await peer.close();
  }
});

test('the peer closing fails outstanding requests with ECONNRESET', async () => {
  const peer = await fakePeer((_reqs, sock) => sock.destroy());
  const c = await connect({ port: peer.port, hello: false });
  try {
    await assert.rejects(c.read(0, 512), (e: unknown) => e instanceof ReflexError && e.code === 'ECONNRESET');
    await assert.rejects(c.read(0, 512), (e: unknown) => e instanceof ReflexError && e.code === 'ECONNRESET');
  } finally {
    await c.close();
    await peer.close();
  }
});

test('a v1 server answering HELLO with EINVAL is used with the configured sector size', async () => {
  const peer = await fakePeer((reqs, sock) => {
    for (const r of reqs) {
      if (r.opcode === Cmd.HELLO) reply(sock, r, Status.EINVAL);
      else reply(sock, r, Cmd.GET, r.count, Buffer.alloc(r.count * 4096, 7));
    }
  });
  const c = await connect({ port: peer.port, sectorSize: 4096 });
  try {
    assert.equal(c.info, null);
    assert.equal(c.sectorSize, 4096);
    await assert.rejects(c.read(512, 4096), RangeError);
    const b = await c.read(8192, 4096);
    assert.equal(b.length, 4096);
    assert.equal(b[4095], 7);
  } finally {
    await c.close();
    await peer.close();
  }
});

test('misaligned offsets and lengths are RangeErrors and send nothing', async () => {
  let got = 0;
  const peer = await fakePeer((reqs) => void (got += reqs.length));
  const c = await connect({ port: peer.port, hello: false });
  try {
    await assert.rejects(c.read(1, 512), /offset 1 is not a multiple of the sector size 512/);
    await assert.rejects(c.write(0, Buffer.alloc(100)), /length 100 is not a multiple/);
    await assert.rejects(c.trim(-512, 512), RangeError);
    await assert.rejects(c.writeZeroes(0, 0), RangeError);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(got, 0);
  } finally {
    await c.close();
    await peer.close();
  }
});

async function waitFor(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('with reconnect, a request refused with ESHUTDOWN goes once to another connection, and the draining one gets no more', async () => {
  // The first connection to arrive plays a draining server: ESHUTDOWN to everything.
  const seen = new Map<net.Socket, number>();
  let draining: net.Socket | null = null;
  const peer = await fakePeer((reqs, sock) => {
    draining ??= sock;
    seen.set(sock, (seen.get(sock) ?? 0) + reqs.length);
    for (const r of reqs) {
      if (sock === draining) reply(sock, r, Status.ESHUTDOWN);
      else reply(sock, r, Cmd.GET, r.count, Buffer.alloc(r.count * 512, 7));
    }
  });
  const c = await connect({ port: peer.port, connections: 2, hello: false, timeoutMs: 2000, reconnect: true });
  try {
    // The pool picks the least busy connection, round robin on ties: both get some.
    const reads = await Promise.all(Array.from({ length: 8 }, (_, i) => c.read(i * 512, 512)));
    for (const r of reads) assert.ok(r.equals(Buffer.alloc(512, 7)));
    const onDraining = seen.get(draining!) ?? 0;
    assert.ok(onDraining >= 1 && onDraining <= 8, `the draining connection saw ${onDraining} requests`);
    // Later requests avoid it altogether.
    await Promise.all(Array.from({ length: 8 }, (_, i) => c.read(i * 512, 512)));
    assert.equal(seen.get(draining!), onDraining, 'a request went to the draining connection again');
    assert.ok(c.pool.connections.some((conn) => conn.draining));
  } finally {
    c.destroy();
    await peer.close();
  }
});
