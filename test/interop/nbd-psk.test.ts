// NBD access by tenant credential: TLS-PSK (the credential is the key, the
// tenant name the identity) against libnbd's GnuTLS clients. A volume whose
// tenant has a credential is invisible to plaintext clients and to other
// tenants, and served to its own tenant over TLS 1.3 without any server
// certificate; a volume of a tenant without a credential stays open.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';
import { resolveConfig } from '../../src/control/config.ts';
import { Cmd, Opt, Rep } from '../../src/nbd/constants.ts';
import { encodeOption, encodeRequest } from '../../src/nbd/client-codec.ts';
import { go, greet, readOptionReply, simple } from '../helpers/nbd-raw.ts';
import { haveTools, run, sha256File, writeRandomFile } from './nbd-support.ts';

const MiB = 1 << 20;
let srv: RunningServer;
let dir: string;
const secret: Record<string, string> = {};

/** A libnbd PSK file: `identity:hexkey` lines. */
function pskFile(name: string, identity: string, key: string): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, `${identity}:${key}\n`, { mode: 0o600 });
  return f;
}

const uri = (exp: string, identity?: string, file?: string): string =>
  identity === undefined ? `nbd://127.0.0.1:${srv.nbdPort}/${exp}` : `nbds://${identity}@127.0.0.1:${srv.nbdPort}/${exp}?tls-psk-file=${file}`;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-nbd-psk-'));
  srv = await startServer(resolveConfig({ memory: 256 * MiB, workers: 2, nbdPort: 0, persist: false, ports: [{ port: 0, tenant: 'open', volumeSize: '16M' }] }, 2));
  for (const name of ['gold', 'silver']) {
    const r = await srv.control.createTenant({ name, class: 'BE', volumeSize: 32 * MiB, credential: true });
    assert.ok(r.ok, r.ok ? '' : r.reason);
    secret[name] = r.value.secret!;
  }
});

after(async () => {
  await srv?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('plaintext clients see and open only volumes of tenants without a credential', async (t) => {
  if (!haveTools(t, ['nbdinfo'])) return;
  const list = (await run('nbdinfo', ['--list', uri('')])).stdout;
  assert.match(list, /export="open"/);
  assert.doesNotMatch(list, /gold|silver/);
  await assert.rejects(run('nbdinfo', [uri('gold')]), /No such file|unknown export|server replied with error/);
});

test('a tenant’s credential as TLS pre-shared key opens its volume, byte-identical through nbdcopy', async (t) => {
  if (!haveTools(t, ['nbdinfo', 'nbdcopy'])) return;
  const psk = pskFile('gold.psk', 'gold', secret.gold);
  const info = (await run('nbdinfo', [uri('gold', 'gold', psk)])).stdout;
  assert.match(info, /with TLS/);
  assert.match(info, /export-size: 33554432/);
  const list = (await run('nbdinfo', ['--list', uri('', 'gold', psk)])).stdout;
  assert.match(list, /export="gold"/);
  assert.doesNotMatch(list, /silver/, 'another tenant’s volume stays hidden');
  const src = path.join(dir, 'in.bin');
  const back = path.join(dir, 'out.bin');
  writeRandomFile(src, 8 * MiB, 7);
  await run('nbdcopy', [src, uri('gold', 'gold', psk)], 60_000);
  await run('nbdcopy', [uri('gold', 'gold', psk), back], 60_000);
  assert.equal(sha256File(back, 8 * MiB), sha256File(src));
});

test('a wrong key, an unknown identity, or another tenant’s credential opens nothing', async (t) => {
  if (!haveTools(t, ['nbdinfo'])) return;
  const wrongKey = pskFile('wrong.psk', 'gold', 'ab'.repeat(32));
  await assert.rejects(run('nbdinfo', [uri('gold', 'gold', wrongKey)]), /TLS|handshake/);
  const nobody = pskFile('nobody.psk', 'nobody', secret.gold);
  await assert.rejects(run('nbdinfo', [uri('gold', 'nobody', nobody)]), /TLS|handshake/);
  const silver = pskFile('silver.psk', 'silver', secret.silver);
  assert.match((await run('nbdinfo', [uri('silver', 'silver', silver)])).stdout, /export="silver"/);
  await assert.rejects(run('nbdinfo', [uri('gold', 'silver', silver)]), /No such file|unknown export|server replied with error/);
});

test('giving a tenant a credential cuts its plaintext NBD connections', async () => {
  const nbd = await greet(srv.nbdPort!);
  await go(nbd, 'open');
  nbd.send(encodeRequest({ type: Cmd.READ, cookieLo: 1, offset: 0, length: 4096 }));
  assert.equal((await simple(nbd, 4096)).error, 0);
  const c = await srv.control.createCredential('open');
  assert.ok(c.ok);
  await nbd.closed();
  // Afterwards the volume needs the key, like any credentialed tenant's.
  const again = await greet(srv.nbdPort!);
  await assert.rejects(go(again, 'open'), /GO failed/);
  again.destroy();
});

test('garbage instead of a TLS handshake after STARTTLS closes that connection only', async (t) => {
  if (!haveTools(t, ['nbdinfo'])) return;
  const bad = await greet(srv.nbdPort!);
  bad.send(encodeOption(Opt.STARTTLS));
  assert.equal((await readOptionReply(bad)).type, Rep.ACK);
  bad.send(Buffer.from('GET / HTTP/1.1\r\n\r\n'.repeat(8)));
  await bad.closed();
  // Other clients are unaffected: one with the key is still served.
  const psk = pskFile('gold2.psk', 'gold', secret.gold);
  assert.match((await run('nbdinfo', [uri('gold', 'gold', psk)])).stdout, /export-size: 33554432/);
});

test('QEMU with tls-creds-psk copies in and out byte-identical; a wrong key is refused', { timeout: 60_000 }, async (t) => {
  if (!haveTools(t, ['qemu-img'])) return;
  // QEMU reads `identity:hexkey` lines from DIR/keys.psk and picks the line of `username`.
  const keys = (name: string, key: string): string => {
    const d = fs.mkdtempSync(path.join(dir, `qemu-${name}-`));
    fs.writeFileSync(path.join(d, 'keys.psk'), `gold:${key}\n`, { mode: 0o600 });
    return d;
  };
  const object = (d: string): string => `tls-creds-psk,id=tls0,endpoint=client,dir=${d},username=gold`;
  const target = `driver=nbd,host=127.0.0.1,port=${srv.nbdPort},export=gold,tls-creds=tls0`;
  const good = keys('good', secret.gold);
  const src = path.join(dir, 'qemu-in.raw');
  const back = path.join(dir, 'qemu-out.raw');
  writeRandomFile(src, 4 * MiB, 11);
  await run('qemu-img', ['convert', '-n', '-f', 'raw', '--object', object(good), '--target-image-opts', src, target], 60_000);
  await run('qemu-img', ['convert', '-O', 'raw', '--object', object(good), '--image-opts', target, back], 60_000);
  assert.equal(sha256File(back, 4 * MiB), sha256File(src));
  const bad = keys('bad', 'cd'.repeat(32));
  await assert.rejects(run('qemu-img', ['info', '--object', object(bad), '--image-opts', target]), /TLS|handshake|Could not|Failed/i);
});
