import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  FrameParser,
  ParseError,
  decodeHelloInfo,
  encodeHelloInfo,
  hi32,
  lbaNumber,
  lo32,
  requestPayload,
  responsePayload,
  writeHeader,
  type Frame,
  type ParseErrorCode,
} from '../../src/protocol/reflex-codec.ts';
import { Cmd, HEADER_SIZE, Status } from '../../src/protocol/reflex-constants.ts';

type Seen = Omit<Frame, 'magic'>;

function collect(parser: FrameParser, chunks: Buffer[]): { frames: Seen[]; errors: Array<[ParseErrorCode, Seen]> } {
  const frames: Seen[] = [];
  const errors: Array<[ParseErrorCode, Seen]> = [];
  const copy = (f: Frame): Seen => ({ ...f, payload: f.payload ? Buffer.from(f.payload) : null });
  for (const c of chunks) {
    parser.push(c, { onFrame: (f) => void frames.push(copy(f)), onError: (code, f) => void errors.push([code, copy(f)]) });
  }
  return { frames, errors };
}

function frame(opcode: number, handle: number, lba: number, count: number, payload?: Buffer): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  writeHeader(h, 0, opcode, lo32(handle), hi32(handle), lo32(lba), hi32(lba), count);
  return payload ? Buffer.concat([h, payload]) : h;
}

const server = () => new FrameParser({ sectorSize: 512, maxPayload: 1 << 20, rule: requestPayload });

describe('ReFlex codec', () => {
  it('round-trips every request opcode, whole and byte by byte', () => {
    const data = Buffer.alloc(1024, 9);
    const stream = Buffer.concat([
      frame(Cmd.GET, 1, 10, 8),
      frame(Cmd.SET, 2, 11, 2, data),
      frame(Cmd.SET_NO_ACK, 3, 12, 2, data),
      frame(Cmd.FLUSH, 4, 0, 0),
      frame(Cmd.TRIM, 5, 13, 100),
      frame(Cmd.WRITE_ZEROES, 6, 14, 7),
      frame(Cmd.HELLO, 7, 2, 3, Buffer.from('abc')),
      frame(Cmd.ATTACH, 8, 0, 2, Buffer.from('xy')),
    ]);
    const whole = collect(server(), [stream]);
    const bytewise = collect(
      server(),
      Array.from(stream, (b) => Buffer.from([b])),
    );
    for (const got of [whole, bytewise]) {
      assert.equal(got.errors.length, 0);
      assert.deepEqual(
        got.frames.map((f) => [f.opcode, f.handleLo, f.lbaLo, f.count, f.payload?.length ?? 0]),
        [
          [Cmd.GET, 1, 10, 8, 0],
          [Cmd.SET, 2, 11, 2, 1024],
          [Cmd.SET_NO_ACK, 3, 12, 2, 1024],
          [Cmd.FLUSH, 4, 0, 0, 0],
          [Cmd.TRIM, 5, 13, 100, 0],
          [Cmd.WRITE_ZEROES, 6, 14, 7, 0],
          [Cmd.HELLO, 7, 2, 3, 3],
          [Cmd.ATTACH, 8, 0, 2, 2],
        ],
      );
      assert.deepEqual(got.frames[1].payload, data);
    }
  });

  it('parses in random chunkings identically', () => {
    const frames: Buffer[] = [];
    for (let i = 0; i < 200; i++) frames.push(frame(i % 2 ? Cmd.SET : Cmd.GET, i, i * 3, 1 + (i % 4), i % 2 ? Buffer.alloc((1 + (i % 4)) * 512, i) : undefined));
    const stream = Buffer.concat(frames);
    let seed = 7;
    for (let trial = 0; trial < 20; trial++) {
      const chunks: Buffer[] = [];
      for (let o = 0; o < stream.length; ) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        const n = 1 + (seed % 3000);
        chunks.push(stream.subarray(o, o + n));
        o += n;
      }
      const got = collect(server(), chunks);
      assert.equal(got.frames.length, 200);
      got.frames.forEach((f, i) => {
        assert.equal(f.handleLo, i);
        if (i % 2) assert.deepEqual(f.payload, Buffer.alloc((1 + (i % 4)) * 512, i));
      });
    }
  });

  it('keeps 64-bit handles and LBAs exact; lbaNumber refuses values past 2^53', () => {
    const h = frame(Cmd.GET, 0, 0, 1);
    h.writeUInt32LE(0x89abcdef, 4);
    h.writeUInt32LE(0x01234567, 8);
    h.writeUInt32LE(0xffffffff, 12);
    h.writeUInt32LE(0x001fffff, 16);
    const [f] = collect(server(), [h]).frames;
    assert.equal(f.handleLo, 0x89abcdef);
    assert.equal(f.handleHi, 0x01234567);
    assert.equal(lbaNumber(f as Frame), 2 ** 53 - 1);
    h.writeUInt32LE(0x00200000, 16);
    assert.equal(lbaNumber(collect(server(), [h]).frames[0] as Frame), -1);
  });

  it('reports a bad magic once and stops', () => {
    const bad = frame(Cmd.GET, 5, 0, 1);
    bad.writeUInt16LE(25, 0);
    const got = collect(server(), [Buffer.concat([frame(Cmd.GET, 1, 0, 1), bad, frame(Cmd.GET, 6, 0, 1)])]);
    assert.equal(got.frames.length, 1);
    assert.equal(got.errors.length, 1);
    assert.equal(got.errors[0][0], ParseError.BAD_MAGIC);
    assert.equal(got.errors[0][1].handleLo, 5);
  });

  it('refuses a payload above the limit before buffering it', () => {
    const got = collect(server(), [frame(Cmd.SET, 9, 0, 4096)]);
    assert.equal(got.errors[0][0], ParseError.TOO_LARGE);
    assert.equal(got.errors[0][1].handleLo, 9);
  });

  it('pauses when the sink says so and resumes where it stopped', () => {
    const p = server();
    const seen: number[] = [];
    const sink = {
      onFrame: (f: Frame) => {
        seen.push(f.handleLo);
        return seen.length % 2 !== 0 ? true : false;
      },
      onError: () => assert.fail('no error expected'),
    };
    const stream = Buffer.concat([1, 2, 3, 4, 5].map((i) => frame(Cmd.SET, i, 0, 1, Buffer.alloc(512, i))));
    p.push(stream, sink);
    assert.deepEqual(seen, [1, 2]);
    stream.fill(0); // the caller may reuse its chunk: the parser must have kept its own copy
    p.resume(sink);
    assert.deepEqual(seen, [1, 2, 3, 4]);
    p.resume(sink);
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  });

  it('responses: GET carries data, errors and other opcodes do not', () => {
    assert.equal(responsePayload(Cmd.GET, 8, 512), 4096);
    assert.equal(responsePayload(Cmd.SET, 8, 512), 0);
    assert.equal(responsePayload(Status.ERANGE, 8, 512), 0);
    assert.equal(responsePayload(Cmd.HELLO, 32, 512), 32);
    assert.equal(requestPayload(Cmd.GET, 8, 4096), 0);
    assert.equal(requestPayload(Cmd.SET, 8, 4096), 32768);
  });

  it('HELLO info round-trips', () => {
    const info = { version: 2, sectorSize: 4096, volumeSize: 3 * 2 ** 40 + 4096, maxRequestBytes: 1 << 20, features: 0x3f, maxOutstanding: 1024, tenantId: 7, nonce: Buffer.alloc(16, 0xab) };
    assert.deepEqual(decodeHelloInfo(encodeHelloInfo(info)), info);
    assert.throws(() => decodeHelloInfo(Buffer.alloc(10)), /expected 48/);
  });
});

describe('FrameParser memory', () => {
  it('gives back the reassembly buffer of a large SET when asked, once the parser is empty', () => {
    const p = server();
    const whole = frame(Cmd.SET, 1, 0, 2048, Buffer.alloc(1 << 20, 7));
    const chunks: Buffer[] = [];
    for (let at = 0; at < whole.length; at += 65536) chunks.push(whole.subarray(at, at + 65536));
    const { frames } = collect(p, chunks);
    assert.equal(frames.length, 1);
    assert.equal(frames[0].payload!.length, 1 << 20);
    assert.equal(p.buffered, 0);
    assert.ok(p.retainedBytes > 1 << 20, 'kept while the stream may go on');
    p.releaseMemory();
    assert.ok(p.retainedBytes <= 64 * 1024, `${p.retainedBytes} bytes kept by an idle parser`);
  });

  it('keeps a small buffer for frames split across reads', () => {
    const p = server();
    const whole = frame(Cmd.SET, 1, 0, 8, Buffer.alloc(4096, 7));
    const { frames } = collect(p, [whole.subarray(0, 100), whole.subarray(100)]);
    assert.equal(frames.length, 1);
    assert.ok(p.retainedBytes > 0 && p.retainedBytes <= 64 * 1024, `${p.retainedBytes}`);
  });
});
