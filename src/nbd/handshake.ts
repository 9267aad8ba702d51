/**
 * Server side of the NBD fixed-newstyle handshake, as a pure state machine:
 * no sockets, no timers. The caller moves bytes; this decides what they mean.
 *
 *   const hs = new NbdHandshake({ exports, listExports, tlsAvailable, requireTls });
 *   socket.write(hs.greeting());
 *   socket.on('data', (chunk) => {
 *     for (const a of hs.feed(chunk)) {
 *       switch (a.type) {
 *         case 'send':     socket.write(a.data); break;
 *         case 'starttls': upgrade the socket (a.rest: bytes already read that
 *                          belong to the TLS layer), call hs.tlsStarted(),
 *                          then keep feeding decrypted bytes; break;
 *         case 'done':     enter transmission with a.session; a.rest holds
 *                          request bytes the client pipelined after GO; break;
 *         case 'close':    log a.reason, end the socket; break;
 *       }
 *     }
 *   });
 *
 * `feed` returns at most one 'send' (all replies of the call, concatenated,
 * so one write per chunk) followed by at most one terminal action
 * ('starttls', 'done' or 'close'). After a terminal action the machine
 * stops reading; bytes past that point come back as `rest`.
 *
 * Policy choices, each allowed by the spec:
 * - Clients without NBD_FLAG_C_FIXED_NEWSTYLE are still answered with
 *   option replies (such clients only ever send EXPORT_NAME, and honouring
 *   fixed newstyle never leaves anyone waiting); only STARTTLS is refused
 *   to them, as TLS requires fixed newstyle.
 * - NBD_INFO_BLOCK_SIZE is sent in every INFO/GO answer, asked for or not
 *   (libnbd then aligns its requests); `session.blockSizeRequested` says
 *   whether the client is bound to it.
 * - An option longer than `maxOptionLength` is skipped without buffering
 *   and answered NBD_REP_ERR_TOO_BIG; negotiation continues. More than
 *   `maxOptions` options closes the connection (denial of service).
 * - After STARTTLS everything negotiated before it is forgotten, as the
 *   spec requires of plaintext state.
 */
import { assert } from '../util/assert.ts';
import {
  BASE_ALLOCATION,
  ClientFlag,
  CLIENT_FLAGS_SIZE,
  EXPORT_NAME_REPLY_ZEROES,
  GREETING_SIZE,
  HandshakeFlag,
  Info,
  Magic,
  MAX_STRING,
  Opt,
  OPTION_HEADER_SIZE,
  OPTION_REPLY_HEADER_SIZE,
  Rep,
} from './constants.ts';
import { checkExportInfo, transmissionFlags } from './export-info.ts';
import type { ExportInfo, MetaContext, NbdSession } from './export-info.ts';

export type HandshakeAction =
  | { type: 'send'; data: Buffer }
  | { type: 'starttls'; rest: Buffer }
  | { type: 'done'; session: NbdSession; rest: Buffer }
  | { type: 'close'; reason: string };

export interface HandshakeOptions {
  /** Look an export up by the name the client sent ('' is the default export). */
  exports: (name: string) => ExportInfo | undefined;
  /** Exports to announce in reply to NBD_OPT_LIST. */
  listExports: () => ExportInfo[];
  /** The caller can upgrade this connection to TLS. */
  tlsAvailable: boolean;
  /** FORCEDTLS mode: every option but STARTTLS and ABORT needs TLS first. */
  requireTls?: boolean;
  /** Longest option payload read into memory (default 64 KiB). */
  maxOptionLength?: number;
  /** Options accepted on one connection before it is closed (default 1024). */
  maxOptions?: number;
}

export type HandshakePhase = 'flags' | 'options' | 'tls' | 'done' | 'closed';

/** Context id we hand out for base:allocation (any value but the LIST-reserved 0). */
export const BASE_ALLOCATION_ID = 1;

const KNOWN_CLIENT_FLAGS = ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES;

// Reading sub-states while phase === 'options'.
const READ_HEADER = 0;
const READ_DATA = 1;
const SKIP_DATA = 2;

export class NbdHandshake {
  private readonly opts: HandshakeOptions;
  private readonly maxOptionLength: number;
  private readonly maxOptions: number;

  private phase: HandshakePhase = 'flags';
  private sub = READ_HEADER;
  /** Where the bytes being collected go, and how many are there already. */
  private target: Buffer = Buffer.alloc(CLIENT_FLAGS_SIZE);
  private fill = 0;
  private readonly header = Buffer.alloc(OPTION_HEADER_SIZE);
  private skipLeft = 0;
  private option = 0;
  private optionsSeen = 0;

  // Negotiated so far.
  private fixedNewstyle = false;
  private noZeroes = false;
  private tls = false;
  private structured = false;
  private metaExport: string | null = null;
  private metaContexts: MetaContext[] = [];
  private shuttingDown = false;

  // Output of the current feed() call.
  private out: Buffer[] = [];
  private terminal: HandshakeAction | null = null;

  constructor(opts: HandshakeOptions) {
    assert(!opts.requireTls || opts.tlsAvailable, 'requireTls needs tlsAvailable');
    this.opts = opts;
    this.maxOptionLength = opts.maxOptionLength ?? 65536;
    this.maxOptions = opts.maxOptions ?? 1024;
    assert(this.maxOptionLength >= MAX_STRING + 8, 'maxOptionLength too small for a legal option');
  }

  get state(): HandshakePhase {
    return this.phase;
  }

  /** The 18 bytes the server sends first. */
  greeting(): Buffer {
    const b = Buffer.alloc(GREETING_SIZE);
    b.writeBigUInt64BE(Magic.NBDMAGIC, 0);
    b.writeBigUInt64BE(Magic.IHAVEOPT, 8);
    b.writeUInt16BE(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES, 16);
    return b;
  }

  /** The caller finished the TLS upgrade that a 'starttls' action asked for. */
  tlsStarted(): void {
    assert(this.phase === 'tls', 'tlsStarted outside a STARTTLS upgrade');
    this.tls = true;
    this.phase = 'options';
    this.startHeader();
  }

  /** Server shutting down: answer further options NBD_REP_ERR_SHUTDOWN. */
  shutdown(): void {
    this.shuttingDown = true;
  }

  feed(chunk: Buffer): HandshakeAction[] {
    if (this.phase === 'closed') return []; // late bytes before the socket is gone
    assert(this.phase !== 'done', 'feed after the handshake completed');
    assert(this.phase !== 'tls', 'feed while waiting for the TLS upgrade');
    let pos = 0;
    while (pos < chunk.length && this.terminal === null) {
      if (this.phase === 'options' && this.sub === SKIP_DATA) {
        const n = Math.min(this.skipLeft, chunk.length - pos);
        pos += n;
        this.skipLeft -= n;
        if (this.skipLeft === 0) this.optionSkipped();
        continue;
      }
      const n = Math.min(this.target.length - this.fill, chunk.length - pos);
      chunk.copy(this.target, this.fill, pos, pos + n);
      this.fill += n;
      pos += n;
      if (this.fill === this.target.length) this.collected();
    }
    // A zero-length option completes without bytes: collected() handles it
    // inline, so nothing can be left pending here.
    const actions: HandshakeAction[] = [];
    if (this.out.length > 0) {
      actions.push({ type: 'send', data: this.out.length === 1 ? this.out[0] : Buffer.concat(this.out) });
      this.out = [];
    }
    const t = this.terminal;
    if (t !== null) {
      this.terminal = null;
      if (t.type === 'done' || t.type === 'starttls') t.rest = chunk.subarray(pos);
      actions.push(t);
    }
    return actions;
  }

  // ---- reading -----------------------------------------------------------

  private startHeader(): void {
    this.sub = READ_HEADER;
    this.target = this.header;
    this.fill = 0;
  }

  /** `target` is full: act on it. */
  private collected(): void {
    if (this.phase === 'flags') return this.onClientFlags(this.target.readUInt32BE(0));
    if (this.sub === READ_HEADER) return this.onOptionHeader();
    assert(this.sub === READ_DATA, 'collected in an unexpected state');
    const data = this.target;
    this.startHeader();
    this.handleOption(this.option, data);
  }

  private onClientFlags(flags: number): void {
    if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) {
      return this.close(`unknown client flags 0x${flags.toString(16)}`);
    }
    this.fixedNewstyle = (flags & ClientFlag.FIXED_NEWSTYLE) !== 0;
    this.noZeroes = (flags & ClientFlag.NO_ZEROES) !== 0;
    if (this.opts.requireTls && !this.fixedNewstyle) {
      return this.close('TLS required, but the client does not speak fixed newstyle');
    }
    this.phase = 'options';
    this.startHeader();
  }

  private onOptionHeader(): void {
    const h = this.header;
    if (h.readBigUInt64BE(0) !== Magic.IHAVEOPT) return this.close('bad option magic');
    const option = h.readUInt32BE(8);
    const length = h.readUInt32BE(12);
    if (++this.optionsSeen > this.maxOptions) return this.close('too many options');
    this.option = option;
    if (length > this.maxOptionLength) {
      // EXPORT_NAME has no error reply: the only answer is to hang up.
      if (option === Opt.EXPORT_NAME) return this.close('export name too long');
      this.sub = SKIP_DATA;
      this.skipLeft = length;
      return;
    }
    this.sub = READ_DATA;
    this.target = Buffer.alloc(length);
    this.fill = 0;
    if (length === 0) this.collected();
  }

  private optionSkipped(): void {
    this.startHeader();
    this.reply(this.option, Rep.ERR_TOO_BIG, 'option too long');
  }

  // ---- options -----------------------------------------------------------

  private handleOption(option: number, data: Buffer): void {
    if (option === Opt.ABORT) {
      // The spec asks for an ACK; a client that already hung up loses nothing.
      this.reply(option, Rep.ACK);
      return this.close('client aborted negotiation');
    }
    if (option === Opt.EXPORT_NAME) return this.exportName(data);
    if (this.shuttingDown) return this.reply(option, Rep.ERR_SHUTDOWN, 'server shutting down');
    if (this.opts.requireTls && !this.tls && option !== Opt.STARTTLS) {
      return this.reply(option, Rep.ERR_TLS_REQD, 'TLS required');
    }
    switch (option) {
      case Opt.LIST:
        return this.list(data);
      case Opt.STARTTLS:
        return this.startTls(data);
      case Opt.INFO:
      case Opt.GO:
        return this.infoOrGo(option, data);
      case Opt.STRUCTURED_REPLY:
        if (data.length !== 0) return this.reply(option, Rep.ERR_INVALID, 'unexpected payload');
        this.structured = true;
        return this.reply(option, Rep.ACK);
      case Opt.LIST_META_CONTEXT:
      case Opt.SET_META_CONTEXT:
        return this.metaContext(option, data);
      default:
        return this.reply(option, Rep.ERR_UNSUP, `option ${option} not supported`);
    }
  }

  private exportName(data: Buffer): void {
    if (this.shuttingDown) return this.close('server shutting down');
    if (this.opts.requireTls && !this.tls) return this.close('EXPORT_NAME before TLS');
    const name = data.toString('utf8');
    const e = this.opts.exports(name);
    if (e === undefined) return this.close(`unknown export ${quoted(name)}`);
    checkExportInfo(e);
    const flags = transmissionFlags(e, this.structured);
    const b = Buffer.alloc(10 + (this.noZeroes ? 0 : EXPORT_NAME_REPLY_ZEROES));
    writeU64(b, 0, e.size);
    b.writeUInt16BE(flags, 8);
    this.out.push(b);
    this.finish(e, flags, false, true);
  }

  private list(data: Buffer): void {
    if (data.length !== 0) return this.reply(Opt.LIST, Rep.ERR_INVALID, 'unexpected payload');
    for (const e of this.opts.listExports()) {
      const name = Buffer.from(e.name, 'utf8');
      const desc = Buffer.from(e.description ?? '', 'utf8');
      const p = Buffer.alloc(4 + name.length + desc.length);
      p.writeUInt32BE(name.length, 0);
      name.copy(p, 4);
      desc.copy(p, 4 + name.length);
      this.reply(Opt.LIST, Rep.SERVER, p);
    }
    this.reply(Opt.LIST, Rep.ACK);
  }

  private startTls(data: Buffer): void {
    const o = Opt.STARTTLS;
    if (data.length !== 0) return this.reply(o, Rep.ERR_INVALID, 'unexpected payload');
    if (!this.fixedNewstyle) return this.reply(o, Rep.ERR_INVALID, 'TLS needs fixed newstyle');
    if (this.tls) return this.reply(o, Rep.ERR_INVALID, 'TLS already started');
    if (!this.opts.tlsAvailable) return this.reply(o, Rep.ERR_POLICY, 'TLS not configured');
    this.reply(o, Rep.ACK);
    // Whatever was negotiated in plaintext could have been tampered with.
    this.structured = false;
    this.metaExport = null;
    this.metaContexts = [];
    this.phase = 'tls';
    this.terminal = { type: 'starttls', rest: EMPTY };
  }

  private infoOrGo(option: number, data: Buffer): void {
    // u32 name length, name, u16 count, count * u16 info types
    if (data.length < 6) return this.reply(option, Rep.ERR_INVALID, 'short request');
    const nameLen = data.readUInt32BE(0);
    if (nameLen > MAX_STRING || 4 + nameLen + 2 > data.length) {
      return this.reply(option, Rep.ERR_INVALID, 'bad name length');
    }
    const name = data.toString('utf8', 4, 4 + nameLen);
    const count = data.readUInt16BE(4 + nameLen);
    if (data.length !== 6 + nameLen + 2 * count) {
      return this.reply(option, Rep.ERR_INVALID, 'bad information request count');
    }
    let wantName = false;
    let wantDescription = false;
    let wantBlockSize = false;
    for (let i = 0; i < count; i++) {
      const t = data.readUInt16BE(6 + nameLen + 2 * i);
      if (t === Info.NAME) wantName = true;
      else if (t === Info.DESCRIPTION) wantDescription = true;
      else if (t === Info.BLOCK_SIZE) wantBlockSize = true;
      // NBD_INFO_EXPORT is always sent; unknown types are ignored, per spec.
    }
    const e = this.opts.exports(name);
    if (e === undefined) return this.noSuchExport(option, name);
    checkExportInfo(e);
    const flags = transmissionFlags(e, this.structured);

    const ex = Buffer.alloc(12);
    ex.writeUInt16BE(Info.EXPORT, 0);
    writeU64(ex, 2, e.size);
    ex.writeUInt16BE(flags, 10);
    this.reply(option, Rep.INFO, ex);
    if (wantName) this.reply(option, Rep.INFO, infoString(Info.NAME, e.name));
    if (wantDescription && e.description !== undefined) {
      this.reply(option, Rep.INFO, infoString(Info.DESCRIPTION, e.description));
    }
    const bs = Buffer.alloc(14);
    bs.writeUInt16BE(Info.BLOCK_SIZE, 0);
    bs.writeUInt32BE(e.minBlock, 2);
    bs.writeUInt32BE(e.preferredBlock, 6);
    bs.writeUInt32BE(e.maxBlock, 10);
    this.reply(option, Rep.INFO, bs);
    this.reply(option, Rep.ACK);
    if (option === Opt.GO) {
      // Contexts were chosen for a named export; they do not carry over to another.
      if (this.metaExport !== name) this.metaContexts = [];
      this.finish(e, flags, wantBlockSize, false);
    }
  }

  /**
   * Before TLS, where TLS is on offer (selective TLS), an export this client
   * cannot see may need TLS: say TLS_REQD, as the spec asks for TLS-only
   * exports. Unknown names get the same answer, so nothing leaks about which
   * names exist.
   */
  private noSuchExport(option: number, name: string): void {
    if (this.opts.tlsAvailable && !this.tls) return this.reply(option, Rep.ERR_TLS_REQD, `export ${quoted(name)} is unknown or needs TLS`);
    this.reply(option, Rep.ERR_UNKNOWN, `unknown export ${quoted(name)}`);
  }

  private metaContext(option: number, data: Buffer): void {
    // A SET replaces the previous selection even when it fails.
    if (option === Opt.SET_META_CONTEXT) this.metaContexts = [];
    const q = parseMetaQuery(data);
    if (typeof q === 'string') return this.reply(option, Rep.ERR_INVALID, q);
    const isSet = option === Opt.SET_META_CONTEXT;
    if (isSet && !this.structured) {
      return this.reply(option, Rep.ERR_INVALID, 'structured replies not negotiated');
    }
    if (this.opts.exports(q.name) === undefined) {
      return this.noSuchExport(option, q.name);
    }
    let matched: boolean;
    if (isSet) {
      matched = q.queries.includes(BASE_ALLOCATION);
    } else {
      // LIST: no query lists everything; a bare namespace lists that namespace.
      matched = q.queries.length === 0 || q.queries.some((s) => s === BASE_ALLOCATION || s === 'base:');
    }
    const id = isSet ? BASE_ALLOCATION_ID : 0; // LIST ids are reserved: send 0
    if (matched) {
      const name = Buffer.from(BASE_ALLOCATION, 'utf8');
      const p = Buffer.alloc(4 + name.length);
      p.writeUInt32BE(id, 0);
      name.copy(p, 4);
      this.reply(option, Rep.META_CONTEXT, p);
    }
    if (isSet) {
      // Each SET replaces the previous selection, even with an empty one.
      this.metaExport = q.name;
      this.metaContexts = matched ? [{ id: BASE_ALLOCATION_ID, name: BASE_ALLOCATION }] : [];
    }
    this.reply(option, Rep.ACK);
  }

  // ---- output ------------------------------------------------------------

  private reply(option: number, type: number, payload?: Buffer | string): void {
    const p = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
    const len = p === undefined ? 0 : p.length;
    const b = Buffer.alloc(OPTION_REPLY_HEADER_SIZE + len);
    b.writeBigUInt64BE(Magic.OPTION_REPLY, 0);
    b.writeUInt32BE(option, 8);
    b.writeUInt32BE(type, 12);
    b.writeUInt32BE(len, 16);
    if (p !== undefined) p.copy(b, OPTION_REPLY_HEADER_SIZE);
    this.out.push(b);
  }

  private finish(e: ExportInfo, flags: number, blockSizeRequested: boolean, viaExportName: boolean): void {
    this.phase = 'done';
    const session: NbdSession = {
      export: e,
      structuredReplies: this.structured,
      metaContexts: this.metaContexts,
      transmissionFlags: flags,
      blockSizeRequested,
      viaExportName,
      tls: this.tls,
    };
    this.terminal = { type: 'done', session, rest: EMPTY };
  }

  private close(reason: string): void {
    this.phase = 'closed';
    this.terminal = { type: 'close', reason };
  }
}

const EMPTY = Buffer.alloc(0);

function writeU64(b: Buffer, at: number, v: number): void {
  b.writeUInt32BE(Math.floor(v / 0x100000000), at);
  b.writeUInt32BE(v >>> 0, at + 4);
}

function infoString(type: number, s: string): Buffer {
  const str = Buffer.from(s, 'utf8');
  const b = Buffer.alloc(2 + str.length);
  b.writeUInt16BE(type, 0);
  str.copy(b, 2);
  return b;
}

/**
 * LIST/SET_META_CONTEXT payload: u32 name length, name, u32 query count,
 * then per query u32 length and the query. Returns an error message when the
 * lengths do not add up exactly.
 */
function parseMetaQuery(data: Buffer): { name: string; queries: string[] } | string {
  if (data.length < 8) return 'short request';
  const nameLen = data.readUInt32BE(0);
  if (nameLen > MAX_STRING || 8 + nameLen > data.length) return 'bad name length';
  const name = data.toString('utf8', 4, 4 + nameLen);
  const count = data.readUInt32BE(4 + nameLen);
  let at = 8 + nameLen;
  // Each query takes at least 4 bytes, which bounds the loop by the payload.
  if (count > (data.length - at) / 4) return 'bad query count';
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return 'truncated query';
    const len = data.readUInt32BE(at);
    at += 4;
    if (len > MAX_STRING || at + len > data.length) return 'bad query length';
    queries.push(data.toString('utf8', at, at + len));
    at += len;
  }
  if (at !== data.length) return 'trailing bytes after queries';
  return { name, queries };
}

/** An export name for a message: quoted, and short enough that the message stays within NBD's 4096-byte string limit. */
function quoted(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
}
