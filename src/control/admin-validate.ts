/**
 * Strict checking of admin API request bodies: a body is a JSON object whose
 * fields are all known, of the right type and within range; anything else is
 * a 400 naming the field. Done before any change reaches the control plane,
 * so the registry only ever sees well-typed values.
 */
import type { Result } from './registry.ts';

export type FieldRule =
  | { type: 'string'; maxLength?: number }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'int'; min: number; max: number }
  | { type: 'number'; min: number; max: number }
  | { type: 'boolean' };

export type Schema = Record<string, FieldRule>;

/** Largest IOPS or p95 objective accepted (well past any device). */
export const MAX_OBJECTIVE = 1e9;

export const TENANT_CREATE: Schema = {
  name: { type: 'string', maxLength: 64 },
  class: { type: 'enum', values: ['LC', 'BE'] },
  iops: { type: 'int', min: 1, max: MAX_OBJECTIVE },
  p95Us: { type: 'int', min: 1, max: MAX_OBJECTIVE },
  readPct: { type: 'number', min: 0, max: 100 },
  device: { type: 'string', maxLength: 64 },
  volumeSize: { type: 'int', min: 1, max: Number.MAX_SAFE_INTEGER },
  port: { type: 'int', min: 0, max: 65535 },
  credential: { type: 'boolean' },
};

export const TENANT_UPDATE: Schema = {
  class: TENANT_CREATE.class,
  iops: TENANT_CREATE.iops,
  p95Us: TENANT_CREATE.p95Us,
  readPct: TENANT_CREATE.readPct,
};

export const VOLUME_CREATE: Schema = {
  name: { type: 'string', maxLength: 64 },
  owner: { type: 'string', maxLength: 64 },
  size: { type: 'int', min: 1, max: Number.MAX_SAFE_INTEGER },
  offset: { type: 'int', min: 0, max: Number.MAX_SAFE_INTEGER },
  device: { type: 'string', maxLength: 64 },
};

export const VOLUME_RESIZE: Schema = {
  size: { type: 'int', min: 1, max: Number.MAX_SAFE_INTEGER },
};

export const PORT_BIND: Schema = {
  port: { type: 'int', min: 0, max: 65535 },
  tenant: { type: 'string', maxLength: 64 },
  volume: { type: 'string', maxLength: 64 },
};

function bad<T>(reason: string): Result<T> {
  return { ok: false, status: 400, reason };
}

function checkField(name: string, rule: FieldRule, v: unknown): string | null {
  switch (rule.type) {
    case 'string':
      if (typeof v !== 'string') return `field "${name}" must be a string`;
      if (rule.maxLength !== undefined && v.length > rule.maxLength) return `field "${name}" is longer than ${rule.maxLength} characters`;
      return null;
    case 'enum':
      if (typeof v !== 'string' || !rule.values.includes(v)) return `field "${name}" must be one of ${rule.values.map((x) => JSON.stringify(x)).join(', ')}`;
      return null;
    case 'int':
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < rule.min || v > rule.max) {
        return `field "${name}" must be an integer from ${rule.min} to ${rule.max}`;
      }
      return null;
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v) || v < rule.min || v > rule.max) return `field "${name}" must be a number from ${rule.min} to ${rule.max}`;
      return null;
    case 'boolean':
      if (typeof v !== 'boolean') return `field "${name}" must be true or false`;
      return null;
  }
}

/** Checks `body` against `schema`; `required` fields must be present. */
export function validate<T>(body: unknown, schema: Schema, required: readonly string[]): Result<T> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return bad('the body must be a JSON object');
  const obj = body as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!Object.hasOwn(schema, key)) return bad(`unknown field "${key}" (known: ${Object.keys(schema).join(', ')})`);
    const why = checkField(key, schema[key], obj[key]);
    if (why !== null) return bad(why);
  }
  for (const key of required) if (!Object.hasOwn(obj, key)) return bad(`missing field "${key}"`);
  return { ok: true, value: obj as T };
}

/**
 * The objective fields must match the class: an LC tenant names its IOPS and
 * p95 (read share defaults to 100), a BE tenant has none.
 */
export function checkObjective(b: { class?: string; iops?: number; p95Us?: number; readPct?: number }, creating: boolean): string | null {
  if (b.class === 'BE' && (b.iops !== undefined || b.p95Us !== undefined || b.readPct !== undefined)) {
    return 'a BE tenant has no objective: leave out iops, p95Us and readPct';
  }
  if (creating && b.class === 'LC' && (b.iops === undefined || b.p95Us === undefined)) return 'an LC tenant needs an objective: give iops and p95Us';
  return null;
}
