/**
 * Persists the control plane's registry (tenants, volumes, credentials, v1
 * port bindings, freed ranges waiting to be zeroed) in an embedded SQLite
 * database, `<dataDir>/registry.db`, through Node's built-in `node:sqlite`.
 *
 * Why these settings: WAL journal with synchronous=FULL makes COMMIT return
 * only after the WAL is fsynced, so a snapshot whose save() returned
 * survives a SIGKILL (or power loss) of the server. Each save() replaces
 * the whole snapshot inside one BEGIN IMMEDIATE transaction: a reader (or
 * a restart) sees the old snapshot or the new one, never a mixture.
 *
 * Typed columns rather than a JSON blob, so the file can be inspected and
 * queried with the sqlite3 shell and a schema change is explicit.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { RegistryStore } from './control-plane.ts';
import type { RegistrySnapshot, TenantRecord } from './registry.ts';
import { assert } from '../util/assert.ts';

export const REGISTRY_DB = 'registry.db';
/** Bumped whenever the tables below change shape. */
export const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tenants (
  id INTEGER NOT NULL UNIQUE,
  name TEXT PRIMARY KEY,
  device TEXT NOT NULL,
  class TEXT NOT NULL CHECK (class IN ('LC', 'BE')),
  iops REAL,
  p95_us REAL,
  read_pct REAL
);
CREATE TABLE IF NOT EXISTS volumes (
  name TEXT PRIMARY KEY,
  device TEXT NOT NULL,
  owner TEXT NOT NULL,
  byte_offset INTEGER NOT NULL,
  size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
  tenant TEXT PRIMARY KEY,
  secret TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ports (
  port INTEGER PRIMARY KEY,
  tenant TEXT NOT NULL,
  volume TEXT NOT NULL
);
-- Freed ranges not yet zeroed (added after version 1 shipped; additive, so
-- no version bump: an older file simply gains the empty table).
CREATE TABLE IF NOT EXISTS scrubs (
  seq INTEGER PRIMARY KEY,
  device TEXT NOT NULL,
  byte_offset INTEGER NOT NULL,
  size INTEGER NOT NULL
);
`;

type Row = Record<string, unknown>;

export class SqliteStore implements RegistryStore {
  readonly file: string;
  private db: DatabaseSync | null;

  /** Opens (creating if needed) the database file, normally `<dataDir>/registry.db` (see `inDataDir`). */
  constructor(file: string) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    this.file = file;
    const db = new DatabaseSync(this.file);
    this.db = db;
    db.exec('PRAGMA journal_mode = WAL');
    db.exec('PRAGMA synchronous = FULL');
    // A second process holding the write lock briefly is waited for, not an error.
    db.exec('PRAGMA busy_timeout = 5000');
    db.exec(SCHEMA);
    const row = db.prepare('SELECT version FROM schema_version').get() as Row | undefined;
    if (row === undefined) {
      db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(SCHEMA_VERSION);
    } else if (Number(row.version) !== SCHEMA_VERSION) {
      db.close();
      this.db = null;
      throw new Error(`${this.file}: schema version ${String(row.version)}, this server reads ${SCHEMA_VERSION}`);
    }
  }

  /** The store of a server's data directory: `<dataDir>/registry.db`. */
  static inDataDir(dataDir: string): SqliteStore {
    return new SqliteStore(path.join(dataDir, REGISTRY_DB));
  }

  private open(): DatabaseSync {
    assert(this.db !== null, 'SqliteStore used after close()');
    return this.db;
  }

  /** The last saved snapshot, or null when nothing was ever saved. */
  load(): RegistrySnapshot | null {
    const db = this.open();
    const tenants = db.prepare('SELECT * FROM tenants ORDER BY id').all() as Row[];
    const volumes = db.prepare('SELECT * FROM volumes ORDER BY name').all() as Row[];
    const credentials = db.prepare('SELECT * FROM credentials ORDER BY tenant').all() as Row[];
    const ports = db.prepare('SELECT * FROM ports ORDER BY port').all() as Row[];
    const scrubs = db.prepare('SELECT * FROM scrubs ORDER BY seq').all() as Row[];
    if (tenants.length + volumes.length + credentials.length + ports.length + scrubs.length === 0) return null;
    return {
      tenants: tenants.map((r): TenantRecord => {
        const spec: TenantRecord['spec'] = { name: String(r.name), class: r.class === 'LC' ? 'LC' : 'BE' };
        if (r.iops !== null) spec.iops = Number(r.iops);
        if (r.p95_us !== null) spec.p95Us = Number(r.p95_us);
        if (r.read_pct !== null) spec.readPct = Number(r.read_pct);
        return { id: Number(r.id), name: String(r.name), device: String(r.device), spec };
      }),
      volumes: volumes.map((r) => ({
        name: String(r.name),
        device: String(r.device),
        owner: String(r.owner),
        offset: Number(r.byte_offset),
        size: Number(r.size),
      })),
      credentials: credentials.map((r) => ({ tenant: String(r.tenant), secret: String(r.secret), createdAt: String(r.created_at) })),
      ports: ports.map((r) => ({ port: Number(r.port), tenant: String(r.tenant), volume: String(r.volume) })),
      scrubs: scrubs.map((r) => ({ device: String(r.device), offset: Number(r.byte_offset), size: Number(r.size) })),
    };
  }

  /** Replaces the stored snapshot atomically; durable once it returns. */
  save(s: RegistrySnapshot): void {
    const db = this.open();
    db.exec('BEGIN IMMEDIATE');
    try {
      db.exec('DELETE FROM tenants; DELETE FROM volumes; DELETE FROM credentials; DELETE FROM ports; DELETE FROM scrubs;');
      const t = db.prepare('INSERT INTO tenants (id, name, device, class, iops, p95_us, read_pct) VALUES (?, ?, ?, ?, ?, ?, ?)');
      for (const x of s.tenants) {
        t.run(x.id, x.name, x.device, x.spec.class, x.spec.iops ?? null, x.spec.p95Us ?? null, x.spec.readPct ?? null);
      }
      const v = db.prepare('INSERT INTO volumes (name, device, owner, byte_offset, size) VALUES (?, ?, ?, ?, ?)');
      for (const x of s.volumes) v.run(x.name, x.device, x.owner, x.offset, x.size);
      const c = db.prepare('INSERT INTO credentials (tenant, secret, created_at) VALUES (?, ?, ?)');
      for (const x of s.credentials) c.run(x.tenant, x.secret, x.createdAt);
      const p = db.prepare('INSERT INTO ports (port, tenant, volume) VALUES (?, ?, ?)');
      for (const x of s.ports) p.run(x.port, x.tenant, x.volume);
      const z = db.prepare('INSERT INTO scrubs (seq, device, byte_offset, size) VALUES (?, ?, ?, ?)');
      (s.scrubs ?? []).forEach((x, i) => z.run(i, x.device, x.offset, x.size));
      db.exec('COMMIT');
    } catch (err) {
      db.exec('ROLLBACK');
      throw err;
    }
  }

  close(): void {
    if (this.db === null) return;
    this.db.close();
    this.db = null;
  }
}
