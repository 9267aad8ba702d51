import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NbdError, ReplyFlag, ReplyType, StateFlag } from '../../src/nbd/constants.ts';
import {
  blockStatusChunk,
  errorChunk,
  errorOffsetChunk,
  noneChunk,
  offsetDataHeader,
  offsetHoleChunk,
  OFFSET_DATA_HEADER_SIZE,
  simpleReply,
  writeOffsetDataHeader,
  writeSimpleReply,
  writeStructuredHeader,
} from '../../src/nbd/replies.ts';
import { decodeReplies } from '../../src/nbd/client-codec.ts';

test('simple reply: exact bytes', () => {
  assert.equal(simpleReply(0, 0x01020304, 0x05060708).toString('hex'), '67446698' + '00000000' + '0102030405060708');
  assert.equal(simpleReply(NbdError.ENOSPC, 0xffffffff, 0).toString('hex'), '67446698' + '0000001c' + 'ffffffff00000000');
});

test('writeSimpleReply writes at an offset and returns the next offset', () => {
  const b = Buffer.alloc(40, 0xee);
  assert.equal(writeSimpleReply(b, 4, NbdError.EIO, 1, 2), 20);
  assert.equal(writeSimpleReply(b, 20, 0, 3, 4), 36);
  assert.equal(b[3], 0xee);
  assert.equal(b[36], 0xee);
  const { replies } = decodeReplies(b.subarray(4, 36), () => 0);
  assert.deepEqual(replies, [
    { kind: 'simple', error: NbdError.EIO, cookie: (1n << 32n) | 2n, data: Buffer.alloc(0) },
    { kind: 'simple', error: 0, cookie: (3n << 32n) | 4n, data: Buffer.alloc(0) },
  ]);
});

test('structured header: exact bytes', () => {
  const b = Buffer.alloc(20);
  assert.equal(writeStructuredHeader(b, 0, ReplyFlag.DONE, ReplyType.ERROR, 0xa, 0xb, 0x10203), 20);
  assert.equal(b.toString('hex'), '668e33ef' + '0001' + '8001' + '0000000a0000000b' + '00010203');
});

test('OFFSET_DATA header: length covers offset + data; data follows on the wire', () => {
  const data = Buffer.from('hello world');
  const h = offsetDataHeader(7, 8, 2 ** 40 + 5, data.length, true);
  assert.equal(h.length, OFFSET_DATA_HEADER_SIZE);
  const { replies, rest } = decodeReplies(Buffer.concat([h, data]), () => 0);
  assert.equal(rest.length, 0);
  assert.equal(replies.length, 1);
  const r = replies[0];
  assert.ok(r.kind === 'structured');
  assert.equal(r.type, ReplyType.OFFSET_DATA);
  assert.equal(r.flags, ReplyFlag.DONE);
  assert.equal(r.cookie, (7n << 32n) | 8n);
  assert.equal(r.payload.readBigUInt64BE(0), 2n ** 40n + 5n);
  assert.equal(r.payload.toString('utf8', 8), 'hello world');

  const b = Buffer.alloc(30);
  assert.equal(writeOffsetDataHeader(b, 2, 0, 1, 0, 1, false), 30);
  assert.equal(b.readUInt16BE(6), 0, 'not DONE');
  assert.throws(() => offsetDataHeader(0, 0, 0, 0, true), /needs data/);
  assert.throws(() => offsetDataHeader(0, 0, -1, 1, true), /u64/);
});

test('OFFSET_HOLE, NONE, ERROR and ERROR_OFFSET chunks decode to what was encoded', () => {
  const stream = Buffer.concat([
    offsetHoleChunk(1, 1, 4096, 65536, false),
    errorChunk(1, 2, NbdError.EIO, 'disk on fire', false),
    errorOffsetChunk(1, 3, NbdError.EINVAL, 12345, 'bad', true),
    errorChunk(1, 4, NbdError.ENOTSUP),
    noneChunk(1, 5),
  ]);
  const { replies, rest } = decodeReplies(stream, () => 0);
  assert.equal(rest.length, 0);
  const s = replies.map((r) => {
    assert.ok(r.kind === 'structured');
    return r;
  });
  assert.deepEqual(s.map((r) => [r.type, r.flags, Number(r.cookie & 0xffn)]), [
    [ReplyType.OFFSET_HOLE, 0, 1],
    [ReplyType.ERROR, 0, 2],
    [ReplyType.ERROR_OFFSET, ReplyFlag.DONE, 3],
    [ReplyType.ERROR, ReplyFlag.DONE, 4],
    [ReplyType.NONE, ReplyFlag.DONE, 5],
  ]);
  assert.equal(s[0].payload.readBigUInt64BE(0), 4096n);
  assert.equal(s[0].payload.readUInt32BE(8), 65536);
  assert.equal(s[1].payload.readUInt32BE(0), NbdError.EIO);
  assert.equal(s[1].payload.readUInt16BE(4), 12);
  assert.equal(s[1].payload.toString('utf8', 6), 'disk on fire');
  assert.equal(s[2].payload.readUInt32BE(0), NbdError.EINVAL);
  assert.equal(s[2].payload.readUInt16BE(4), 3);
  assert.equal(s[2].payload.toString('utf8', 6, 9), 'bad');
  assert.equal(s[2].payload.readBigUInt64BE(9), 12345n);
  assert.equal(s[3].payload.length, 6, 'empty message');
  assert.equal(s[4].payload.length, 0);
  assert.throws(() => errorChunk(0, 0, 0), /non-zero error/);
  assert.throws(() => offsetHoleChunk(0, 0, 0, 0, true), /hole length/);
});

test('error messages are capped at 4096 bytes without splitting a character', () => {
  const long = 'é'.repeat(3000); // 6000 bytes
  const c = errorChunk(0, 1, NbdError.EIO, long);
  const len = c.readUInt16BE(24);
  assert.ok(len <= 4096);
  assert.equal(len % 2, 0);
  assert.equal(c.toString('utf8', 26), 'é'.repeat(len / 2));
  assert.equal(c.readUInt32BE(16), 6 + len, 'chunk length matches');
});

test('BLOCK_STATUS chunk: context id then (length, flags) pairs', () => {
  const c = blockStatusChunk(0, 9, 1, [
    { length: 4096, flags: 0 },
    { length: 1 << 20, flags: StateFlag.HOLE | StateFlag.ZERO },
  ], true);
  assert.equal(c.toString('hex'),
    '668e33ef' + '0001' + '0005' + '0000000000000009' + '00000014' +
    '00000001' + '00001000' + '00000000' + '00100000' + '00000003');
  assert.throws(() => blockStatusChunk(0, 0, 1, [], true), /at least one extent/);
  assert.throws(() => blockStatusChunk(0, 0, 1, [{ length: 0, flags: 0 }], true), /extent length/);
});

test('decodeReplies: simple READ reply carries the expected data; partial frames wait', () => {
  const data = Buffer.from('0123456789');
  const stream = Buffer.concat([simpleReply(0, 0, 1), data, simpleReply(NbdError.EIO, 0, 2), noneChunk(0, 3)]);
  const lengths = new Map([[1n, 10], [2n, 10]]);
  const whole = decodeReplies(stream, (c) => lengths.get(c) ?? 0);
  assert.equal(whole.replies.length, 3);
  assert.deepEqual((whole.replies[0] as { data: Buffer }).data, data);
  assert.equal((whole.replies[1] as { data: Buffer }).data.length, 0, 'errors carry no data');
  const part = decodeReplies(stream.subarray(0, 20), (c) => lengths.get(c) ?? 0);
  assert.equal(part.replies.length, 0);
  assert.equal(part.rest.length, 20);
  assert.throws(() => decodeReplies(Buffer.alloc(16), () => 0), /bad reply magic/);
});
