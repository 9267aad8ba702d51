// A filesystem on an NBD volume: nbdfuse exposes the export as a file,
// mkfs.ext4 formats it, the kernel mounts it through a loop device, files
// written survive umount/remount with identical checksums.
// Needs root, /dev/fuse and loop devices: without them the test skips
// loudly (the only interop test allowed to skip for lack of privileges).
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { haveTools, loudSkip, run, startNbdTestServer, type NbdTestServer } from './nbd-support.ts';

let server: NbdTestServer;
let dir: string;
let fuseDir: string;
let mountDir: string;
let nbdfuse: ChildProcess | null = null;
let ext4Mounted = false;
let fuseMounted = false;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-nbdfuse-'));
  fuseDir = path.join(dir, 'fuse');
  mountDir = path.join(dir, 'mnt');
  fs.mkdirSync(fuseDir);
  fs.mkdirSync(mountDir);
  server = await startNbdTestServer();
});

after(async () => {
  // Undo in reverse order, each step whatever happened before it.
  if (ext4Mounted) await run('umount', [mountDir], 20_000).catch((e: Error) => console.warn(`umount: ${e.message}`));
  if (fuseMounted) await run('fusermount3', ['-u', fuseDir], 20_000).catch((e: Error) => console.warn(`fusermount3: ${e.message}`));
  if (nbdfuse !== null && nbdfuse.exitCode === null) {
    await waitExit(nbdfuse, 5_000);
    if (nbdfuse.exitCode === null) nbdfuse.kill('SIGKILL');
  }
  await server?.srv.close();
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
});

function waitExit(p: ChildProcess, ms: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    p.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Why this machine cannot run the test, or null when it can. */
function missingPrivileges(): string | null {
  if (process.getuid?.() !== 0) return 'not root (mount needs it)';
  try {
    fs.accessSync('/dev/fuse', fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    return '/dev/fuse is not available';
  }
  if (!fs.existsSync('/dev/loop-control')) return 'no loop devices (/dev/loop-control missing)';
  return null;
}

async function waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function sha256(p: string): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

test('ext4 on nbdfuse: mkfs, mount, write, umount, remount, checksums match', { timeout: 120_000 }, async (t: TestContext) => {
  if (!haveTools(t, ['nbdfuse', 'fusermount3', 'mkfs.ext4', 'mount', 'umount'])) return;
  const why = missingPrivileges();
  if (why !== null) {
    loudSkip(t, why);
    return;
  }
  const pidFile = path.join(dir, 'nbdfuse.pid');
  const disk = path.join(fuseDir, 'disk');
  let stderr = '';
  nbdfuse = spawn('nbdfuse', ['-P', pidFile, disk, server.uri('vol2')], { stdio: ['ignore', 'ignore', 'pipe'] });
  nbdfuse.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  fuseMounted = true;
  try {
    await waitFor(() => fs.existsSync(pidFile) || nbdfuse!.exitCode !== null, 20_000, 'nbdfuse to be ready');
  } catch (e) {
    throw new Error(`${(e as Error).message}; nbdfuse stderr: ${stderr}`);
  }
  assert.equal(nbdfuse.exitCode, null, `nbdfuse exited: ${stderr}`);
  assert.equal(fs.statSync(disk).size, 64 << 20);

  await run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', disk], 60_000);
  await run('mount', ['-o', 'loop', disk, mountDir], 30_000);
  ext4Mounted = true;

  // A few files of different sizes, random contents.
  const sums = new Map<string, string>();
  for (const [name, size] of [['small', 1000], ['page', 4096], ['big', 5 << 20], ['odd', 123457]] as const) {
    const p = path.join(mountDir, name);
    const buf = randomBytes(size);
    const fd = fs.openSync(p, 'w');
    fs.writeSync(fd, buf);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    sums.set(name, createHash('sha256').update(buf).digest('hex'));
  }
  fs.mkdirSync(path.join(mountDir, 'sub'));
  fs.writeFileSync(path.join(mountDir, 'sub', 'note.txt'), 'hello over NBD\n');
  await run('sync', [], 30_000);
  await run('umount', [mountDir], 30_000);
  ext4Mounted = false;

  // Remount from what the server holds (the page cache of the loop device is gone with it).
  await run('mount', ['-o', 'loop', disk, mountDir], 30_000);
  ext4Mounted = true;
  for (const [name, sum] of sums) assert.equal(sha256(path.join(mountDir, name)), sum, name);
  assert.equal(fs.readFileSync(path.join(mountDir, 'sub', 'note.txt'), 'utf8'), 'hello over NBD\n');
  await run('umount', [mountDir], 30_000);
  ext4Mounted = false;

  // The filesystem is consistent as stored on the server.
  if (haveFsck()) await run('e2fsck', ['-f', '-n', disk], 60_000);

  await run('fusermount3', ['-u', fuseDir], 20_000);
  fuseMounted = false;
  await waitExit(nbdfuse, 10_000);
  assert.equal(nbdfuse.exitCode, 0, `nbdfuse exit: ${stderr}`);
});

function haveFsck(): boolean {
  return fs.existsSync('/usr/sbin/e2fsck') || fs.existsSync('/sbin/e2fsck');
}
