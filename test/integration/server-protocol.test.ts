/**
 * The server against raw frames over real sockets: correct data for correct
 * requests, a clear error (or a closed connection) for every malformed one,
 * and a well-behaved client that keeps getting correct data throughout.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';
import { Cmd, Status } from '../../src/protocol/reflex-constants.ts';
import { decodeHelloInfo, FLAG_FUA } from '../../src/protocol/reflex-codec.ts';
import { RawPeer, header } from '../helpers/raw-peer.ts';

const SECTOR = 512;
const VOLUME = 64 * 1024 * 1024;

let server: RunningServer;
let port: number;

/** A client that writes a pattern, reads it back and checks it, in a loop, until stopped. */
function wellBehaved(p: number, lbaBase: number): { stop: () => Promise<number> } {
  let running = true;
  let rounds = 0;
  const done = (async () => {
    const peer = await RawPeer.connect(p);
    let handle = 1;
    while (running) {
      const data = Buffer.alloc(8 * SECTOR, (rounds % 250) + 1);
      const lba = lbaBase + (rounds % 16) * 8;
      const before = peer.replies.length;
      peer.send(header(Cmd.SET, handle++, lba, 8), data, header(Cmd.GET, handle++, lba, 8));
      const replies = (await peer.waitReplies(before + 2)).slice(before);
      const get = replies.find((r) => r.opcode === Cmd.GET);
      assert.ok(get, `well-behaved client got ${JSON.stringify(replies.map((r) => r.opcode))}`);
      assert.deepEqual(get.payload, data, 'well-behaved client read back different data');
      rounds++;
    }
    peer.close();
    return rounds;
  })();
  return {
    stop: async () => {
      running = false;
      return done;
    },
  };
}

before(async () => {
  server = await startServer(resolveConfig({ memory: VOLUME, workers: 2, ports: [{ port: 0 }], maxOutstanding: 64 }, 2));
  port = server.bindings[0].port;
});

after(async () => {
  await server.close();
});

describe('correct requests', () => {
  it('writes read back identical, pipelined, completions matched by handle', async () => {
    const peer = await RawPeer.connect(port);
    const frames: Buffer[] = [];
    const expect = new Map<number, Buffer>();
    for (let i = 0; i < 50; i++) {
      const count = 1 + (i % 9);
      const data = Buffer.alloc(count * SECTOR);
      for (let j = 0; j < data.length; j++) data[j] = (i * 31 + j) & 0xff;
      frames.push(header(Cmd.SET, 1000 + i, i * 16, count), data);
      expect.set(2000 + i, data);
    }
    peer.send(...frames);
    await peer.waitReplies(50);
    for (let i = 0; i < 50; i++) {
      const r = peer.byHandle(1000 + i)!;
      assert.equal(r.opcode, Cmd.SET);
      assert.equal(r.count, 0);
      assert.equal(r.lba, i * 16);
    }
    peer.send(...Array.from({ length: 50 }, (_, i) => header(Cmd.GET, 2000 + i, i * 16, 1 + (i % 9))));
    await peer.waitReplies(100);
    for (const [h, data] of expect) assert.deepEqual(peer.byHandle(h)!.payload, data, `handle ${h}`);
    peer.close();
  });

  it('echoes 64-bit handles bit-exactly', async () => {
    const peer = await RawPeer.connect(port);
    const h = header(Cmd.GET, 0, 3, 1);
    h.writeUInt32LE(0xdeadbeef, 4);
    h.writeUInt32LE(0xffffffff, 8);
    peer.send(h);
    await peer.waitReplies(1);
    assert.equal(peer.replies[0].handle, 0xffffffff * 2 ** 32 + 0xdeadbeef);
    peer.close();
  });

  it('SET_NO_ACK sends no reply and its data is there for the next read', async () => {
    const peer = await RawPeer.connect(port);
    const data = Buffer.alloc(SECTOR * 2, 0x5a);
    peer.send(header(Cmd.SET_NO_ACK, 7, 4000, 2), data, header(Cmd.FLUSH, 8, 0, 0));
    await peer.waitReplies(1);
    assert.equal(peer.replies[0].handle, 8, 'only the FLUSH is answered');
    assert.equal(peer.replies[0].opcode, Cmd.FLUSH);
    peer.send(header(Cmd.GET, 9, 4000, 2));
    await peer.waitReplies(2);
    assert.deepEqual(peer.replies[1].payload, data);
    peer.close();
  });

  it('TRIM and WRITE_ZEROES read back as zeros; FUA writes are acknowledged', async () => {
    const peer = await RawPeer.connect(port);
    const data = Buffer.alloc(SECTOR * 4, 0xee);
    peer.send(header(Cmd.SET | FLAG_FUA, 1, 5000, 4), data, header(Cmd.SET, 2, 5004, 4), data);
    await peer.waitReplies(2);
    assert.ok(peer.replies.every((r) => r.opcode === Cmd.SET));
    peer.send(header(Cmd.TRIM, 3, 5000, 4), header(Cmd.WRITE_ZEROES, 4, 5004, 2));
    await peer.waitReplies(4);
    assert.equal(peer.byHandle(3)!.opcode, Cmd.TRIM);
    assert.equal(peer.byHandle(4)!.opcode, Cmd.WRITE_ZEROES);
    peer.send(header(Cmd.GET, 5, 5000, 8));
    await peer.waitReplies(5);
    const got = peer.byHandle(5)!.payload!;
    assert.deepEqual(got.subarray(0, 6 * SECTOR), Buffer.alloc(6 * SECTOR));
    assert.deepEqual(got.subarray(6 * SECTOR), Buffer.alloc(2 * SECTOR, 0xee));
    peer.close();
  });

  it('HELLO reports sector size, volume size, maximum request and features', async () => {
    const peer = await RawPeer.connect(port);
    peer.send(header(Cmd.HELLO, 42, 2, 0));
    const [r] = await peer.waitReplies(1);
    assert.equal(r.opcode, Cmd.HELLO);
    const info = decodeHelloInfo(r.payload!);
    assert.equal(info.sectorSize, SECTOR);
    assert.equal(info.volumeSize, VOLUME);
    assert.equal(info.maxRequestBytes, 1 << 20);
    assert.ok(info.features !== 0);
    peer.close();
  });
});

describe('bad input, with a well-behaved client running alongside', () => {
  it('answers each bad request with its error and keeps the connection', async () => {
    const good = wellBehaved(port, 100_000 - 30_000);
    const peer = await RawPeer.connect(port);
    const cases: Array<[Buffer, number, string]> = [
      [header(0x77, 1, 0, 1), Status.EINVAL, 'unknown opcode'],
      [header(Cmd.GET, 2, VOLUME / SECTOR, 1), Status.ERANGE, 'lba just past the end'],
      [header(Cmd.GET, 3, VOLUME / SECTOR - 1, 2), Status.ERANGE, 'range straddling the end'],
      [header(Cmd.GET, 4, 2 ** 53 + 2, 1), Status.ERANGE, 'lba above 2^53'],
      [header(Cmd.GET, 6, 0, 0), Status.EINVAL, 'lba_count 0'],
      [header(Cmd.GET, 7, 0, (1 << 20) / SECTOR + 1), Status.EINVAL, 'lba_count above the maximum'],
      [header(Cmd.GET | 0x4000, 8, 0, 1), Status.EINVAL, 'unknown flag'],
      [header(Cmd.ATTACH, 9, 0, 0), Status.EINVAL, 'ATTACH with an empty payload'],
      [header(Cmd.TRIM, 10, VOLUME / SECTOR, 1), Status.ERANGE, 'trim past the end'],
    ];
    // lba = 2^64 - 1 with count 2: lba + count overflows 64 bits.
    const overflow = header(Cmd.GET, 5, 0, 2);
    overflow.writeUInt32LE(0xffffffff, 12);
    overflow.writeUInt32LE(0xffffffff, 16);
    cases.push([overflow, Status.ERANGE, 'lba + count overflowing 64 bits']);
    // A SET whose range is bad still carries its payload: the stream stays in sync.
    cases.push([Buffer.concat([header(Cmd.SET, 11, VOLUME / SECTOR, 1), Buffer.alloc(SECTOR)]), Status.ERANGE, 'write past the end']);
    for (const [frame] of cases) peer.send(frame);
    peer.send(header(Cmd.GET, 99, 0, 1));
    await peer.waitReplies(cases.length + 1);
    for (const [frame, status, what] of cases) {
      const h = frame.readUInt32LE(4);
      const r = peer.byHandle(h);
      assert.ok(r, `${what}: no reply`);
      assert.equal(r.opcode, status, `${what}: status`);
      assert.equal(r.count, 0, `${what}: error replies carry no payload`);
    }
    assert.equal(peer.byHandle(99)!.opcode, Cmd.GET, 'the connection still serves reads');
    assert.equal(peer.closed, false);
    peer.close();
    assert.ok((await good.stop()) > 0);
  });

  it('wrong magic: an EINVAL reply, then the connection is closed', async () => {
    const good = wellBehaved(port, 80_000);
    const peer = await RawPeer.connect(port);
    peer.send(header(Cmd.GET, 1, 0, 1), header(Cmd.GET, 2, 0, 1, 0x1234), header(Cmd.GET, 3, 0, 1));
    await peer.waitClosed();
    assert.equal(peer.byHandle(2)?.opcode, Status.EINVAL);
    assert.equal(peer.byHandle(3), undefined, 'nothing after a framing error is served');
    assert.ok((await good.stop()) > 0);
  });

  it('a write larger than the maximum: EINVAL, then closed (its payload cannot be framed)', async () => {
    const peer = await RawPeer.connect(port);
    peer.send(header(Cmd.SET, 1, 0, (2 << 20) / SECTOR));
    await peer.waitClosed();
    assert.equal(peer.byHandle(1)?.opcode, Status.EINVAL);
  });

  it('truncated frames and disconnects mid-payload do not disturb others', async () => {
    const good = wellBehaved(port, 90_000);
    for (let i = 0; i < 20; i++) {
      const peer = await RawPeer.connect(port);
      if (i % 2 === 0) peer.send(header(Cmd.GET, 1, 0, 1).subarray(0, 1 + (i % 23)));
      else peer.send(header(Cmd.SET, 1, 120_000, 8), Buffer.alloc(100 * i, 1));
      peer.close();
    }
    // The half-written SET never reached the device.
    const check = await RawPeer.connect(port);
    check.send(header(Cmd.GET, 5, 120_000, 8));
    const [r] = await check.waitReplies(1);
    assert.deepEqual(r.payload, Buffer.alloc(8 * SECTOR));
    check.close();
    assert.ok((await good.stop()) > 0);
  });

  it('a client that never reads its responses is throttled; others carry on', async () => {
    const good = wellBehaved(port, 100_000);
    const hog = net.connect({ port, host: '127.0.0.1' });
    await new Promise((r) => hog.once('connect', r));
    hog.pause(); // never read
    const burst = Buffer.concat(Array.from({ length: 256 }, (_, i) => header(Cmd.GET, i, 0, 2048)));
    let written = 0;
    const deadline = Date.now() + 1500;
    while (Date.now() < deadline) {
      // Keep pushing 1 MiB reads until the kernel's buffers are full.
      if (hog.write(burst)) written += 256;
      await new Promise((r) => setTimeout(r, 5));
    }
    const rss = process.memoryUsage().rss;
    const rounds = await good.stop();
    assert.ok(rounds > 5, `well-behaved client made ${rounds} rounds while the hog pushed`);
    assert.ok(hog.writableLength > 0 || written < 1_000_000, 'the hog was pushed back');
    assert.ok(rss < 2 * 2 ** 30, `server process RSS ${rss} stays bounded`);
    hog.destroy();
  });

  it('1,000 connections opened and dropped', async () => {
    const good = wellBehaved(port, 110_000);
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(
        Array.from(
          { length: 100 },
          () =>
            new Promise<void>((resolve) => {
              const s = net.connect({ port, host: '127.0.0.1' }, () => {
                s.write(header(Cmd.GET, 1, 0, 1));
                s.destroy();
                resolve();
              });
              s.on('error', () => resolve());
            }),
        ),
      );
    }
    assert.ok((await good.stop()) > 0);
    const after = await RawPeer.connect(port);
    after.send(header(Cmd.GET, 1, 0, 1));
    const [r] = await after.waitReplies(1);
    assert.equal(r.opcode, Cmd.GET);
    after.close();
  });
});
