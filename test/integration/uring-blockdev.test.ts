import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Op, newRequest } from '../../src/storage/engine.ts';
import type { IoRequest, OpCode } from '../../src/storage/engine.ts';
import { loadUring } from '../../src/storage/uring-native.ts';
import { UringEngine } from '../../src/storage/uring-engine.ts';

/** Attaches a loop device over a fresh sparse file, or says why it cannot. */
function attachLoop(file: string): string | null {
  if (process.getuid?.() !== 0) return null;
  try {
    return execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

test('block device: size and block size from ioctls, discard and zeroout', { skip: !loadUring().ok && 'io_uring unavailable' }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-uring-blk-'));
  const backing = path.join(dir, 'backing.img');
  fs.writeFileSync(backing, '');
  fs.truncateSync(backing, 16 << 20);
  const dev = attachLoop(backing);
  if (dev === null) {
    fs.rmSync(dir, { recursive: true, force: true });
    t.skip('no loop device (needs root and losetup)');
    return;
  }
  try {
    const e = UringEngine.open(dev, { queueDepth: 8 });
    assert.equal(e.isBlockDevice, true);
    assert.equal(e.size, 16 << 20);
    assert.equal(e.blockSize, 512);
    e.onComplete = (req) => (req.ctx as (r: IoRequest) => void)(req);
    const io = (op: OpCode, offset: number, length: number, buf: Buffer | null): Promise<number> =>
      new Promise((resolve) => {
        const r = newRequest();
        r.op = op;
        r.offset = offset;
        r.length = length;
        r.buf = buf;
        r.ctx = (done: IoRequest) => resolve(done.result);
        e.submit(r);
        e.kick();
      });
    const data = e.allocBuffer(64 * 1024);
    data.fill(0x77);
    assert.equal(await io(Op.WRITE, 0, data.length, data), 0);
    // Loop devices implement discard by punching the backing file, so it reads back zeroes.
    assert.equal(await io(Op.TRIM, 4096, 4096, null), 0);
    assert.equal(await io(Op.WRITE_ZEROES, 16384, 4096, null), 0);
    assert.equal(await io(Op.FLUSH, 0, 0, null), 0);
    const back = e.allocBuffer(data.length);
    assert.equal(await io(Op.READ, 0, back.length, back), 0);
    for (let i = 0; i < back.length; i += 512) {
      const zero = (i >= 4096 && i < 8192) || (i >= 16384 && i < 20480);
      assert.equal(back[i], zero ? 0 : 0x77, `byte ${i}`);
    }
    assert.equal(await io(Op.READ, 0, 4096, e.allocBuffer(8192).subarray(512, 4608)), 0, '512-aligned buffer is enough');
    await e.close();
  } finally {
    execFileSync('losetup', ['-d', dev]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
