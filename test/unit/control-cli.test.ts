import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startAdminServer, type AdminServer } from '../../src/control/admin-api.ts';
import { loadOrCreateAdminToken } from '../../src/control/admin-token.ts';
import { run as tenant } from '../../src/cli/tenant.ts';
import { run as volume } from '../../src/cli/volume.ts';
import { makeControl, type Fixture } from './control-fixture.ts';

let fx: Fixture;
let server: AdminServer;
let common: string[];
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-cli-'));

before(async () => {
  fx = makeControl();
  const token = loadOrCreateAdminToken(dataDir);
  server = await startAdminServer({ control: fx.control, host: '127.0.0.1', port: 0, token });
  // The token comes from <data-dir>/admin.token, as on the server's host.
  common = ['--admin', `http://127.0.0.1:${server.port}`, '--data-dir', dataDir];
});
after(async () => {
  await server.close();
});

/** Runs a CLI entry, capturing what it prints. */
async function cli(entry: (argv: string[]) => Promise<number>, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  console.error = (...a: unknown[]) => void err.push(a.join(' '));
  try {
    const code = await entry([...argv, ...common]);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    console.log = log;
    console.error = error;
  }
}

test('cli: tenant create admits with port and secret, list shows it, update, rm', async () => {
  const c = await cli(tenant, ['create', 'web', '--class', 'LC', '--iops', '5000', '--p95', '500', '--read-pct', '90', '--volume-size', '1M', '--port', '0', '--credential']);
  assert.equal(c.code, 0, c.err);
  assert.match(c.out, /tenant web admitted: id \d+, LC/);
  assert.match(c.out, /v1 data port 20000/);
  assert.match(c.out, /secret \(shown only now\): [0-9a-f]{64}/);
  assert.equal(fx.control.getTenant('web')?.readPct, 90);

  const be = await cli(tenant, ['create', 'batch']);
  assert.equal(be.code, 0, be.err);
  assert.equal(fx.control.getTenant('batch')?.class, 'BE');

  const list = await cli(tenant, ['list']);
  assert.equal(list.code, 0);
  const lines = list.out.split('\n');
  assert.match(lines[0], /^NAME\s+ID\s+CLASS\s+IOPS/);
  assert.ok(lines.some((l) => /^web\s+\d+\s+LC\s+5,000\s+500\s+90\s/.test(l)), list.out);
  const json = await cli(tenant, ['list', '--json']);
  assert.deepEqual(JSON.parse(json.out).map((t: { name: string }) => t.name).sort(), ['batch', 'web']);

  const up = await cli(tenant, ['update', 'web', '--iops', '6000']);
  assert.equal(up.code, 0, up.err);
  assert.equal(fx.control.getTenant('web')?.iops, 6000);

  const rm = await cli(tenant, ['rm', 'batch']);
  assert.equal(rm.code, 0);
  assert.equal(fx.control.getTenant('batch'), undefined);
  assert.equal((await cli(tenant, ['rm', 'batch'])).code, 1);
});

test('cli: an admission refusal prints the reason and exits non-zero', async () => {
  const c = await cli(tenant, ['create', 'huge', '--iops', '5000000', '--p95', '500']);
  assert.equal(c.code, 1);
  assert.match(c.err, /tenant huge: refused by admission control: .*\d/);
  assert.equal(fx.control.getTenant('huge'), undefined);
});

test('cli: volumes create, list, resize, rm', async () => {
  const c = await cli(volume, ['create', 'web-logs', '--owner', 'web', '--size', '64K']);
  assert.equal(c.code, 0, c.err);
  assert.match(c.out, /volume web-logs created: default offset 1048576, 64K, owner web/);
  const l = await cli(volume, ['list']);
  assert.match(l.out, /web-logs\s+web\s+default\s+1048576\s+65536\s+64K/);
  const r = await cli(volume, ['resize', 'web-logs', '--size', '128K']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /volume web-logs is now 128K \(131072 bytes\) at offset 1048576 of default/);
  const tooBig = await cli(volume, ['resize', 'web-logs', '--size', '1T']);
  assert.equal(tooBig.code, 1);
  assert.match(tooBig.err, /past the end of device default/);
  await assert.rejects(cli(volume, ['resize', 'web-logs']), { name: 'UsageError' });
  await assert.rejects(cli(volume, ['resize', 'web-logs', '--size', 'huge']), /size/);
  await assert.rejects(cli(volume, ['resize', '--size', '4K']), { name: 'UsageError' });
  await assert.rejects(cli(volume, ['rm', 'web-logs', '--size', '4K']), { name: 'UsageError' });
  const bad = await cli(volume, ['create', 'x', '--owner', 'nobody', '--size', '4K']);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /no tenant nobody/);
  assert.equal((await cli(volume, ['rm', 'web-logs'])).code, 0);
  assert.equal(fx.control.listVolumes().some((v) => v.name === 'web-logs'), false);
});

test('cli: bad flags are usage errors; a wrong token is reported', async () => {
  await assert.rejects(cli(tenant, ['create', 'x', '--iops', 'lots']), { name: 'UsageError' });
  await assert.rejects(cli(tenant, ['create', 'x', '--class', 'XX']), { name: 'UsageError' });
  await assert.rejects(cli(tenant, ['create']), { name: 'UsageError' });
  await assert.rejects(cli(tenant, ['list', '--size', '1G']), /Unknown option/);
  await assert.rejects(cli(tenant, ['update', 'web']), { name: 'UsageError' });
  await assert.rejects(cli(tenant, ['frobnicate']), { name: 'UsageError' });
  await assert.rejects(cli(volume, ['create', 'v', '--owner', 'web']), { name: 'UsageError' });
  await assert.rejects(cli(volume, ['list', '--owner', 'web']), { name: 'UsageError' });
  const wrong = await cli(tenant, ['list', '--token', 'not-the-token-at-all']);
  assert.equal(wrong.code, 1);
  assert.match(wrong.err, /HTTP 401/);
});
