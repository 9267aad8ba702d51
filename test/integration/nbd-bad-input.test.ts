// The NBD front end against misbehaving clients, over raw sockets: wrong
// magics, unknown and oversized options, oversized requests, floods and
// disconnects at awkward moments. Each gets an error reply or a closed
// connection, while a well-behaved client on the same server keeps getting
// correct data.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ClientFlag, Cmd, Magic, NbdError, Opt, Rep, ReplyType } from '../../src/nbd/constants.ts';
import { encodeClientFlags, encodeInfoOption, encodeOption, encodeRequest } from '../../src/nbd/client-codec.ts';
import { Field } from '../../src/dataplane/tenant-counters.ts';
import { startNbdTestServer, type NbdTestServer } from '../interop/nbd-support.ts';
import { Raw, go, greet, readOptionReply, simple } from '../helpers/nbd-raw.ts';

let server: NbdTestServer;

before(async () => {
  server = await startNbdTestServer();
});

after(async () => {
  await server?.srv.close();
});

async function session(name = 'vol1'): Promise<Raw> {
  const r = await greet(server.port);
  await go(r, name);
  return r;
}

function connections(tenant: number): number {
  return server.srv.counters.total(tenant, Field.CONNECTIONS);
}

/** A well-behaved client doing write/read/verify until told to stop. */
function goodClient(): { stop: () => Promise<number> } {
  let running = true;
  const done = (async () => {
    const r = await session('vol1');
    let rounds = 0;
    let cookie = 1;
    while (running) {
      const data = randomBytes(4096 + (rounds % 7) * 100);
      const offset = (rounds % 64) * 8192 + 17;
      r.send(encodeRequest({ type: Cmd.WRITE, cookieLo: cookie, offset, length: data.length }, data));
      const w = await simple(r);
      assert.deepEqual([w.error, w.cookie], [0, cookie++]);
      r.send(encodeRequest({ type: Cmd.READ, cookieLo: cookie, offset, length: data.length }));
      const rd = await simple(r, data.length);
      assert.deepEqual([rd.error, rd.cookie], [0, cookie++]);
      assert.ok(rd.data.equals(data), `round ${rounds}: read back differs`);
      rounds++;
      await new Promise((res) => setImmediate(res));
    }
    r.send(encodeRequest({ type: Cmd.DISC, length: 0 }));
    await r.closed();
    return rounds;
  })();
  return {
    stop: async () => {
      running = false;
      return done;
    },
  };
}

test('misbehaving clients get errors or a closed connection; a good client is unaffected', { timeout: 60_000 }, async (t) => {
  const base = connections(0) + connections(1);
  const good = goodClient();

  await t.test('wrong option magic in the handshake closes the connection', async () => {
    const r = await greet(server.port);
    const bad = encodeOption(Opt.GO);
    bad.writeUInt32BE(0xdeadbeef, 0);
    r.send(bad);
    const rest = await r.closed();
    assert.equal(rest.length, 0, 'no reply to a bad magic');
  });

  await t.test('unknown client flags close the connection', async () => {
    const r = await Raw.connect(server.port);
    await r.read(18);
    r.send(encodeClientFlags(0x80));
    await r.closed();
  });

  await t.test('unknown options get ERR_UNSUP and negotiation continues', async () => {
    const r = await greet(server.port);
    r.send(encodeOption(99, Buffer.from('junk')));
    const u = await readOptionReply(r);
    assert.deepEqual([u.option, u.type], [99, Rep.ERR_UNSUP]);
    r.send(encodeOption(Opt.EXTENDED_HEADERS));
    assert.equal((await readOptionReply(r)).type, Rep.ERR_UNSUP);
    // An option too long to buffer is skipped and refused.
    r.send(encodeOption(Opt.INFO, Buffer.alloc(200_000)));
    assert.equal((await readOptionReply(r)).type, Rep.ERR_TOO_BIG);
    r.send(encodeInfoOption(Opt.GO, 'no-such-export', []));
    assert.equal((await readOptionReply(r)).type, Rep.ERR_UNKNOWN);
    await go(r, 'vol2');
    r.send(encodeRequest({ type: Cmd.READ, cookieLo: 5, offset: 0, length: 512 }));
    const rd = await simple(r, 512);
    assert.deepEqual([rd.error, rd.cookie, rd.data.length], [0, 5, 512]);
    r.destroy();
  });

  await t.test('wrong request magic: replies in flight are sent, then the connection closes', async () => {
    const r = await session();
    const data = Buffer.alloc(1000, 0x5a);
    r.send(Buffer.concat([
      encodeRequest({ type: Cmd.WRITE, cookieLo: 1, offset: 4096, length: data.length }, data),
      encodeRequest({ type: Cmd.READ, cookieLo: 2, offset: 0, length: 16, magic: 0x12345678 }),
      encodeRequest({ type: Cmd.READ, cookieLo: 3, offset: 0, length: 16 }),
    ]));
    const rest = await r.closed();
    assert.equal(rest.length, 16, 'only the write is answered');
    assert.equal(rest.readUInt32BE(4), 0);
    assert.equal(rest.readUInt32BE(12), 1);
  });

  await t.test('oversized, out-of-range and unknown requests are refused and the stream stays in step', async () => {
    const r = await session('vol2');
    const size = 64 << 20;
    r.send(encodeRequest({ type: Cmd.READ, cookieLo: 1, offset: 0, length: 64 << 20 }));
    assert.deepEqual(await simple(r), { error: NbdError.EOVERFLOW, cookie: 1, data: Buffer.alloc(0) });
    // An oversized write: its payload is skipped, the next request is parsed normally.
    const huge = (32 << 20) + 4096;
    r.send(encodeRequest({ type: Cmd.WRITE, cookieLo: 2, offset: 0, length: huge }, Buffer.alloc(huge, 1)));
    assert.equal((await simple(r)).error, NbdError.EOVERFLOW);
    r.send(encodeRequest({ type: Cmd.READ, cookieLo: 3, offset: size - 10, length: 20 }));
    assert.equal((await simple(r)).error, NbdError.EINVAL);
    r.send(encodeRequest({ type: Cmd.WRITE, cookieLo: 4, offset: size - 10, length: 20 }, Buffer.alloc(20)));
    assert.equal((await simple(r)).error, NbdError.ENOSPC);
    r.send(encodeRequest({ type: 42, cookieLo: 5, offset: 0, length: 0 }));
    assert.equal((await simple(r)).error, NbdError.EINVAL);
    r.send(encodeRequest({ type: Cmd.READ, flags: 0x8000, cookieLo: 6, offset: 0, length: 8 }));
    assert.equal((await simple(r)).error, NbdError.EINVAL);
    // BLOCK_STATUS needs structured replies and a context: refused here.
    r.send(encodeRequest({ type: Cmd.BLOCK_STATUS, cookieLo: 7, offset: 0, length: 4096 }));
    assert.equal((await simple(r)).error, NbdError.EINVAL);
    r.send(encodeRequest({ type: Cmd.FLUSH, cookieLo: 8, offset: 0, length: 0 }));
    assert.deepEqual(await simple(r), { error: 0, cookie: 8, data: Buffer.alloc(0) });
    r.send(encodeRequest({ type: Cmd.DISC, length: 0 }));
    await r.closed();
  });

  await t.test('a flood of pipelined requests beyond the outstanding limit is answered in full', async () => {
    const r = await session('vol2');
    const n = 5000;
    const reqs: Buffer[] = [];
    for (let i = 0; i < n; i++) reqs.push(encodeRequest({ type: Cmd.READ, cookieLo: i + 1, offset: (i % 100) * 512, length: 512 }));
    r.send(Buffer.concat(reqs));
    const seen = new Set<number>();
    for (let i = 0; i < n; i++) {
      const rep = await simple(r, 512);
      assert.equal(rep.error, 0);
      seen.add(rep.cookie);
    }
    assert.equal(seen.size, n);
    r.destroy();
  });

  await t.test('a client that never reads its 8 MiB replies is throttled by reply bytes', async () => {
    const r = await session('vol2');
    const before = server.srv.counters.total(1, Field.READ_OPS);
    const reqs: Buffer[] = [];
    for (let i = 0; i < 200; i++) reqs.push(encodeRequest({ type: Cmd.READ, cookieLo: i + 1, offset: (i % 7) * (8 << 20), length: 8 << 20 }));
    r.sock.pause(); // never read: 1.6 GiB of replies asked for
    r.send(Buffer.concat(reqs));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const served = server.srv.counters.total(1, Field.READ_OPS) - before;
    // A 4 MiB high-water mark lets a read or two through, then the connection is not read.
    assert.ok(served <= 4, `${served} reads of 8 MiB served to a client that reads nothing`);
    r.destroy();
  });

  await t.test('structured session: errors come as ERROR chunks', async () => {
    const r = await greet(server.port);
    r.send(encodeOption(Opt.STRUCTURED_REPLY));
    assert.equal((await readOptionReply(r)).type, Rep.ACK);
    await go(r, 'vol2');
    r.send(encodeRequest({ type: Cmd.READ, cookieLo: 9, offset: 64 << 20, length: 1 }));
    const h = await r.read(20);
    assert.equal(h.readUInt32BE(0), Magic.STRUCTURED_REPLY);
    assert.equal(h.readUInt16BE(6), ReplyType.ERROR);
    assert.equal(h.readUInt32BE(12), 9);
    const p = await r.read(h.readUInt32BE(16));
    assert.equal(p.readUInt32BE(0), NbdError.EINVAL);
    r.destroy();
  });

  await t.test('disconnects mid-handshake and mid-write leave the server serving', async () => {
    const a = await greet(server.port);
    a.send(encodeOption(Opt.GO).subarray(0, 10)); // half an option header
    a.destroy();
    const b = await session('vol1');
    const data = Buffer.alloc(65536, 3);
    b.send(encodeRequest({ type: Cmd.WRITE, cookieLo: 1, offset: 0, length: data.length }, data).subarray(0, 30_000));
    await new Promise((res) => setTimeout(res, 20));
    b.destroy();
    const c = await session('vol1');
    c.send(encodeRequest({ type: Cmd.DISC, length: 0 }).subarray(0, 5)); // half a request header, then gone
    c.sock.end();
    await c.closed();
  });

  const rounds = await good.stop();
  assert.ok(rounds > 10, `the good client made progress (${rounds} rounds)`);
  // Every connection above went away and was accounted for.
  const deadline = Date.now() + 5000;
  while (connections(0) + connections(1) !== base && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  assert.equal(connections(0) + connections(1), base, 'connection counters back to where they were');
});
