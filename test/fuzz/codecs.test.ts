/**
 * Bounded fuzzing of the pure parsers for CI (a few seconds each; the long
 * run is `node bench/reliability.ts`). A failure message names the seed and
 * case, which replay exactly through fuzzReflex / fuzzNbd* with that seed.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Cmd, HEADER_SIZE } from '../../src/protocol/reflex-constants.ts';
import { ParseError } from '../../src/protocol/reflex-codec.ts';
import { header } from '../helpers/raw-peer.ts';
import { fuzzReflex, referenceFrames } from './reflex-fuzz.ts';
import { fuzzNbdHandshake, fuzzNbdRequests } from './nbd-fuzz.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 20240601);
const BUDGET_MS = 3000;

describe('codec fuzzing', () => {
  it('the reference reader agrees with hand-built streams', () => {
    const data = Buffer.alloc(1024, 7);
    const s = Buffer.concat([header(Cmd.SET, 1, 0, 2), data, header(Cmd.GET, 2, 8, 1), header(Cmd.GET, 3, 0, 1, 25)]);
    const ev = referenceFrames(s, 4096);
    assert.deepEqual(
      ev.map((e) => [e.kind, e.opcode, e.payloadLen]),
      [
        ['frame', Cmd.SET, 1024],
        ['frame', Cmd.GET, 0],
        ['error', Cmd.GET, 0],
      ],
    );
    assert.equal(ev[2].code, ParseError.BAD_MAGIC);
    const big = referenceFrames(header(Cmd.SET, 1, 0, 9), 4096);
    assert.equal(big[0].code, ParseError.TOO_LARGE);
    assert.deepEqual(referenceFrames(header(Cmd.SET, 1, 0, 1).subarray(0, HEADER_SIZE - 1), 4096), []);
  });

  it('ReFlex FrameParser: frames and errors match the reference, memory bounded, never throws', () => {
    const s = fuzzReflex(SEED, 1e9, undefined, Date.now() + BUDGET_MS);
    assert.ok(s.cases > 500, `only ${s.cases} cases in ${BUDGET_MS} ms`);
    assert.ok(s.frames > 1000 && s.errors > 100, `both paths exercised: ${s.frames} frames, ${s.errors} errors`);
    assert.ok(s.maxCaseMs < 1000, `slowest case ${s.maxCaseMs.toFixed(1)} ms`);
  });

  it('NBD request parser: requests, rejects and fatal errors match the reference', () => {
    const s = fuzzNbdRequests(SEED, 1e9, undefined, Date.now() + BUDGET_MS);
    assert.ok(s.cases > 500, `only ${s.cases} cases`);
    assert.ok(s.frames > 1000 && s.errors > 100, `${s.frames} events, ${s.errors} rejects/fatal`);
    assert.ok(s.maxCaseMs < 1000, `slowest case ${s.maxCaseMs.toFixed(1)} ms`);
  });

  it('NBD handshake: every complete option answered exactly once, replies well-formed', () => {
    const s = fuzzNbdHandshake(SEED, 1e9, undefined, Date.now() + BUDGET_MS);
    assert.ok(s.cases > 500, `only ${s.cases} cases`);
    assert.ok(s.frames > 1000 && s.errors > 100, `${s.frames} final replies, ${s.errors} closes`);
    assert.ok(s.maxCaseMs < 1000, `slowest case ${s.maxCaseMs.toFixed(1)} ms`);
  });
});
