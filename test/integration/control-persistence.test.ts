/**
 * Registrations survive SIGKILL: first of a process that only saves through
 * the store (killed right after a save returns), then of a real `reflex
 * serve` with its admin API (killed, restarted on the same data directory).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { SqliteStore } from '../../src/control/store.ts';
import { makeControl } from '../unit/control-fixture.ts';
import { NODE, ROOT, api, killed, serve, waitForLine } from './control-helpers.ts';

test('store: every change whose save returned survives a SIGKILL right after it', async () => {
  for (const killAfter of [0, 4]) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-persist-'));
    const child = spawn(NODE, [path.join(ROOT, 'test/integration/control-persist-child.ts'), dir, '8'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await waitForLine(child, new RegExp(`saved ${killAfter}\\n`));
    } finally {
      await killed(child);
    }
    assert.equal(child.signalCode, 'SIGKILL');
    const store = SqliteStore.inDataDir(dir);
    const snap = store.load();
    assert.ok(snap !== null);
    const names = new Set(snap.tenants.map((t) => t.name));
    for (let i = 0; i <= killAfter; i++) assert.ok(names.has(`t${i}`), `t${i} (saved before the kill) is back`);
    // What came back restores whole: tenants with volumes and credentials, through admission again.
    const { control } = makeControl(null);
    assert.deepEqual(control.registry.restore(snap), []);
    assert.equal(control.listVolumes().length, snap.tenants.length);
    assert.equal(control.getTenant('t0')?.hasCredential, true);
    assert.equal(control.getTenant('t0')?.iops, 1000);
    store.close();
  }
});

test('server: tenants, objectives and credentials registered over the admin API survive SIGKILL and restart', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-serve-persist-'));
  const first = serve(dir);
  let before: any[];
  try {
    const base = await first.admin;
    const token = fs.readFileSync(path.join(dir, 'admin.token'), 'utf8').trim();
    const lc = await api(base, token, 'POST', '/api/tenants', { name: 'db', class: 'LC', iops: 20000, p95Us: 1000, readPct: 80, credential: true });
    assert.equal(lc.status, 201, JSON.stringify(lc.body));
    assert.equal((await api(base, token, 'POST', '/api/tenants', { name: 'batch', class: 'BE' })).status, 201);
    assert.equal((await api(base, token, 'PATCH', '/api/tenants/db', { iops: 25000 })).status, 200);
    before = (await api(base, token, 'GET', '/api/tenants')).body;
    assert.ok(before.some((t) => t.name === 'db' && t.iops === 25000 && t.hasCredential));
  } finally {
    await killed(first.child);
  }
  assert.equal(first.child.signalCode, 'SIGKILL');

  const second = serve(dir);
  try {
    const base = await second.admin;
    const token = fs.readFileSync(path.join(dir, 'admin.token'), 'utf8').trim();
    const after = (await api(base, token, 'GET', '/api/tenants')).body;
    const pick = (list: any[]) => list.map(({ name, id, class: c, iops, p95Us, readPct, hasCredential }) => ({ name, id, c, iops, p95Us, readPct, hasCredential }));
    assert.deepEqual(pick(after), pick(before!));
  } finally {
    await killed(second.child);
  }
});
