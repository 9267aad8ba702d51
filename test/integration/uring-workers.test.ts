import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { loadUring } from '../../src/storage/uring-native.ts';

const skip = loadUring().ok ? false : 'io_uring unavailable';

/*
 * Runs in each worker: its own engine (so its own ring and buffer table) on
 * the shared file, random aligned writes and reads inside its own region,
 * checked against an in-memory model. Returns the model's hash-free copy via
 * transfer so the parent can check the file too.
 */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { randomBytes, randomInt } = require('node:crypto');
(async () => {
  const { UringEngine } = await import(workerData.engineUrl);
  const { Op, newRequest } = await import(workerData.apiUrl);
  const { file, base, region, rounds } = workerData;
  const e = UringEngine.open(file, { queueDepth: 16 });
  e.onComplete = (req) => req.ctx(req);
  const io = (op, off, len, buf) => new Promise((resolve) => {
    const r = newRequest();
    r.op = op; r.offset = base + off; r.length = len; r.buf = buf;
    r.ctx = (done) => resolve(done.result);
    e.submit(r);
  });
  const model = Buffer.alloc(region);
  let checked = 0;
  for (let round = 0; round < rounds; round++) {
    const taken = [];
    const writes = [];
    while (taken.length < 32) {
      const len = randomInt(1, 65) * 512;
      const off = randomInt(0, (region - len) / 512 + 1) * 512;
      if (taken.some(([o, l]) => off < o + l && o < off + len)) continue;
      taken.push([off, len]);
      const buf = e.allocBuffer(len);
      randomBytes(len).copy(buf);
      buf.copy(model, off);
      writes.push(io(Op.WRITE, off, len, buf));
    }
    e.kick();
    for (const res of await Promise.all(writes)) if (res !== 0) throw new Error('write failed ' + res);
    const reads = [];
    for (let i = 0; i < 32; i++) {
      const len = randomInt(1, 65) * 512;
      const off = randomInt(0, (region - len) / 512 + 1) * 512;
      const buf = e.allocBuffer(len);
      reads.push(io(Op.READ, off, len, buf).then((res) => ({ res, off, len, buf })));
    }
    e.kick();
    for (const { res, off, len, buf } of await Promise.all(reads)) {
      if (res !== 0) throw new Error('read failed ' + res);
      if (!buf.equals(model.subarray(off, off + len))) throw new Error('mismatch at ' + (base + off) + '+' + len);
      checked++;
    }
  }
  await e.close();
  parentPort.postMessage({ checked, model });
})().catch((err) => parentPort.postMessage({ error: String(err && err.stack || err) }));
`;

test('workers with their own engines on one file keep data intact', { skip }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-uring-w-'));
  const file = path.join(dir, 'shared.img');
  const workers = 4;
  const region = 2 << 20;
  fs.writeFileSync(file, '');
  fs.truncateSync(file, workers * region);
  try {
    const runs = Array.from({ length: workers }, (_, i) => new Promise<{ checked: number; model: Uint8Array }>((resolve, reject) => {
      const w = new Worker(WORKER, {
        eval: true,
        workerData: {
          engineUrl: new URL('../../src/storage/uring-engine.ts', import.meta.url).href,
          apiUrl: new URL('../../src/storage/engine.ts', import.meta.url).href,
          file, base: i * region, region, rounds: 12,
        },
      });
      w.once('message', (m: { error?: string; checked: number; model: Uint8Array }) => {
        if (m.error !== undefined) reject(new Error(`worker ${i}: ${m.error}`));
        else resolve(m);
      });
      w.once('error', reject);
    }));
    const results = await Promise.all(runs);
    const disk = fs.readFileSync(file);
    results.forEach((r, i) => {
      assert.equal(r.checked, 12 * 32);
      assert.ok(Buffer.from(r.model).equals(disk.subarray(i * region, (i + 1) * region)), `region ${i} on disk matches worker ${i}`);
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('terminating a worker with reads in flight is safe', { skip }, async () => {
  // Regression: buffer finalizers ran before the ring closed and the kernel
  // wrote into freed memory (heap corruption, then a crash at teardown).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-uring-t-'));
  const file = path.join(dir, 'busy.img');
  fs.writeFileSync(file, Buffer.alloc(4 << 20, 1));
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    (async () => {
      const { UringEngine } = await import(workerData.engineUrl);
      const { Op, newRequest } = await import(workerData.apiUrl);
      const e = UringEngine.open(workerData.file, { queueDepth: 64 });
      let done = 0;
      e.onComplete = (r) => {
        if (++done === 256) parentPort.postMessage('busy');
        r.offset = Math.floor(Math.random() * 1024) * 4096;
        e.submit(r);
        e.kick();
      };
      for (let i = 0; i < 64; i++) {
        const r = newRequest();
        r.op = Op.READ; r.length = 4096; r.buf = e.allocBuffer(4096); r.offset = i * 4096;
        e.submit(r);
      }
      e.kick();
    })();`;
  try {
    for (let i = 0; i < 3; i++) {
      const w = new Worker(code, {
        eval: true,
        workerData: {
          file,
          engineUrl: new URL('../../src/storage/uring-engine.ts', import.meta.url).href,
          apiUrl: new URL('../../src/storage/engine.ts', import.meta.url).href,
        },
      });
      assert.equal(await new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      }), 'busy');
      await w.terminate();
    }
    // Still alive and allocating after three mid-flight teardowns.
    assert.equal(Buffer.alloc(1 << 20, 2).reduce((a, b) => a + b, 0), 2 << 20);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
