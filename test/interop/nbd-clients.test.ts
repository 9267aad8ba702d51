// The NBD front end against real clients: libnbd's nbdinfo and nbdcopy,
// QEMU's qemu-img and qemu-io, and fio's nbd engine.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { haveTools, run, sha256File, startNbdTestServer, writeRandomFile, type NbdTestServer } from './nbd-support.ts';

let server: NbdTestServer;
let dir: string;
const MiB = 1 << 20;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-nbd-'));
  server = await startNbdTestServer();
});

after(async () => {
  await server?.srv.close();
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
});

test('nbdinfo lists both exports with sizes, block sizes and flags', { timeout: 30_000 }, async (t) => {
  if (!haveTools(t, ['nbdinfo'])) return;
  const list = await run('nbdinfo', ['--list', `nbd://127.0.0.1:${server.port}`]);
  assert.match(list.stdout, /export="vol1"/);
  assert.match(list.stdout, /export="vol2"/);

  const { stdout } = await run('nbdinfo', ['--json', server.uri('vol2')]);
  const info = JSON.parse(stdout) as { protocol: string; structured: boolean; exports: Record<string, unknown>[] };
  assert.equal(info.protocol, 'newstyle-fixed');
  assert.equal(info.structured, true);
  const e = info.exports[0];
  assert.equal(e['export-name'], 'vol2');
  assert.equal(e['export-size'], 64 * MiB);
  assert.equal(e['block_size_minimum'], 1);
  assert.equal(e['block_size_preferred'], 4096);
  assert.equal(e['block_size_maximum'], 32 * MiB);
  for (const flag of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_multi_conn']) assert.equal(e[flag], true, flag);
  assert.equal(e['is_read_only'], false);
  assert.deepEqual(e['contexts'], ['base:allocation']);

  // The default export ('') is the first volume.
  const def = JSON.parse((await run('nbdinfo', ['--json', `nbd://127.0.0.1:${server.port}`])).stdout) as typeof info;
  assert.equal(def.exports[0]['export-name'], 'vol1');
  assert.equal(def.exports[0]['export-size'], server.srv.bindings[0].volume.size);

  // nbdinfo --map walks base:allocation block status: one data extent for the whole volume.
  const map = await run('nbdinfo', ['--map', server.uri('vol2')]);
  assert.match(map.stdout.trim(), /^0\s+67108864\s+0\s+data$/);
});

test('an unknown export is refused', { timeout: 30_000 }, async (t) => {
  if (!haveTools(t, ['nbdinfo'])) return;
  await assert.rejects(run('nbdinfo', [server.uri('nope')]), /nbdinfo/);
});

test('qemu-img convert copies an image in and out byte-identical', { timeout: 60_000 }, async (t) => {
  if (!haveTools(t, ['qemu-img'])) return;
  const input = path.join(dir, 'qemu-in.img');
  const output = path.join(dir, 'qemu-out.img');
  writeRandomFile(input, 12 * MiB + 4096 * 3, 1);
  const size = fs.statSync(input).size;
  await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', input, server.uri('vol2')]);
  await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', server.uri('vol2'), output]);
  assert.equal(fs.statSync(output).size, 64 * MiB);
  assert.equal(sha256File(output, size), sha256File(input));
});

test('qemu-io: unaligned writes, FUA, write-zeroes, trim and flush read back as written', { timeout: 60_000 }, async (t) => {
  if (!haveTools(t, ['qemu-io'])) return;
  const uri = server.uri('vol2');
  const io = (cmds: string[]) => run('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), uri]);
  // Offsets relative to a 64 KiB area that starts zeroed, at odd positions on purpose.
  const B = 48 * MiB;
  const at = (n: number) => String(B + n);
  await io([`write -z ${B} 65536`]);
  await io([`write -P 0xab ${at(1000)} 5000`, `write -f -P 0xcd ${at(10000)} 3000`, 'flush']);
  await io([`read -P 0xab ${at(1000)} 5000`, `read -P 0xcd ${at(10000)} 3000`, `read -P 0 ${B} 1000`, `read -P 0 ${at(6000)} 4000`]);
  await io([`write -z ${at(2000)} 1000`]);
  await io([`read -P 0xab ${at(1000)} 1000`, `read -P 0 ${at(2000)} 1000`, `read -P 0xab ${at(3000)} 3000`]);
  await io([`discard ${B} 4096`]);
  // A pattern mismatch makes qemu-io fail: the check above can fail too.
  await assert.rejects(io([`read -P 0x11 ${at(10000)} 100`]), /Pattern verification failed/);
  await io([`read -P 0xcd ${at(10000)} 3000`]);
});

test('nbdcopy copies in (multi-conn) and out byte-identical', { timeout: 60_000 }, async (t) => {
  if (!haveTools(t, ['nbdcopy'])) return;
  const input = path.join(dir, 'nbdcopy-in.img');
  const output = path.join(dir, 'nbdcopy-out.img');
  writeRandomFile(input, 64 * MiB, 7);
  await run('nbdcopy', ['--connections=4', '--flush', input, server.uri('vol2')]);
  await run('nbdcopy', ['--connections=4', server.uri('vol2'), output]);
  assert.equal(sha256File(output), sha256File(input));
});

test('fio nbd engine: random writes with crc32c verification', { timeout: 60_000 }, async (t) => {
  if (!haveTools(t, ['fio'])) return;
  const { stdout } = await run('fio', [
    '--name=nbd-verify', '--ioengine=nbd', `--uri=${server.uri('vol2')}`,
    '--rw=randwrite', '--bs=4k', '--size=16m', '--iodepth=16',
    '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0', '--output-format=json',
  ]);
  const job = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[] }).jobs[0];
  assert.equal(job.error, 0);
  assert.equal(job.write.io_bytes, 16 * MiB);
  // The verify phase read everything back.
  assert.equal(job.read.io_bytes, 16 * MiB);
});
