// The pure pieces composed the way a socket wrapper composes them, driven
// in memory: handshake -> request parser -> validation -> replies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE_ALLOCATION, ClientFlag, Cmd, CmdFlag, Info, NbdError, Opt, ReplyFlag, ReplyType } from '../../src/nbd/constants.ts';
import { NbdHandshake } from '../../src/nbd/handshake.ts';
import { NbdRequestParser } from '../../src/nbd/transmission.ts';
import type { NbdRequest } from '../../src/nbd/transmission.ts';
import type { ExportInfo, NbdSession } from '../../src/nbd/export-info.ts';
import { validateRequest } from '../../src/nbd/validate.ts';
import { blockStatusChunk, errorChunk, noneChunk, offsetDataHeader, simpleReply } from '../../src/nbd/replies.ts';
import {
  decodeOptionReplies,
  decodeReplies,
  encodeClientFlags,
  encodeInfoOption,
  encodeMetaContextOption,
  encodeOption,
  encodeRequest,
} from '../../src/nbd/client-codec.ts';

const SIZE = 1 << 16;

/** A memory-backed server: feed client bytes, collect everything it sends. */
function memoryServer(exp: ExportInfo) {
  const disk = Buffer.alloc(SIZE);
  const out: Buffer[] = [];
  let session: NbdSession | null = null;
  let closed = false;
  const hs = new NbdHandshake({ exports: (n) => (n === exp.name ? exp : undefined), listExports: () => [exp], tlsAvailable: false });
  out.push(hs.greeting());
  const reply = (r: NbdRequest, err: number, data?: Buffer) => {
    if (session!.structuredReplies && (r.type === Cmd.READ || err !== 0)) {
      if (err !== 0) out.push(errorChunk(r.cookieHi, r.cookieLo, err, 'refused'));
      else if (data !== undefined && data.length > 0) out.push(offsetDataHeader(r.cookieHi, r.cookieLo, r.offset, data.length, true), data);
      else out.push(noneChunk(r.cookieHi, r.cookieLo));
    } else {
      out.push(simpleReply(err, r.cookieHi, r.cookieLo));
      if (err === 0 && data !== undefined) out.push(data);
    }
  };
  const parser = new NbdRequestParser({
    onRequest(r) {
      const err = validateRequest(r, session!);
      if (err !== 0) return reply(r, err);
      switch (r.type) {
        case Cmd.READ: return reply(r, 0, Buffer.from(disk.subarray(r.offset, r.offset + r.length)));
        case Cmd.WRITE: r.data!.copy(disk, r.offset); return reply(r, 0);
        case Cmd.WRITE_ZEROES: disk.fill(0, r.offset, r.offset + r.length); return reply(r, 0);
        case Cmd.BLOCK_STATUS:
          return void out.push(blockStatusChunk(r.cookieHi, r.cookieLo, session!.metaContexts[0].id, [{ length: r.length, flags: 0 }], true));
        case Cmd.DISC: closed = true; return;
        default: return reply(r, 0);
      }
    },
    onReject: (r, e) => reply(r, e),
    onFatal: () => { closed = true; },
  }, { maxPayload: 8192 });
  return {
    feed(chunk: Buffer) {
      if (session !== null) return parser.feed(chunk);
      for (const a of hs.feed(chunk)) {
        if (a.type === 'send') out.push(a.data);
        else if (a.type === 'done') { session = a.session; parser.feed(a.rest); }
        else closed = true;
      }
    },
    take(): Buffer { const b = Buffer.concat(out); out.length = 0; return b; },
    get session() { return session; },
    get closed() { return closed; },
  };
}

const exp: ExportInfo = { name: 'm', size: SIZE, minBlock: 512, preferredBlock: 4096, maxBlock: 8192, readOnly: false, canTrim: false, canMultiConn: false };

test('kernel-style client: EXPORT_NAME, simple replies, unaligned I/O, pipelined requests', () => {
  const srv = memoryServer(exp);
  assert.equal(srv.take().length, 18);
  const data = Buffer.alloc(1000, 0x42);
  // Everything sent at once, split awkwardly, as a fast client might.
  const script = Buffer.concat([
    encodeClientFlags(ClientFlag.FIXED_NEWSTYLE),
    encodeOption(Opt.EXPORT_NAME, Buffer.from('m')),
    encodeRequest({ type: Cmd.WRITE, cookieLo: 1, offset: 3, length: 1000 }, data),
    encodeRequest({ type: Cmd.READ, cookieLo: 2, offset: 3, length: 1000 }),
    encodeRequest({ type: Cmd.READ, cookieLo: 3, offset: SIZE, length: 1 }), // past the end
    encodeRequest({ type: Cmd.WRITE, cookieLo: 4, offset: 0, length: 9000 }, Buffer.alloc(9000)), // over the parser cap
    encodeRequest({ type: Cmd.BLOCK_STATUS, cookieLo: 5, offset: 0, length: 512 }), // no contexts
    encodeRequest({ type: Cmd.FLUSH, cookieLo: 6, length: 0 }),
    encodeRequest({ type: Cmd.DISC, cookieLo: 7, length: 0 }),
  ]);
  for (let at = 0; at < script.length; at += 333) srv.feed(script.subarray(at, at + 333));
  const s = srv.session!;
  assert.equal(s.viaExportName, true);
  assert.equal(s.blockSizeRequested, false);
  const bytes = srv.take();
  const exportReply = bytes.subarray(0, 134);
  assert.equal(exportReply.readBigUInt64BE(0), BigInt(SIZE));
  const { replies, rest } = decodeReplies(bytes.subarray(134), (c) => (c === 2n ? 1000 : 0));
  assert.equal(rest.length, 0);
  assert.deepEqual(replies.map((r) => [r.kind, Number(r.cookie), r.kind === 'simple' ? r.error : -1]), [
    ['simple', 1, 0],
    ['simple', 2, 0],
    ['simple', 3, NbdError.EINVAL],
    // The parser's cap is 8 KiB, so a 9000-byte write is rejected and skipped.
    ['simple', 4, NbdError.EOVERFLOW],
    ['simple', 5, NbdError.EINVAL],
    ['simple', 6, 0],
  ]);
  assert.deepEqual((replies[1] as { data: Buffer }).data, data);
  assert.ok(srv.closed, 'DISC ends the session');
});

test('libnbd-style client: GO with block size, structured replies, base:allocation', () => {
  const srv = memoryServer(exp);
  srv.take();
  srv.feed(Buffer.concat([
    encodeClientFlags(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES),
    encodeOption(Opt.STRUCTURED_REPLY),
    encodeMetaContextOption(Opt.SET_META_CONTEXT, 'm', [BASE_ALLOCATION]),
    encodeInfoOption(Opt.GO, 'm', [Info.BLOCK_SIZE]),
  ]));
  const neg = decodeOptionReplies(srv.take());
  assert.equal(neg.rest.length, 0);
  assert.equal(srv.session!.blockSizeRequested, true);
  srv.feed(Buffer.concat([
    encodeRequest({ type: Cmd.WRITE, flags: CmdFlag.FUA, cookieLo: 1, offset: 512, length: 512 }, Buffer.alloc(512, 7)),
    encodeRequest({ type: Cmd.READ, flags: CmdFlag.DF, cookieLo: 2, offset: 512, length: 512 }),
    encodeRequest({ type: Cmd.READ, cookieLo: 3, offset: 1, length: 512 }), // unaligned: now an error
    encodeRequest({ type: Cmd.BLOCK_STATUS, cookieLo: 4, offset: 0, length: 4096 }),
  ]));
  const { replies } = decodeReplies(srv.take(), () => 0);
  assert.deepEqual(replies.map((r) => [r.kind, Number(r.cookie), r.kind === 'structured' ? r.type : r.error]), [
    ['simple', 1, 0],
    ['structured', 2, ReplyType.OFFSET_DATA],
    ['structured', 3, ReplyType.ERROR],
    ['structured', 4, ReplyType.BLOCK_STATUS],
  ]);
  const read = replies[1] as { payload: Buffer; flags: number };
  assert.equal(read.flags, ReplyFlag.DONE);
  assert.equal(read.payload.readBigUInt64BE(0), 512n);
  assert.deepEqual(read.payload.subarray(8), Buffer.alloc(512, 7));
  assert.equal((replies[2] as { payload: Buffer }).payload.readUInt32BE(0), NbdError.EINVAL);
  assert.equal((replies[3] as { payload: Buffer }).payload.readUInt32BE(0), srv.session!.metaContexts[0].id);
});
