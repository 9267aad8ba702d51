import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BASE_ALLOCATION,
  ClientFlag,
  Cmd,
  Info,
  Magic,
  Opt,
  Rep,
  TxFlag,
} from '../../src/nbd/constants.ts';
import { NbdHandshake, BASE_ALLOCATION_ID } from '../../src/nbd/handshake.ts';
import type { HandshakeAction, HandshakeOptions } from '../../src/nbd/handshake.ts';
import type { ExportInfo, NbdSession } from '../../src/nbd/export-info.ts';
import { NbdRequestParser } from '../../src/nbd/transmission.ts';
import type { NbdRequest } from '../../src/nbd/transmission.ts';
import {
  decodeGreeting,
  decodeInfo,
  decodeOptionReplies,
  encodeClientFlags,
  encodeInfoOption,
  encodeMetaContextOption,
  encodeOption,
  encodeRequest,
} from '../../src/nbd/client-codec.ts';
import type { OptionReply } from '../../src/nbd/client-codec.ts';
import { seededRandom } from '../../src/util/random.ts';

const FIXED = ClientFlag.FIXED_NEWSTYLE;
const FIXED_NZ = ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES;

const disk: ExportInfo = {
  name: 'disk',
  description: 'the main disk',
  size: 1 << 30,
  minBlock: 512,
  preferredBlock: 4096,
  maxBlock: 1 << 20,
  readOnly: false,
  canTrim: true,
  canMultiConn: true,
};
const ro: ExportInfo = {
  name: 'ro',
  size: 8 * 2 ** 40, // 8 TiB: the u64 size must not be truncated to 32 bits
  minBlock: 1,
  preferredBlock: 4096,
  maxBlock: 32 << 20,
  readOnly: true,
  canTrim: true,
  canMultiConn: false,
};
const EXPORTS = [disk, ro];

function options(extra: Partial<HandshakeOptions> = {}): HandshakeOptions {
  return {
    exports: (name) => EXPORTS.find((e) => e.name === name),
    listExports: () => EXPORTS,
    tlsAvailable: false,
    ...extra,
  };
}

/** Deterministic PRNG so failures reproduce. */
const rng = seededRandom;

/** The same bytes cut several ways: whole, byte by byte, and random splits. */
function chunkings(b: Buffer): Array<{ name: string; chunks: Buffer[] }> {
  const out = [
    { name: 'whole', chunks: [b] },
    { name: 'bytewise', chunks: [...b].map((x) => Buffer.from([x])) },
  ];
  for (const seed of [1, 2, 3, 4]) {
    const r = rng(seed);
    const chunks: Buffer[] = [];
    for (let at = 0; at < b.length; ) {
      const n = Math.min(b.length - at, 1 + Math.floor(r() * 40));
      chunks.push(b.subarray(at, at + n));
      at += n;
    }
    out.push({ name: `random-${seed}`, chunks });
  }
  return out;
}

interface Outcome {
  sent: Buffer;
  replies: OptionReply[];
  terminal: HandshakeAction | null;
  /** Bytes the machine did not consume: terminal rest plus chunks never fed. */
  rest: Buffer;
  sendsPerFeed: number[];
}

function drive(hs: NbdHandshake, chunks: Buffer[]): Outcome {
  const sent: Buffer[] = [];
  const sendsPerFeed: number[] = [];
  let terminal: HandshakeAction | null = null;
  let rest: Buffer[] = [];
  for (let i = 0; i < chunks.length; i++) {
    const actions = hs.feed(chunks[i]);
    sendsPerFeed.push(actions.filter((a) => a.type === 'send').length);
    for (const a of actions) {
      if (a.type === 'send') {
        assert.equal(terminal, null, 'send after a terminal action');
        sent.push(a.data);
      } else {
        assert.equal(terminal, null, 'two terminal actions');
        assert.equal(a, actions[actions.length - 1], 'terminal action must come last');
        terminal = a;
        if (a.type === 'done' || a.type === 'starttls') rest = [a.rest, ...chunks.slice(i + 1)];
      }
    }
    if (terminal !== null) break;
  }
  const all = Buffer.concat(sent);
  // EXPORT_NAME's answer is not option-framed: it is the tail of what was sent.
  let framed = all;
  const t = terminal as HandshakeAction | null;
  if (t !== null && t.type === 'done' && t.session.viaExportName) {
    framed = all.subarray(0, all.length - exportReplyLength(all));
  }
  const { replies, rest: unframed } = decodeOptionReplies(framed);
  assert.equal(unframed.length, 0, 'option replies are complete frames');
  return { sent: all, replies, terminal, rest: Buffer.concat(rest), sendsPerFeed };
}

/** Length of the EXPORT_NAME answer at the end of `all`: 10 or 134 bytes. */
function exportReplyLength(all: Buffer): number {
  // Walk option replies from the front; whatever is left is the export reply.
  let at = 0;
  while (all.length - at > 134 || (all.length - at > 10 && all.readBigUInt64BE(at) === Magic.OPTION_REPLY)) {
    at += 20 + all.readUInt32BE(at + 16);
  }
  return all.length - at;
}

/** Runs the client bytes through every chunking, checks they agree, returns one outcome. */
function runAll(clientBytes: Buffer, opts: HandshakeOptions = options()): Outcome {
  let first: Outcome | null = null;
  for (const { name, chunks } of chunkings(clientBytes)) {
    const o = drive(new NbdHandshake(opts), chunks);
    for (const n of o.sendsPerFeed) assert.ok(n <= 1, `${name}: at most one send per feed`);
    if (first === null) {
      first = o;
      continue;
    }
    assert.deepEqual(o.sent, first.sent, `${name}: same bytes sent`);
    assert.deepEqual(o.rest, first.rest, `${name}: same rest`);
    assert.equal(o.terminal?.type, first.terminal?.type, `${name}: same terminal`);
    if (o.terminal?.type === 'done' && first.terminal?.type === 'done') {
      assert.deepEqual(o.terminal.session, first.terminal.session, `${name}: same session`);
    }
    if (o.terminal?.type === 'close' && first.terminal?.type === 'close') {
      assert.equal(o.terminal.reason, first.terminal.reason);
    }
  }
  assert.ok(first !== null);
  for (const r of first.replies) assert.equal(r.magic, Magic.OPTION_REPLY, 'option reply magic');
  return first;
}

function session(o: Outcome): NbdSession {
  assert.equal(o.terminal?.type, 'done', `expected done, got ${JSON.stringify(o.terminal)}`);
  return (o.terminal as { session: NbdSession }).session;
}

function closeReason(o: Outcome): string {
  assert.equal(o.terminal?.type, 'close', `expected close, got ${o.terminal?.type}`);
  return (o.terminal as { reason: string }).reason;
}

const cat = (...parts: Buffer[]) => Buffer.concat(parts);
const types = (rs: OptionReply[]) => rs.map((r) => r.type);

test('greeting: NBDMAGIC, IHAVEOPT, fixed newstyle and no-zeroes', () => {
  const g = new NbdHandshake(options()).greeting();
  assert.equal(g.length, 18);
  assert.equal(g.toString('latin1', 0, 16), 'NBDMAGICIHAVEOPT');
  const d = decodeGreeting(g);
  assert.equal(d.magic, 0x4e42444d41474943n);
  assert.equal(d.ihaveopt, 0x49484156454f5054n);
  assert.equal(d.flags, 0b11);
});

test('GO with structured replies, base:allocation and every info type; pipelined request', () => {
  const pipelined = encodeRequest({ type: Cmd.READ, cookieHi: 7, cookieLo: 9, offset: 4096, length: 512 });
  const bytes = cat(
    encodeClientFlags(FIXED_NZ),
    encodeOption(Opt.STRUCTURED_REPLY),
    encodeMetaContextOption(Opt.SET_META_CONTEXT, 'disk', [BASE_ALLOCATION]),
    encodeInfoOption(Opt.GO, 'disk', [Info.NAME, Info.DESCRIPTION, Info.BLOCK_SIZE]),
    pipelined,
  );
  const o = runAll(bytes);
  assert.deepEqual(types(o.replies), [Rep.ACK, Rep.META_CONTEXT, Rep.ACK, Rep.INFO, Rep.INFO, Rep.INFO, Rep.INFO, Rep.ACK]);
  assert.deepEqual(
    o.replies.map((r) => r.option),
    [Opt.STRUCTURED_REPLY, Opt.SET_META_CONTEXT, Opt.SET_META_CONTEXT, Opt.GO, Opt.GO, Opt.GO, Opt.GO, Opt.GO],
  );
  const meta = o.replies[1].data;
  assert.equal(meta.readUInt32BE(0), BASE_ALLOCATION_ID);
  assert.equal(meta.toString('utf8', 4), 'base:allocation');

  const infos = o.replies.slice(3, 7).map((r) => decodeInfo(r.data));
  const s = session(o);
  assert.deepEqual(infos[0], { info: 'export', size: BigInt(disk.size), flags: s.transmissionFlags });
  assert.deepEqual(infos[1], { info: 'name', text: 'disk' });
  assert.deepEqual(infos[2], { info: 'description', text: 'the main disk' });
  assert.deepEqual(infos[3], { info: 'block_size', min: 512, preferred: 4096, max: 1 << 20 });

  assert.equal(s.export, disk);
  assert.equal(s.structuredReplies, true);
  assert.equal(s.blockSizeRequested, true);
  assert.equal(s.viaExportName, false);
  assert.equal(s.tls, false);
  assert.deepEqual(s.metaContexts, [{ id: BASE_ALLOCATION_ID, name: BASE_ALLOCATION }]);
  const want =
    TxFlag.HAS_FLAGS | TxFlag.SEND_FLUSH | TxFlag.SEND_FUA | TxFlag.SEND_TRIM | TxFlag.SEND_WRITE_ZEROES |
    TxFlag.SEND_DF | TxFlag.CAN_MULTI_CONN;
  assert.equal(s.transmissionFlags, want);

  // The request the client pipelined behind GO comes back untouched.
  assert.deepEqual(o.rest, pipelined);
  const got: Array<Pick<NbdRequest, 'type' | 'cookieHi' | 'cookieLo' | 'offset' | 'length'>> = [];
  const p = new NbdRequestParser({
    onRequest: (r) => got.push({ type: r.type, cookieHi: r.cookieHi, cookieLo: r.cookieLo, offset: r.offset, length: r.length }),
    onReject: () => assert.fail('reject'),
    onFatal: (why) => assert.fail(why),
  });
  p.feed(o.rest);
  assert.deepEqual(got, [{ type: Cmd.READ, cookieHi: 7, cookieLo: 9, offset: 4096, length: 512 }]);
});

test('GO with no info requests still sends EXPORT and BLOCK_SIZE, but binds nothing', () => {
  const o = runAll(cat(encodeClientFlags(FIXED), encodeInfoOption(Opt.GO, 'disk', [])));
  assert.deepEqual(types(o.replies), [Rep.INFO, Rep.INFO, Rep.ACK]);
  assert.equal(decodeInfo(o.replies[0].data).info, 'export');
  assert.equal(decodeInfo(o.replies[1].data).info, 'block_size');
  const s = session(o);
  assert.equal(s.blockSizeRequested, false);
  assert.equal(s.structuredReplies, false);
  assert.deepEqual(s.metaContexts, []);
  assert.equal(s.transmissionFlags & TxFlag.SEND_DF, 0, 'DF only with structured replies');
  assert.equal(o.rest.length, 0);
});

test('GO ignores unknown info types; DESCRIPTION is omitted when the export has none', () => {
  const o = runAll(cat(encodeClientFlags(FIXED), encodeInfoOption(Opt.GO, 'ro', [Info.DESCRIPTION, 999])));
  assert.deepEqual(types(o.replies), [Rep.INFO, Rep.INFO, Rep.ACK]);
  const ex = decodeInfo(o.replies[0].data);
  assert.deepEqual(ex, { info: 'export', size: 8n * 2n ** 40n, flags: session(o).transmissionFlags });
});

test('read-only export: READ_ONLY set, no write-side flags', () => {
  const s = session(runAll(cat(encodeClientFlags(FIXED), encodeInfoOption(Opt.GO, 'ro', []))));
  assert.equal(s.transmissionFlags, TxFlag.HAS_FLAGS | TxFlag.READ_ONLY | TxFlag.SEND_FLUSH | TxFlag.SEND_FUA);
});

test('INFO answers without leaving negotiation; GO afterwards completes', () => {
  const o = runAll(
    cat(
      encodeClientFlags(FIXED),
      encodeInfoOption(Opt.INFO, 'disk', [Info.BLOCK_SIZE]),
      encodeInfoOption(Opt.INFO, 'nope', []),
      encodeInfoOption(Opt.GO, 'ro', []),
    ),
  );
  assert.deepEqual(types(o.replies), [Rep.INFO, Rep.INFO, Rep.ACK, Rep.ERR_UNKNOWN, Rep.INFO, Rep.INFO, Rep.ACK]);
  assert.match(o.replies[3].data.toString(), /unknown export "nope"/);
  const s = session(o);
  assert.equal(s.export, ro);
  assert.equal(s.blockSizeRequested, false, 'INFO with BLOCK_SIZE does not bind the later GO');
});

test('GO for an unknown export is an error reply, negotiation continues', () => {
  const o = runAll(cat(encodeClientFlags(FIXED), encodeInfoOption(Opt.GO, 'nope', []), encodeInfoOption(Opt.GO, '', [])));
  assert.deepEqual(types(o.replies), [Rep.ERR_UNKNOWN, Rep.ERR_UNKNOWN]);
  assert.equal(o.terminal, null, 'still negotiating, waiting for the next option');
});

test('default export: the empty name is passed to the lookup', () => {
  const seen: string[] = [];
  const opts = options({ exports: (n) => (seen.push(n), n === '' ? disk : undefined) });
  const s = session(runAll(cat(encodeClientFlags(FIXED), encodeInfoOption(Opt.GO, '', [])), opts));
  assert.equal(s.export, disk);
  assert.ok(seen.every((n) => n === ''));
});

test('malformed INFO/GO payloads get ERR_INVALID', () => {
  const good = encodeInfoOption(Opt.GO, 'disk', [Info.NAME]).subarray(16);
  const cases: Buffer[] = [
    Buffer.alloc(5), // shorter than the fixed fields
    (() => { const b = Buffer.from(good); b.writeUInt32BE(1000, 0); return b; })(), // name runs past the end
    (() => { const b = Buffer.from(good); b.writeUInt16BE(2, 8); return b; })(), // count says 2, one present
    Buffer.concat([good, Buffer.from([0])]), // trailing byte
  ];
  for (const data of cases) {
    const o = runAll(cat(encodeClientFlags(FIXED), encodeOption(Opt.GO, data), encodeOption(Opt.INFO, data)));
    assert.deepEqual(types(o.replies), [Rep.ERR_INVALID, Rep.ERR_INVALID], data.toString('hex'));
    assert.equal(o.terminal, null);
  }
});

test('EXPORT_NAME: size, flags and 124 zeroes; NO_ZEROES drops the padding', () => {
  for (const [flags, len] of [[FIXED, 134], [FIXED_NZ, 10], [ClientFlag.NO_ZEROES, 10], [0, 134]] as const) {
    const trailing = encodeRequest({ type: Cmd.FLUSH, length: 0, cookieLo: 1 });
    const o = runAll(cat(encodeClientFlags(flags), encodeOption(Opt.EXPORT_NAME, Buffer.from('ro')), trailing));
    assert.equal(o.sent.length, len, `client flags ${flags}`);
    assert.equal(o.sent.readBigUInt64BE(0), BigInt(ro.size));
    const s = session(o);
    assert.equal(o.sent.readUInt16BE(8), s.transmissionFlags);
    assert.ok(o.sent.subarray(10).every((x) => x === 0));
    assert.equal(s.viaExportName, true);
    assert.equal(s.blockSizeRequested, false);
    assert.deepEqual(o.rest, trailing);
  }
});

test('EXPORT_NAME for an unknown export closes without a reply', () => {
  const o = runAll(cat(encodeClientFlags(FIXED), encodeOption(Opt.EXPORT_NAME, Buffer.from('zzz'))));
  assert.equal(o.sent.length, 0);
  assert.match(closeReason(o), /unknown export "zzz"/);
});

test('EXPORT_NAME keeps structured replies but no meta contexts survive to a different export', () => {
  const o = runAll(
    cat(
      encodeClientFlags(FIXED_NZ),
      encodeOption(Opt.STRUCTURED_REPLY),
      encodeMetaContextOption(Opt.SET_META_CONTEXT, 'ro', [BASE_ALLOCATION]),
      encodeOption(Opt.EXPORT_NAME, Buffer.from('ro')),
    ),
  );
  const s = session(o);
  assert.equal(s.structuredReplies, true);
  assert.deepEqual(s.metaContexts, [{ id: BASE_ALLOCATION_ID, name: BASE_ALLOCATION }]);
});

test('LIST: one SERVER reply per export with name and description, then ACK', () => {
  const o = runAll(cat(encodeClientFlags(FIXED), encodeOption(Opt.LIST), encodeOption(Opt.LIST, Buffer.from('x'))));
  assert.deepEqual(types(o.replies), [Rep.SERVER, Rep.SERVER, Rep.ACK, Rep.ERR_INVALID]);
  const d0 = o.replies[0].data;
  assert.equal(d0.readUInt32BE(0), 4);
  assert.equal(d0.toString('utf8', 4, 8), 'disk');
  assert.equal(d0.toString('utf8', 8), 'the main disk');
  const d1 = o.replies[1].data;
  assert.equal(d1.readUInt32BE(0), 2);
  assert.equal(d1.length, 6, 'no description, no trailing bytes');
});

test('unknown options get ERR_UNSUP and the server keeps reading; a GO then succeeds', () => {
  const o = runAll(
    cat(
      encodeClientFlags(FIXED),
      encodeOption(42, Buffer.from('some payload the server cannot parse')),
      encodeOption(Opt.PEEK_EXPORT),
      encodeOption(Opt.EXTENDED_HEADERS),
      encodeOption(0xffffffff),
      encodeInfoOption(Opt.GO, 'disk', []),
    ),
  );
  assert.deepEqual(types(o.replies).slice(0, 4), [Rep.ERR_UNSUP, Rep.ERR_UNSUP, Rep.ERR_UNSUP, Rep.ERR_UNSUP]);
  assert.deepEqual(o.replies.slice(0, 4).map((r) => r.option), [42, Opt.PEEK_EXPORT, Opt.EXTENDED_HEADERS, 0xffffffff]);
  assert.equal(session(o).export, disk);
});

test('STRUCTURED_REPLY with a payload is invalid and not negotiated', () => {
  const o = runAll(cat(encodeClientFlags(FIXED), encodeOption(Opt.STRUCTURED_REPLY, Buffer.from([1])), encodeInfoOption(Opt.GO, 'disk', [])));
  assert.equal(o.replies[0].type, Rep.ERR_INVALID);
  assert.equal(session(o).structuredReplies, false);
});

test('meta contexts: LIST variants, SET needs structured replies, SET replaces, export must match', () => {
  const o = runAll(
    cat(
      encodeClientFlags(FIXED),
      encodeMetaContextOption(Opt.LIST_META_CONTEXT, 'disk', []), // all
      encodeMetaContextOption(Opt.LIST_META_CONTEXT, 'disk', ['base:']), // namespace
      encodeMetaContextOption(Opt.LIST_META_CONTEXT, 'disk', ['qemu:dirty-bitmap:x']), // none
      encodeMetaContextOption(Opt.LIST_META_CONTEXT, 'nope', []),
      encodeMetaContextOption(Opt.SET_META_CONTEXT, 'disk', [BASE_ALLOCATION]), // no structured yet
      encodeOption(Opt.STRUCTURED_REPLY),
      encodeMetaContextOption(Opt.SET_META_CONTEXT, 'disk', [BASE_ALLOCATION, BASE_ALLOCATION]),
      encodeMetaContextOption(Opt.SET_META_CONTEXT, 'disk', ['x-other:thing']), // replaces with nothing
      encodeInfoOption(Opt.GO, 'disk', []),
    ),
  );
  assert.deepEqual(types(o.replies), [
    Rep.META_CONTEXT, Rep.ACK,
    Rep.META_CONTEXT, Rep.ACK,
    Rep.ACK,
    Rep.ERR_UNKNOWN,
    Rep.ERR_INVALID,
    Rep.ACK,
    Rep.META_CONTEXT, Rep.ACK, // a duplicate query selects the context once
    Rep.ACK,
    Rep.INFO, Rep.INFO, Rep.ACK,
  ]);
  assert.equal(o.replies[0].data.readUInt32BE(0), 0, 'LIST ids are reserved as 0');
  assert.equal(o.replies[8].data.readUInt32BE(0), BASE_ALLOCATION_ID);
  assert.deepEqual(session(o).metaContexts, []);

  const other = runAll(
    cat(
      encodeClientFlags(FIXED),
      encodeOption(Opt.STRUCTURED_REPLY),
      encodeMetaContextOption(Opt.SET_META_CONTEXT, 'ro', [BASE_ALLOCATION]),
      encodeInfoOption(Opt.GO, 'disk', []),
    ),
  );
  assert.deepEqual(session(other).metaContexts, [], 'contexts chosen for "ro" do not apply to "disk"');
});

test('malformed meta context payloads get ERR_INVALID', () => {
  const good = encodeMetaContextOption(Opt.LIST_META_CONTEXT, 'disk', [BASE_ALLOCATION]).subarray(16);
  const mut = (f: (b: Buffer) => void) => { const b = Buffer.from(good); f(b); return b; };
  const cases = [
    Buffer.alloc(7),
    mut((b) => b.writeUInt32BE(5000, 0)), // name length past the end
    mut((b) => b.writeUInt32BE(2, 8)), // two queries announced, one present
    mut((b) => b.writeUInt32BE(0x7fffffff, 8)), // absurd query count
    mut((b) => b.writeUInt32BE(100, 12)), // query length past the end
    Buffer.concat([good, Buffer.from([0])]), // trailing byte
  ];
  for (const data of cases) {
    const o = runAll(cat(encodeClientFlags(FIXED), encodeOption(Opt.LIST_META_CONTEXT, data)));
    assert.deepEqual(types(o.replies), [Rep.ERR_INVALID], data.toString('hex'));
  }
});

test('ABORT is acknowledged, then the connection closes', () => {
  const o = runAll(cat(encodeClientFlags(FIXED), encodeOption(Opt.ABORT), encodeOption(Opt.LIST)));
  assert.deepEqual(types(o.replies), [Rep.ACK]);
  assert.equal(o.replies[0].option, Opt.ABORT);
  assert.match(closeReason(o), /abort/);
});

test('bad option magic closes; bad client flags close', () => {
  const bad = encodeOption(Opt.LIST);
  bad.write('IHAVEOPX', 0, 'latin1');
  assert.match(closeReason(runAll(cat(encodeClientFlags(FIXED), bad))), /magic/);
  // Garbage after a good option: the good one is answered first.
  const o = runAll(cat(encodeClientFlags(FIXED), encodeOption(Opt.LIST), Buffer.alloc(16, 0xab)));
  assert.deepEqual(types(o.replies), [Rep.SERVER, Rep.SERVER, Rep.ACK]);
  assert.match(closeReason(o), /magic/);
  assert.match(closeReason(runAll(encodeClientFlags(FIXED | 4))), /unknown client flags 0x5/);
  assert.match(closeReason(runAll(encodeClientFlags(0x80000000))), /unknown client flags/);
});

test('non-fixed-newstyle clients: EXPORT_NAME works, STARTTLS is refused, nothing hangs', () => {
  const s = session(runAll(cat(encodeClientFlags(0), encodeOption(Opt.EXPORT_NAME, Buffer.from('disk')))));
  assert.equal(s.export, disk);
  const o = runAll(cat(encodeClientFlags(0), encodeOption(Opt.STARTTLS), encodeOption(99)), options({ tlsAvailable: true }));
  assert.deepEqual(types(o.replies), [Rep.ERR_INVALID, Rep.ERR_UNSUP]);
});

test('oversized option: skipped without buffering, ERR_TOO_BIG, negotiation continues', () => {
  const big = Buffer.alloc(70000, 0x5a);
  const o = runAll(cat(encodeClientFlags(FIXED), encodeOption(Opt.SET_META_CONTEXT, big), encodeInfoOption(Opt.GO, 'disk', [])));
  assert.deepEqual(types(o.replies), [Rep.ERR_TOO_BIG, Rep.INFO, Rep.INFO, Rep.ACK]);
  assert.equal(o.replies[0].option, Opt.SET_META_CONTEXT);
  assert.equal(session(o).export, disk);

  // A 1 GiB option announced then streamed in 1 MiB pieces must not be held in memory.
  const hs = new NbdHandshake(options());
  hs.feed(encodeClientFlags(FIXED));
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(Magic.IHAVEOPT, 0);
  header.writeUInt32BE(77, 8);
  header.writeUInt32BE(2 ** 30, 12);
  assert.deepEqual(hs.feed(header), []);
  const piece = Buffer.alloc(1 << 20);
  const before = process.memoryUsage().arrayBuffers;
  for (let i = 0; i < 1023; i++) assert.deepEqual(hs.feed(piece), []);
  assert.ok(process.memoryUsage().arrayBuffers - before < 64 << 20, 'skipped bytes are not retained');
  const last = hs.feed(piece);
  assert.equal(last.length, 1);
  assert.equal(decodeOptionReplies((last[0] as { data: Buffer }).data).replies[0].type, Rep.ERR_TOO_BIG);
});

test('oversized EXPORT_NAME closes (it has no error reply)', () => {
  const o = runAll(cat(encodeClientFlags(FIXED), encodeOption(Opt.EXPORT_NAME, Buffer.alloc(70000, 0x61))));
  assert.match(closeReason(o), /too long/);
  assert.equal(o.sent.length, 0);
});

test('too many options closes the connection', () => {
  const opts = options({ maxOptions: 5 });
  const five = Array.from({ length: 5 }, () => encodeOption(99));
  const o = runAll(cat(encodeClientFlags(FIXED), ...five, encodeOption(99)), opts);
  assert.equal(o.replies.length, 5);
  assert.match(closeReason(o), /too many options/);
});

test('STARTTLS without TLS configured is refused by policy', () => {
  const o = runAll(cat(encodeClientFlags(FIXED), encodeOption(Opt.STARTTLS), encodeOption(Opt.STARTTLS, Buffer.from([0]))));
  assert.deepEqual(types(o.replies), [Rep.ERR_POLICY, Rep.ERR_INVALID]);
});

test('STARTTLS: ACK, upgrade with the rest of the bytes, plaintext state forgotten, second STARTTLS invalid', () => {
  const clientHello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05]);
  const o = runAll(
    cat(encodeClientFlags(FIXED), encodeOption(Opt.STRUCTURED_REPLY), encodeOption(Opt.STARTTLS), clientHello),
    options({ tlsAvailable: true }),
  );
  assert.deepEqual(types(o.replies), [Rep.ACK, Rep.ACK]);
  assert.equal(o.terminal?.type, 'starttls');
  assert.deepEqual(o.rest, clientHello, 'bytes after the ACKed STARTTLS belong to the TLS layer');

  const hs = new NbdHandshake(options({ tlsAvailable: true }));
  hs.feed(cat(encodeClientFlags(FIXED), encodeOption(Opt.STRUCTURED_REPLY), encodeOption(Opt.STARTTLS)));
  assert.equal(hs.state, 'tls');
  assert.throws(() => hs.feed(Buffer.from([1])), /waiting for the TLS upgrade/);
  hs.tlsStarted();
  const after = drive(hs, [cat(encodeOption(Opt.STARTTLS), encodeInfoOption(Opt.GO, 'disk', []))]);
  assert.deepEqual(types(after.replies), [Rep.ERR_INVALID, Rep.INFO, Rep.INFO, Rep.ACK]);
  const s = session(after);
  assert.equal(s.tls, true);
  assert.equal(s.structuredReplies, false, 'structured replies negotiated before TLS are forgotten');
});

test('requireTls: options other than STARTTLS/ABORT get ERR_TLS_REQD; EXPORT_NAME closes', () => {
  const opts = options({ tlsAvailable: true, requireTls: true });
  const o = runAll(
    cat(encodeClientFlags(FIXED), encodeOption(Opt.LIST), encodeInfoOption(Opt.GO, 'disk', []), encodeOption(Opt.STRUCTURED_REPLY), encodeOption(99)),
    opts,
  );
  assert.deepEqual(types(o.replies), [Rep.ERR_TLS_REQD, Rep.ERR_TLS_REQD, Rep.ERR_TLS_REQD, Rep.ERR_TLS_REQD]);
  assert.match(closeReason(runAll(cat(encodeClientFlags(FIXED), encodeOption(Opt.EXPORT_NAME, Buffer.from('disk'))), opts)), /TLS/);
  assert.match(closeReason(runAll(encodeClientFlags(0), opts)), /fixed newstyle/);
  const ab = runAll(cat(encodeClientFlags(FIXED), encodeOption(Opt.ABORT)), opts);
  assert.deepEqual(types(ab.replies), [Rep.ACK]);

  const hs = new NbdHandshake(opts);
  hs.feed(cat(encodeClientFlags(FIXED), encodeOption(Opt.STARTTLS)));
  hs.tlsStarted();
  const s = session(drive(hs, [cat(encodeOption(Opt.STRUCTURED_REPLY), encodeInfoOption(Opt.GO, 'disk', [Info.BLOCK_SIZE]))]));
  assert.equal(s.tls, true);
  assert.equal(s.structuredReplies, true);
  assert.throws(() => new NbdHandshake(options({ requireTls: true })), /requireTls needs tlsAvailable/);
});

test('shutdown: further options get ERR_SHUTDOWN, ABORT still works, EXPORT_NAME closes', () => {
  const hs = new NbdHandshake(options());
  hs.feed(encodeClientFlags(FIXED));
  hs.shutdown();
  const o = drive(hs, [cat(encodeInfoOption(Opt.GO, 'disk', []), encodeOption(Opt.LIST), encodeOption(Opt.ABORT))]);
  assert.deepEqual(types(o.replies), [Rep.ERR_SHUTDOWN, Rep.ERR_SHUTDOWN, Rep.ACK]);
  assert.equal(o.terminal?.type, 'close');
  const hs2 = new NbdHandshake(options());
  hs2.feed(encodeClientFlags(FIXED));
  hs2.shutdown();
  assert.match(closeReason(drive(hs2, [encodeOption(Opt.EXPORT_NAME, Buffer.from('disk'))])), /shutting down/);
});

test('after close, input is ignored; after done, feeding is a bug', () => {
  const hs = new NbdHandshake(options());
  hs.feed(encodeClientFlags(0x100));
  assert.equal(hs.state, 'closed');
  assert.deepEqual(hs.feed(encodeOption(Opt.LIST)), []);
  const done = new NbdHandshake(options());
  done.feed(cat(encodeClientFlags(FIXED), encodeInfoOption(Opt.GO, 'disk', [])));
  assert.equal(done.state, 'done');
  assert.throws(() => done.feed(Buffer.from([0])), /after the handshake completed/);
});

test('an invalid export configuration is caught before it is advertised', () => {
  const bad = { ...disk, name: 'bad', minBlock: 3 };
  const hs = new NbdHandshake(options({ exports: () => bad }));
  assert.throws(() => hs.feed(cat(encodeClientFlags(FIXED), encodeInfoOption(Opt.GO, 'bad', []))), /minBlock 3/);
});

test('fuzz: every complete option gets exactly one final reply, or the session ends', () => {
  const r = rng(12345);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
  const randomBytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(r() * 256)));
  const FINAL = new Set<number>([Rep.ACK, ...Object.values(Rep).filter((t) => t >= 0x80000000)]);
  for (let round = 0; round < 300; round++) {
    const opts: Buffer[] = [];
    const n = 1 + Math.floor(r() * 8);
    for (let i = 0; i < n; i++) {
      const kind = Math.floor(r() * 8);
      if (kind === 0) opts.push(encodeInfoOption(pick([Opt.INFO, Opt.GO]), pick(['disk', 'ro', 'x', '']), [Math.floor(r() * 5)]));
      else if (kind === 1) opts.push(encodeMetaContextOption(pick([Opt.LIST_META_CONTEXT, Opt.SET_META_CONTEXT]), pick(['disk', 'q']), [pick([BASE_ALLOCATION, 'base:', 'zz'])]));
      else if (kind === 2) opts.push(encodeOption(pick([Opt.LIST, Opt.STRUCTURED_REPLY, Opt.STARTTLS])));
      else if (kind === 3) opts.push(encodeOption(Opt.ABORT));
      else if (kind === 4) opts.push(encodeOption(Opt.EXPORT_NAME, Buffer.from(pick(['disk', 'nope']))));
      else opts.push(encodeOption(Math.floor(r() * 16), randomBytes(Math.floor(r() * 24))));
    }
    const bytes = cat(encodeClientFlags(pick([0, FIXED, FIXED_NZ])), ...opts);
    const o = runAll(bytes, options({ tlsAvailable: r() < 0.5 }));
    const finals = o.replies.filter((x) => FINAL.has(x.type)).length;
    // EXPORT_NAME success and STARTTLS/GO/ABORT/close end the exchange early.
    if (o.terminal === null) {
      assert.equal(finals, n, `round ${round}: every option answered`);
      assert.equal(o.rest.length, 0);
    } else {
      assert.ok(finals <= n, `round ${round}`);
    }
  }
});

test('a SET_META_CONTEXT that fails still clears the earlier selection', () => {
  const o = runAll(
    cat(
      encodeClientFlags(FIXED),
      encodeOption(Opt.STRUCTURED_REPLY),
      encodeMetaContextOption(Opt.SET_META_CONTEXT, 'disk', [BASE_ALLOCATION]),
      encodeMetaContextOption(Opt.SET_META_CONTEXT, 'nope', [BASE_ALLOCATION]),
      encodeInfoOption(Opt.GO, 'disk', []),
    ),
  );
  assert.deepEqual(types(o.replies), [Rep.ACK, Rep.META_CONTEXT, Rep.ACK, Rep.ERR_UNKNOWN, Rep.INFO, Rep.INFO, Rep.ACK]);
  assert.deepEqual(session(o).metaContexts, [], 'BLOCK_STATUS is not enabled by the replaced selection');
});

test('an error message naming a 4096-byte export stays within the 4096-byte string limit', () => {
  const long = 'x'.repeat(4096);
  const o = runAll(cat(encodeClientFlags(FIXED), encodeInfoOption(Opt.INFO, long, []), encodeOption(Opt.ABORT)));
  assert.equal(o.replies[0].type, Rep.ERR_UNKNOWN);
  assert.ok(o.replies[0].data.length <= 4096, `${o.replies[0].data.length} bytes`);
});

test('selective TLS: before TLS, an export this client cannot see answers TLS_REQD; without TLS on offer, ERR_UNKNOWN', () => {
  const ask = cat(encodeClientFlags(FIXED), encodeInfoOption(Opt.INFO, 'hidden-or-missing', []), encodeOption(Opt.ABORT));
  assert.equal(runAll(ask, options({ tlsAvailable: true })).replies[0].type, Rep.ERR_TLS_REQD);
  assert.equal(runAll(ask, options({ tlsAvailable: false })).replies[0].type, Rep.ERR_UNKNOWN);
  // A visible export is served in plaintext as before.
  assert.deepEqual(types(runAll(cat(encodeClientFlags(FIXED), encodeInfoOption(Opt.INFO, 'disk', []), encodeOption(Opt.ABORT)), options({ tlsAvailable: true })).replies).slice(0, 3), [Rep.INFO, Rep.INFO, Rep.ACK]);
});
