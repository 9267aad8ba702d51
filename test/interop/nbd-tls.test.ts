// NBD over TLS (STARTTLS) against real GnuTLS clients: libnbd's nbdinfo,
// nbdcopy and fio's nbd engine, and QEMU's qemu-io. A server started with a
// certificate requires TLS, so plaintext clients are refused.
//
// The certificate is self-signed for 127.0.0.1. GnuTLS clients read a
// directory holding `ca-cert.pem`; for a self-signed server that file is the
// server certificate itself (openssl marks it CA:TRUE, which QEMU checks).
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';
import { resolveConfig } from '../../src/control/config.ts';
import { ClientFlag, Magic, Opt, OPTION_REPLY_HEADER_SIZE, Rep } from '../../src/nbd/constants.ts';
import { ALLOW_SKIP, haveTools, loudSkip, run, sha256File, writeRandomFile } from './nbd-support.ts';

const MiB = 1 << 20;
const VOLUME = 64 * MiB;

let dir: string;
/** Trusts the server's certificate: `ca-cert.pem` is the server's own cert. */
let certDir: string;
/** Trusts some other self-signed certificate: verification must fail. */
let wrongDir: string;
/** A HOME whose libnbd default certificate directory trusts the server (for fio). */
let home: string;
let srv: RunningServer | null = null;
let port = 0;
let setupProblem: string | null = null;

function selfSigned(outDir: string): { cert: string; key: string } {
  fs.mkdirSync(outDir, { recursive: true });
  const cert = path.join(outDir, 'ca-cert.pem');
  const key = path.join(outDir, 'server-key.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
    { stdio: 'ignore', timeout: 20_000 },
  );
  return { cert, key };
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-nbd-tls-'));
  certDir = path.join(dir, 'pki');
  wrongDir = path.join(dir, 'wrong-pki');
  home = path.join(dir, 'home');
  let made: { cert: string; key: string };
  try {
    made = selfSigned(certDir);
    selfSigned(wrongDir);
  } catch (err) {
    // Reported by each test, so the missing-tool rule applies there.
    setupProblem = `openssl could not make a certificate: ${(err as Error).message}`;
    return;
  }
  // libnbd's default directory for a client without tls-certificates=.
  fs.mkdirSync(path.join(home, '.pki', 'libnbd'), { recursive: true });
  fs.copyFileSync(made.cert, path.join(home, '.pki', 'libnbd', 'ca-cert.pem'));
  srv = await startServer(
    resolveConfig(
      { memory: '64M', workers: 2, nbdPort: 0, tlsCert: made.cert, tlsKey: made.key, ports: [{ port: 0, tenant: 'vol1' }] },
      2,
    ),
  );
  assert.ok(srv.nbdPort !== null, 'server started without NBD');
  port = srv.nbdPort;
});

after(async () => {
  if (srv !== null) {
    const s = srv;
    await Promise.race([s.close(), new Promise((_, reject) => setTimeout(() => reject(new Error('server close hung')), 15_000).unref())]);
  }
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
});

/** True when the certificate exists and the tools are installed; otherwise fails or skips loudly. */
function ready(t: TestContext, tools: readonly string[]): boolean {
  if (setupProblem !== null) {
    if (!ALLOW_SKIP) throw new Error(`${setupProblem}; set REFLEX_ALLOW_SKIP=1 to skip instead`);
    loudSkip(t, setupProblem);
    return false;
  }
  return haveTools(t, tools);
}

/** Runs a tool with extra environment and a hard time limit; resolves with its exit error (null on success) and output. */
function runEnv(cmd: string, args: readonly string[], env: Record<string, string>, timeoutMs: number): Promise<{ err: Error | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', cwd: dir, maxBuffer: 16 << 20, env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ err, stdout, stderr }),
    );
  });
}

const tlsUri = (trust: string, name = 'vol1') => `nbds://127.0.0.1:${port}/${name}?tls-certificates=${trust}`;
const plainUri = (name = 'vol1') => `nbd://127.0.0.1:${port}/${name}`;

test('nbdinfo over TLS sees the export', { timeout: 30_000 }, async (t) => {
  if (!ready(t, ['nbdinfo'])) return;
  const { stdout } = await run('nbdinfo', ['--json', tlsUri(certDir)]);
  const info = JSON.parse(stdout) as { protocol: string; TLS: boolean; exports: Record<string, unknown>[] };
  assert.equal(info.TLS, true);
  assert.equal(info.protocol, 'newstyle-fixed');
  assert.equal(info.exports[0]['export-name'], 'vol1');
  assert.equal(info.exports[0]['export-size'], VOLUME);
  // The export list needs TLS too, and works through it.
  const list = await run('nbdinfo', ['--list', `nbds://127.0.0.1:${port}/?tls-certificates=${certDir}`]);
  assert.match(list.stdout, /export="vol1"/);
});

test('plaintext clients are refused with TLS required; TLS clients are still served', { timeout: 30_000 }, async (t) => {
  if (!ready(t, ['nbdinfo'])) return;
  // LIBNBD_DEBUG shows the server's error message, which names the reason.
  const refused = async (args: string[]): Promise<string> => {
    const r = await runEnv('nbdinfo', args, { LIBNBD_DEBUG: '1' }, 20_000);
    assert.ok(r.err !== null, `plaintext nbdinfo ${args.join(' ')} should fail`);
    return r.stderr;
  };
  assert.match(await refused([plainUri()]), /server error message: TLS required/);
  assert.match(await refused(['--list', `nbd://127.0.0.1:${port}/`]), /server error message: TLS required/);
  // The refusals left the server serving: a TLS client connects (--is tls exits 0 only over TLS).
  await run('nbdinfo', ['--is', 'tls', tlsUri(certDir)]);
});

test('a client that does not trust the certificate refuses the server', { timeout: 30_000 }, async (t) => {
  if (!ready(t, ['nbdinfo'])) return;
  // Proves the clients really verify the certificate chain (so the passes above mean something).
  await assert.rejects(run('nbdinfo', [tlsUri(wrongDir)], 20_000), /certificate|verif/i);
  // And the server is unharmed by the failed TLS handshake.
  await run('nbdinfo', [tlsUri(certDir)]);
});

test('qemu-io writes and reads back through TLS', { timeout: 60_000 }, async (t) => {
  if (!ready(t, ['qemu-io'])) return;
  const io = (cmds: string[]) =>
    run('qemu-io', [
      '--object', `tls-creds-x509,id=tls0,dir=${certDir},endpoint=client`,
      '--image-opts', `driver=nbd,host=127.0.0.1,port=${port},export=vol1,tls-creds=tls0`,
      ...cmds.flatMap((c) => ['-c', c]),
    ]);
  const r = await io(['write -P 0x5a 0 64k', 'read -P 0x5a 0 64k', 'write -P 0xc3 1000000 300000', 'flush']);
  assert.match(r.stdout, /wrote 65536\/65536 bytes at offset 0/);
  // A separate connection sees the data, and a wrong pattern fails: the check can fail.
  await io(['read -P 0x5a 0 64k', 'read -P 0xc3 1000000 300000']);
  await assert.rejects(io(['read -P 0x11 0 4k']), /Pattern verification failed/);
});

test('nbdcopy copies in and out through TLS byte-identical (several connections)', { timeout: 90_000 }, async (t) => {
  if (!ready(t, ['nbdcopy'])) return;
  const input = path.join(dir, 'in.img');
  const output = path.join(dir, 'out.img');
  writeRandomFile(input, VOLUME, 11);
  await run('nbdcopy', ['--connections=2', '--flush', input, tlsUri(certDir)], 60_000);
  await run('nbdcopy', ['--connections=2', tlsUri(certDir), output], 60_000);
  assert.equal(sha256File(output), sha256File(input));
});

test('fio nbd engine through TLS: random writes verified', { timeout: 60_000 }, async (t) => {
  if (!ready(t, ['fio'])) return;
  // fio does not let libnbd read tls-certificates= from the URI, so the
  // certificate sits in libnbd's default directory under HOME.
  const { err, stdout, stderr } = await runEnv(
    'fio',
    ['--name=nbd-tls', '--ioengine=nbd', `--uri=nbds://127.0.0.1:${port}/vol1`, '--rw=randwrite', '--bs=4k',
      '--size=8m', '--iodepth=16', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1',
      '--verify_state_save=0', '--output-format=json'],
    { HOME: home },
    45_000,
  );
  assert.equal(err, null, `fio failed: ${err?.message}\n${stdout}\n${stderr}`);
  const job = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[] }).jobs[0];
  assert.equal(job.error, 0);
  assert.equal(job.write.io_bytes, 8 * MiB);
  assert.equal(job.read.io_bytes, 8 * MiB);
});

test('bytes sent right behind STARTTLS are refused, not taken into TLS', { timeout: 15_000 }, async (t) => {
  if (!ready(t, [])) return;
  // Client flags, then STARTTLS with something glued on (as an attacker
  // injecting plaintext ahead of the upgrade would): ACK, then hang up.
  const flags = Buffer.alloc(4);
  flags.writeUInt32BE(ClientFlag.FIXED_NEWSTYLE, 0);
  const opt = Buffer.alloc(16);
  opt.writeBigUInt64BE(Magic.IHAVEOPT, 0);
  opt.writeUInt32BE(Opt.STARTTLS, 8);
  opt.writeUInt32BE(0, 12);
  const got = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('data', () => s.write(Buffer.concat([flags, opt, Buffer.from('\x16\x03\x01injected')])));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });
  // 18-byte greeting, then exactly one option reply: the STARTTLS ACK.
  assert.equal(got.length, 18 + OPTION_REPLY_HEADER_SIZE);
  const reply = got.subarray(18);
  assert.equal(reply.readBigUInt64BE(0), Magic.OPTION_REPLY);
  assert.equal(reply.readUInt32BE(8), Opt.STARTTLS);
  assert.equal(reply.readUInt32BE(12), Rep.ACK);
});
