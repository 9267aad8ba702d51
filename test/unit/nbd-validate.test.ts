import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cmd, CmdFlag, NbdError, BASE_ALLOCATION, TxFlag } from '../../src/nbd/constants.ts';
import { checkExportInfo, maxPayloadOf, transmissionFlags } from '../../src/nbd/export-info.ts';
import type { ExportInfo, NbdSession } from '../../src/nbd/export-info.ts';
import { newNbdRequest } from '../../src/nbd/transmission.ts';
import type { NbdRequest } from '../../src/nbd/transmission.ts';
import { validateRequest } from '../../src/nbd/validate.ts';
import { nbdErrorFromResult } from '../../src/nbd/errno.ts';

const SIZE = 1 << 20;
const base: ExportInfo = {
  name: 'v',
  size: SIZE,
  minBlock: 512,
  preferredBlock: 4096,
  maxBlock: 65536,
  readOnly: false,
  canTrim: true,
  canMultiConn: true,
};

function sessionFor(e: Partial<ExportInfo> = {}, s: Partial<NbdSession> = {}): NbdSession {
  const exp = { ...base, ...e };
  const structuredReplies = s.structuredReplies ?? true;
  return {
    export: exp,
    structuredReplies,
    metaContexts: [{ id: 1, name: BASE_ALLOCATION }],
    transmissionFlags: transmissionFlags(exp, structuredReplies),
    blockSizeRequested: true,
    viaExportName: false,
    tls: false,
    ...s,
  };
}

function req(type: number, offset: number, length: number, flags = 0): NbdRequest {
  return { ...newNbdRequest(), type, offset, length, flags };
}

test('valid requests of every command pass', () => {
  const s = sessionFor({ canCache: true, canFastZero: true });
  const ok: NbdRequest[] = [
    req(Cmd.READ, 0, 4096),
    req(Cmd.READ, SIZE - 512, 512, CmdFlag.DF | CmdFlag.FUA),
    req(Cmd.WRITE, 512, 1024, CmdFlag.FUA),
    req(Cmd.DISC, 0, 0),
    req(Cmd.FLUSH, 0, 0),
    req(Cmd.TRIM, 0, SIZE, CmdFlag.FUA),
    req(Cmd.CACHE, 0, 4096),
    req(Cmd.WRITE_ZEROES, 0, SIZE, CmdFlag.NO_HOLE | CmdFlag.FAST_ZERO),
    req(Cmd.BLOCK_STATUS, 1, 3, CmdFlag.REQ_ONE), // block status is not bound by alignment
    req(Cmd.READ, SIZE, 0), // zero length at the very end: a no-op
  ];
  for (const r of ok) assert.equal(validateRequest(r, s), NbdError.OK, JSON.stringify(r));
});

test('table of invalid requests and the error each gets', () => {
  const s = sessionFor();
  const cases: Array<[string, NbdRequest, NbdSession, number]> = [
    ['unknown command', req(99, 0, 0), s, NbdError.EINVAL],
    ['unknown flag bit', req(Cmd.READ, 0, 512, 1 << 9), s, NbdError.EINVAL],
    ['NO_HOLE on a read', req(Cmd.READ, 0, 512, CmdFlag.NO_HOLE), s, NbdError.EINVAL],
    ['REQ_ONE on a write', req(Cmd.WRITE, 0, 512, CmdFlag.REQ_ONE), s, NbdError.EINVAL],
    ['DF without structured replies', req(Cmd.READ, 0, 512, CmdFlag.DF), sessionFor({}, { structuredReplies: false }), NbdError.EINVAL],
    ['FAST_ZERO not advertised', req(Cmd.WRITE_ZEROES, 0, 512, CmdFlag.FAST_ZERO), s, NbdError.EINVAL],
    ['FUA not advertised', req(Cmd.WRITE, 0, 512, CmdFlag.FUA), sessionFor({ canFua: false }), NbdError.EINVAL],
    ['FLUSH not advertised', req(Cmd.FLUSH, 0, 0), sessionFor({ canFlush: false }), NbdError.EINVAL],
    ['FLUSH with a range', req(Cmd.FLUSH, 0, 512), s, NbdError.EINVAL],
    ['TRIM not advertised', req(Cmd.TRIM, 0, 512), sessionFor({ canTrim: false }), NbdError.EINVAL],
    ['CACHE not advertised', req(Cmd.CACHE, 0, 512), s, NbdError.EINVAL],
    ['WRITE_ZEROES not advertised', req(Cmd.WRITE_ZEROES, 0, 512), sessionFor({ canWriteZeroes: false }), NbdError.EINVAL],
    ['BLOCK_STATUS without contexts', req(Cmd.BLOCK_STATUS, 0, 512), sessionFor({}, { metaContexts: [] }), NbdError.EINVAL],
    ['BLOCK_STATUS without structured', req(Cmd.BLOCK_STATUS, 0, 512), sessionFor({}, { structuredReplies: false }), NbdError.EINVAL],
    ['BLOCK_STATUS of nothing', req(Cmd.BLOCK_STATUS, 0, 0), s, NbdError.EINVAL],
    ['WRITE to read-only', req(Cmd.WRITE, 0, 512), sessionFor({ readOnly: true }), NbdError.EPERM],
    ['TRIM to read-only', req(Cmd.TRIM, 0, 512), sessionFor({ readOnly: true }), NbdError.EPERM],
    ['WRITE_ZEROES to read-only', req(Cmd.WRITE_ZEROES, 0, 512), sessionFor({ readOnly: true }), NbdError.EPERM],
    ['unaligned offset', req(Cmd.READ, 100, 512), s, NbdError.EINVAL],
    ['unaligned length', req(Cmd.WRITE, 0, 100), s, NbdError.EINVAL],
    ['above maxBlock', req(Cmd.READ, 0, 65536 + 512), s, NbdError.EOVERFLOW],
    ['read past the end', req(Cmd.READ, SIZE - 512, 1024), s, NbdError.EINVAL],
    ['write past the end', req(Cmd.WRITE, SIZE, 512), s, NbdError.ENOSPC],
    ['write-zeroes past the end', req(Cmd.WRITE_ZEROES, SIZE - 512, 1024), s, NbdError.ENOSPC],
    ['trim past the end', req(Cmd.TRIM, SIZE + 512, 512), s, NbdError.EINVAL],
    ['offset beyond 2^53', req(Cmd.READ, 2 ** 64, 512), sessionFor({}, { blockSizeRequested: false }), NbdError.EINVAL],
    ['write beyond 2^53', req(Cmd.WRITE, 2 ** 60, 512), s, NbdError.ENOSPC],
  ];
  for (const [name, r, sess, want] of cases) assert.equal(validateRequest(r, sess), want, name);
});

test('without block size negotiation: any alignment, up to 32 MiB even above maxBlock', () => {
  const s = sessionFor({ size: 64 << 20 }, { blockSizeRequested: false });
  assert.equal(validateRequest(req(Cmd.READ, 1, 3), s), NbdError.OK);
  assert.equal(validateRequest(req(Cmd.WRITE, 7, 1 << 20), s), NbdError.OK);
  assert.equal(validateRequest(req(Cmd.READ, 0, 32 << 20), s), NbdError.OK);
  assert.equal(validateRequest(req(Cmd.READ, 0, (32 << 20) + 1), s), NbdError.EOVERFLOW);
  assert.equal(maxPayloadOf(s), 32 << 20);
  assert.equal(maxPayloadOf(sessionFor()), 65536);
});

test('transmissionFlags reflects the export and structured replies', () => {
  assert.equal(
    transmissionFlags({ ...base, canMultiConn: false, canTrim: false, canWriteZeroes: false }, false),
    TxFlag.HAS_FLAGS | TxFlag.SEND_FLUSH | TxFlag.SEND_FUA,
  );
  const all = transmissionFlags({ ...base, rotational: true, canCache: true, canFastZero: true }, true);
  for (const f of [TxFlag.ROTATIONAL, TxFlag.SEND_CACHE, TxFlag.SEND_FAST_ZERO, TxFlag.SEND_DF, TxFlag.CAN_MULTI_CONN, TxFlag.SEND_TRIM]) {
    assert.ok(all & f, `flag ${f}`);
  }
  const ro = transmissionFlags({ ...base, readOnly: true, canFastZero: true }, true);
  assert.ok(ro & TxFlag.READ_ONLY);
  assert.equal(ro & (TxFlag.SEND_TRIM | TxFlag.SEND_WRITE_ZEROES | TxFlag.SEND_FAST_ZERO), 0);
});

test('checkExportInfo enforces the block size rules', () => {
  checkExportInfo(base);
  checkExportInfo({ ...base, size: 100, minBlock: 1, preferredBlock: 4096, maxBlock: 100 }); // tiny export
  const bad: Array<[Partial<ExportInfo>, RegExp]> = [
    [{ minBlock: 3 }, /minBlock/],
    [{ minBlock: 131072, preferredBlock: 131072, maxBlock: 131072 }, /minBlock/],
    [{ preferredBlock: 256 }, /preferredBlock/],
    [{ preferredBlock: 3000 }, /preferredBlock/],
    [{ maxBlock: 1000 }, /maxBlock/],
    [{ maxBlock: 2048 }, /below preferredBlock/],
    [{ size: -1 }, /size/],
    [{ size: 2 ** 60 }, /size/],
    [{ name: 'x'.repeat(4097) }, /name/],
  ];
  for (const [patch, re] of bad) assert.throws(() => checkExportInfo({ ...base, ...patch }), re, JSON.stringify(patch).slice(0, 60));
});

test('engine errno results map onto the protocol error set', () => {
  const cases: Array<[number, number]> = [
    [0, NbdError.OK], [4096, NbdError.OK],
    [-1, NbdError.EPERM], [-13, NbdError.EPERM], [-30, NbdError.EPERM],
    [-5, NbdError.EIO], [-9999, NbdError.EIO], [-4, NbdError.EIO],
    [-12, NbdError.ENOMEM], [-22, NbdError.EINVAL],
    [-28, NbdError.ENOSPC], [-27, NbdError.ENOSPC], [-122, NbdError.ENOSPC],
    [-75, NbdError.EOVERFLOW], [-95, NbdError.ENOTSUP],
    [-125, NbdError.ESHUTDOWN], [-108, NbdError.ESHUTDOWN],
  ];
  for (const [r, want] of cases) assert.equal(nbdErrorFromResult(r), want, String(r));
});
