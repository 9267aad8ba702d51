/**
 * Registrations survive SIGKILL: first of a process that only saves through
 * the store (killed right after a save returns), then of a real `reflex
 * serve` with its admin API (killed, restarted on the same data directory).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SqliteStore } from '../../src/control/store.ts';
import { makeControl } from '../unit/control-fixture.ts';

const NODE = process.execPath;
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function waitForLine(child: ChildProcess, re: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let errText = '';
    const timer = setTimeout(() => reject(new Error(`no line matching ${re} in ${timeoutMs} ms; stdout: ${buf}; stderr: ${errText}`)), timeoutMs);
    child.stderr?.on('data', (c: Buffer) => (errText += c.toString()));
    const onData = (c: Buffer): void => {
      buf += c.toString();
      const m = re.exec(buf);
      if (m) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        resolve(m);
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child exited (${code}) before ${re}; stdout: ${buf}; stderr: ${errText}`));
    });
  });
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

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

async function api(base: string, token: string, method: string, p: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await fetch(base + p, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

function serve(dataDir: string): { child: ChildProcess; admin: Promise<string> } {
  const child = spawn(NODE, [path.join(ROOT, 'src/cli/main.ts'), 'serve', '--memory', '64M', '--data-dir', dataDir, '--admin-port', '0', '--port', '0', '--workers', '1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const admin = waitForLine(child, /admin API and status page: (http:\/\/[\d.]+:\d+)\//).then((m) => m[1]);
  return { child, admin };
}

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
