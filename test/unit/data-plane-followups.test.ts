/**
 * What the data plane adds around any engine: a FUA TRIM or WRITE_ZEROES is
 * followed by a FLUSH before it is answered (engines make only writes
 * durable by themselves), and a WRITE_ZEROES the device cannot do is carried
 * out by writing zeros. A recording engine stands in for the device.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DataPlane } from '../../src/dataplane/data-plane.ts';
import { TenantCounters } from '../../src/dataplane/tenant-counters.ts';
import type { DpRequest } from '../../src/dataplane/request.ts';
import { Errno, Op, type CompletionHandler, type Engine, type IoRequest, type OpCode } from '../../src/storage/engine.ts';

/** Completes every request on a microtask; WRITE_ZEROES fails with EOPNOTSUPP when told to. */
class RecordingEngine implements Engine {
  readonly name = 'recording';
  readonly size = 64 << 20;
  readonly blockSize = 512;
  onComplete: CompletionHandler = () => {};
  readonly log: Array<[string, number, number]> = [];
  readonly image = Buffer.alloc(this.size, 0xaa);
  inFlight = 0;
  private readonly zeroesUnsupported: boolean;
  constructor(zeroesUnsupported: boolean) {
    this.zeroesUnsupported = zeroesUnsupported;
  }
  allocBuffer(length: number): Buffer {
    return Buffer.alloc(length);
  }
  submit(req: IoRequest): void {
    this.inFlight++;
    const name = Object.entries(Op).find(([, v]) => v === req.op)![0];
    this.log.push([name, req.offset, req.length]);
    queueMicrotask(() => {
      this.inFlight--;
      if (req.op === Op.WRITE_ZEROES && this.zeroesUnsupported) req.result = Errno.EOPNOTSUPP;
      else {
        if (req.op === Op.WRITE) req.buf!.copy(this.image, req.offset, 0, req.length);
        if (req.op === Op.WRITE_ZEROES) this.image.fill(0, req.offset, req.offset + req.length);
        req.result = 0;
      }
      this.onComplete(req);
    });
  }
  kick(): void {}
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function run(plane: DataPlane, op: OpCode, offset: number, length: number, fua: boolean): Promise<DpRequest> {
  return new Promise((resolve) => {
    const req = plane.newRequest();
    req.op = op;
    req.offset = offset;
    req.length = length;
    req.fua = fua;
    req.result = 0;
    req.buf = null;
    req.owner = { complete: (r) => resolve({ ...r }) };
    plane.submit(req);
  });
}

const counters = (): TenantCounters => new TenantCounters(TenantCounters.allocate(4, 1), 4, 1, 0);

test('FUA on TRIM and WRITE_ZEROES: a FLUSH runs before the answer, which keeps its own op', async () => {
  const engine = new RecordingEngine(false);
  const plane = new DataPlane(engine, counters());
  for (const op of [Op.TRIM, Op.WRITE_ZEROES] as OpCode[]) {
    engine.log.length = 0;
    const done = await run(plane, op, 4096, 8192, true);
    assert.equal(done.result, 0);
    assert.equal(done.op, op, 'answered as the command the client sent');
    assert.deepEqual(engine.log.map((e) => e[0]), [op === Op.TRIM ? 'TRIM' : 'WRITE_ZEROES', 'FLUSH']);
  }
  engine.log.length = 0;
  await run(plane, Op.TRIM, 0, 4096, false);
  assert.deepEqual(engine.log.map((e) => e[0]), ['TRIM'], 'no flush without FUA');
});

test('WRITE_ZEROES the device cannot do is written as zeros, in 1 MiB pieces, then flushed if FUA', async () => {
  const engine = new RecordingEngine(true);
  const plane = new DataPlane(engine, counters());
  const offset = 512;
  const length = (2 << 20) + 4096;
  const done = await run(plane, Op.WRITE_ZEROES, offset, length, true);
  assert.equal(done.result, 0);
  assert.equal(done.op, Op.WRITE_ZEROES);
  assert.deepEqual(engine.log, [
    ['WRITE_ZEROES', offset, length],
    ['WRITE', offset, 1 << 20],
    ['WRITE', offset + (1 << 20), 1 << 20],
    ['WRITE', offset + (2 << 20), 4096],
    ['FLUSH', offset, length],
  ]);
  assert.ok(engine.image.subarray(offset, offset + length).every((b) => b === 0), 'the range reads as zeros');
  assert.equal(engine.image[offset - 1], 0xaa, 'nothing outside it changed');
  assert.equal(engine.image[offset + length], 0xaa);
});

test('an engine being closed gets no follow-up: FUA TRIM and zero-writing end with ECANCELED', async () => {
  // The worker sets `closing` when a drain deadline passes and it closes the
  // engine; a follow-up submitted then would go to a closed ring.
  for (const zeroesUnsupported of [false, true]) {
    const engine = new RecordingEngine(zeroesUnsupported);
    const plane = new DataPlane(engine, counters());
    const pending = run(plane, zeroesUnsupported ? Op.WRITE_ZEROES : Op.TRIM, 4096, 8192, true);
    plane.closing = true;
    const done = await pending;
    assert.equal(done.result, Errno.ECANCELED, 'durability cannot be promised, so it is not claimed');
    assert.deepEqual(engine.log.map((e) => e[0]), [zeroesUnsupported ? 'WRITE_ZEROES' : 'TRIM'], 'nothing after the first request');
  }
});
