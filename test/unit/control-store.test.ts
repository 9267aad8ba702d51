import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { DatabaseSync } from 'node:sqlite';
import { SqliteStore, REGISTRY_DB } from '../../src/control/store.ts';
import type { RegistrySnapshot } from '../../src/control/registry.ts';
import { makeControl } from './control-fixture.ts';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-store-'));
}

const SNAP: RegistrySnapshot = {
  tenants: [
    { id: 0, name: 'alpha', device: 'default', spec: { name: 'alpha', class: 'LC', iops: 5000, p95Us: 500, readPct: 90 } },
    { id: 3, name: 'beta', device: 'default', spec: { name: 'beta', class: 'BE' } },
  ],
  volumes: [{ name: 'alpha', device: 'default', owner: 'alpha', offset: 4096, size: 1 << 20 }],
  credentials: [{ tenant: 'alpha', secret: 'ab'.repeat(32), createdAt: '2025-01-02T03:04:05.000Z' }],
  ports: [{ port: 20001, tenant: 'alpha', volume: 'alpha' }],
  scrubs: [
    { device: 'default', offset: 8 << 20, size: 1 << 20 },
    { device: 'default', offset: 2 << 20, size: 4096 },
  ],
};

test('store: empty database loads as null', () => {
  const dir = tmpDir();
  const s = SqliteStore.inDataDir(dir);
  assert.equal(s.load(), null);
  s.close();
  assert.ok(fs.existsSync(path.join(dir, REGISTRY_DB)));
});

test('store: save, close, reopen, load gives the same snapshot; save replaces', () => {
  const dir = tmpDir();
  const s = SqliteStore.inDataDir(dir);
  s.save(SNAP);
  s.close();
  const s2 = SqliteStore.inDataDir(dir);
  assert.deepEqual(s2.load(), SNAP);
  // A second save replaces the whole snapshot (beta gone, no leftovers).
  const smaller: RegistrySnapshot = { ...SNAP, tenants: [SNAP.tenants[0]] };
  s2.save(smaller);
  assert.deepEqual(s2.load(), smaller);
  s2.close();
  assert.throws(() => s2.load(), /after close/);
});

test('store: WAL journal, FULL sync, typed tables with a schema version', () => {
  const dir = tmpDir();
  const s = SqliteStore.inDataDir(dir);
  s.save(SNAP);
  s.close();
  const db = new DatabaseSync(path.join(dir, REGISTRY_DB));
  assert.equal((db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode, 'wal');
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>).map((r) => r.name);
  assert.deepEqual(tables, ['credentials', 'ports', 'schema_version', 'scrubs', 'tenants', 'volumes']);
  assert.equal((db.prepare('SELECT p95_us FROM tenants WHERE name = ?').get('alpha') as { p95_us: number }).p95_us, 500);
  db.prepare('UPDATE schema_version SET version = 99').run();
  db.close();
  assert.throws(() => SqliteStore.inDataDir(dir), /schema version 99/);
});

test('store: a failed save rolls back and leaves the previous snapshot', () => {
  const dir = tmpDir();
  const s = SqliteStore.inDataDir(dir);
  s.save(SNAP);
  // Two tenants with one id violate the UNIQUE constraint mid-transaction.
  const broken: RegistrySnapshot = { ...SNAP, tenants: [SNAP.tenants[0], { ...SNAP.tenants[1], id: 0 }] };
  assert.throws(() => s.save(broken));
  assert.deepEqual(s.load(), SNAP);
  s.close();
});

test('store: the control plane persists every change and a new registry restores it', async () => {
  const dir = tmpDir();
  const a = makeControl(SqliteStore.inDataDir(dir));
  const made = await a.control.createTenant({ name: 'lc1', class: 'LC', iops: 5000, p95Us: 500, volumeSize: 1 << 20, port: 0, credential: true });
  assert.ok(made.ok);
  assert.ok((await a.control.createTenant({ name: 'be1', class: 'BE' })).ok);
  a.control.close();

  const store = SqliteStore.inDataDir(dir);
  const b = makeControl(store);
  const problems = b.control.registry.restore(store.load()!);
  assert.deepEqual(problems, []);
  assert.deepEqual(b.control.listTenants(), a.control.listTenants());
  assert.equal(b.control.registry.credentials.get('lc1')?.secret, made.value.secret);
  b.control.close();
});

test('store: a range left unzeroed by a failed scrub stays reserved across a restart and is zeroed by the next start', async () => {
  const dir = tmpDir();
  const a = makeControl(SqliteStore.inDataDir(dir));
  const made = await a.control.createTenant({ name: 'be1', class: 'BE', volumeSize: 1 << 20 });
  assert.ok(made.ok);
  const offset = made.value.volume!.offset;
  a.zeroError = -5; // the device fails the zeroing, as if the server died before it was done
  assert.ok((await a.control.removeVolume('be1')).ok);
  a.control.close();

  const store = SqliteStore.inDataDir(dir);
  const b = makeControl(store);
  assert.deepEqual(b.control.registry.restore(store.load()!), []);
  assert.deepEqual(b.control.registry.scrubs, [{ device: 'default', offset, size: 1 << 20 }]);
  const early = b.control.registry.createVolume({ name: 'early', owner: 'be1', size: 4096, offset });
  assert.equal(early.ok ? 0 : early.status, 409, 'the unzeroed range is not handed out');
  await b.control.scrub();
  assert.deepEqual(b.zeroed, [{ device: 'default', offset, length: 1 << 20 }]);
  assert.deepEqual(b.control.registry.scrubs, []);
  assert.deepEqual(store.load()!.scrubs, [], 'the finished scrub is persisted');
  assert.ok(b.control.registry.createVolume({ name: 'later', owner: 'be1', size: 4096, offset }).ok);
  b.control.close();
});

test('store: restoring scrubs of an unknown device or past the device end reports them, keeps the rest', () => {
  const b = makeControl(null);
  const problems = b.control.registry.restore({
    tenants: [],
    volumes: [],
    credentials: [],
    ports: [],
    scrubs: [
      { device: 'nowhere', offset: 0, size: 4096 },
      { device: 'default', offset: 2 ** 50, size: 4096 },
      { device: 'default', offset: 8192, size: 4096 },
    ],
  });
  assert.equal(problems.length, 2);
  assert.match(problems[0], /no such device/);
  assert.match(problems[1], /past the end/);
  assert.deepEqual(b.control.registry.scrubs, [{ device: 'default', offset: 8192, size: 4096 }]);
});
