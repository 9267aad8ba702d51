/**
 * The device model: what a Flash device can sustain, in tokens per second,
 * for a given p95 read-latency target.
 *
 * Two file formats carry the same model:
 * - ReFlex's libconfig `.devmodel` (keys read_cost_4KB, write_cost_4KB,
 *   max_token_rate, token_limits = ( { p95_latency_limit, max_token_rate,
 *   max_rdonly_token_rate }, ... )), so calibrations made for the original
 *   carry over. As in the original, a row without max_rdonly_token_rate uses
 *   its max_token_rate for read-only traffic.
 * - JSON: { readCost4k, writeCost4k, maxTokenRate, tokenLimits: [
 *   { p95LatencyUs, maxTokenRate, maxReadOnlyTokenRate } ] }.
 *
 * Lookup (tokenRateFor): rows are sorted by p95; between two rows the rate
 * is interpolated linearly in p95. Above the loosest row the loosest row's
 * rate applies. Below the strictest row the answer is 0: the calibration
 * never observed the device meeting so tight a target, so no rate can be
 * promised (admission then refuses, saying so). Every answer is capped at
 * the overall max_token_rate.
 */
import { parseLibconfig, type ConfigGroup, type ConfigValue } from './libconfig.ts';

export interface TokenLimit {
  /** p95 read latency target, microseconds. */
  p95LatencyUs: number;
  /** Tokens/s the device sustains at that p95 with mixed read/write traffic. */
  maxTokenRate: number;
  /** Tokens/s the device sustains at that p95 when all traffic is reads. */
  maxReadOnlyTokenRate: number;
}

export interface DeviceModel {
  readCost4k: number;
  writeCost4k: number;
  /** Overall ceiling, and the device rate when no latency objective is set. */
  maxTokenRate: number;
  /** Sorted by p95LatencyUs, strictly increasing. */
  tokenLimits: TokenLimit[];
}

export class DeviceModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceModelError';
  }
}

function positive(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new DeviceModelError(`${what} must be a positive number, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Checks a model, sorts its rows, and returns a normalized copy. Throws DeviceModelError. */
export function validateDeviceModel(m: DeviceModel, source = 'device model'): DeviceModel {
  const readCost4k = positive(m.readCost4k, `${source}: read cost`);
  const writeCost4k = positive(m.writeCost4k, `${source}: write cost`);
  const maxTokenRate = positive(m.maxTokenRate, `${source}: max token rate`);
  if (!Array.isArray(m.tokenLimits)) throw new DeviceModelError(`${source}: token limits must be a list`);
  const rows = m.tokenLimits.map((r, i) => ({
    p95LatencyUs: positive(r.p95LatencyUs, `${source}: token limit #${i + 1} p95 latency`),
    maxTokenRate: positive(r.maxTokenRate, `${source}: token limit #${i + 1} max token rate`),
    maxReadOnlyTokenRate: positive(
      r.maxReadOnlyTokenRate ?? r.maxTokenRate,
      `${source}: token limit #${i + 1} max read-only token rate`,
    ),
  }));
  rows.sort((a, b) => a.p95LatencyUs - b.p95LatencyUs);
  for (let i = 1; i < rows.length; i++) {
    if (rows[i].p95LatencyUs === rows[i - 1].p95LatencyUs) {
      throw new DeviceModelError(`${source}: two token limits for p95 ${rows[i].p95LatencyUs} µs`);
    }
  }
  return { readCost4k, writeCost4k, maxTokenRate, tokenLimits: rows };
}

function groupField(g: ConfigGroup, key: string, where: string, required: boolean): ConfigValue | undefined {
  const v = g[key];
  if (v === undefined && required) throw new DeviceModelError(`${where}: missing '${key}'`);
  return v;
}

/** Parses ReFlex's libconfig `.devmodel` text. Syntax errors carry line:column. */
export function parseDevModel(text: string, source = '<devmodel>'): DeviceModel {
  const g = parseLibconfig(text, source);
  const limits = groupField(g, 'token_limits', source, true);
  if (!Array.isArray(limits)) throw new DeviceModelError(`${source}: 'token_limits' must be a list ( { ... }, ... )`);
  const tokenLimits = limits.map((row, i): TokenLimit => {
    const where = `${source}: token_limits[${i}]`;
    if (typeof row !== 'object' || Array.isArray(row)) throw new DeviceModelError(`${where} must be a group { ... }`);
    const p95 = groupField(row, 'p95_latency_limit', where, true) as number;
    const rate = groupField(row, 'max_token_rate', where, true) as number;
    const ro = groupField(row, 'max_rdonly_token_rate', where, false) as number | undefined;
    return { p95LatencyUs: p95, maxTokenRate: rate, maxReadOnlyTokenRate: ro === undefined || ro === 0 ? rate : ro };
  });
  return validateDeviceModel(
    {
      readCost4k: groupField(g, 'read_cost_4KB', source, true) as number,
      writeCost4k: groupField(g, 'write_cost_4KB', source, true) as number,
      maxTokenRate: groupField(g, 'max_token_rate', source, true) as number,
      tokenLimits,
    },
    source,
  );
}

/** Parses the JSON form. */
export function parseDeviceModelJson(text: string, source = '<devmodel.json>'): DeviceModel {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new DeviceModelError(`${source}: ${(e as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null) throw new DeviceModelError(`${source}: expected a JSON object`);
  return validateDeviceModel(raw as DeviceModel, source);
}

/** Either format: JSON when the first non-blank character is '{'. */
export function parseDeviceModelAuto(text: string, source = '<devmodel>'): DeviceModel {
  return /^\s*\{/.test(text) ? parseDeviceModelJson(text, source) : parseDevModel(text, source);
}

/** Writes the libconfig `.devmodel` form the original ReFlex reads. */
export function formatDevModel(model: DeviceModel, comment?: string): string {
  const m = validateDeviceModel(model);
  const lines: string[] = [];
  if (comment !== undefined) for (const l of comment.split('\n')) lines.push(`# ${l}`);
  lines.push(`read_cost_4KB = ${fmtNum(m.readCost4k)};`);
  lines.push(`write_cost_4KB = ${fmtNum(m.writeCost4k)};`);
  lines.push(`max_token_rate = ${fmtNum(m.maxTokenRate)};`);
  lines.push('token_limits = (');
  m.tokenLimits.forEach((r, i) => {
    const sep = i === m.tokenLimits.length - 1 ? '' : ',';
    lines.push(
      `  { p95_latency_limit = ${fmtNum(r.p95LatencyUs)}; max_token_rate = ${fmtNum(r.maxTokenRate)}; ` +
        `max_rdonly_token_rate = ${fmtNum(r.maxReadOnlyTokenRate)}; }${sep}`,
    );
  });
  lines.push(');');
  return lines.join('\n') + '\n';
}

/** The original reads these as C integers: write integers when possible. */
function fmtNum(v: number): string {
  return Number.isInteger(v) ? String(v) : String(Math.round(v));
}

export function formatDeviceModelJson(model: DeviceModel): string {
  return JSON.stringify(validateDeviceModel(model), null, 2) + '\n';
}

/**
 * Tokens/s the device sustains at `p95Us` (see the file comment for the
 * interpolation and clamping rules). `readOnly`: use the read-only column.
 */
export function tokenRateFor(model: DeviceModel, p95Us: number, readOnly: boolean): number {
  const rows = model.tokenLimits;
  const col = (r: TokenLimit): number => (readOnly ? r.maxReadOnlyTokenRate : r.maxTokenRate);
  if (rows.length === 0) return model.maxTokenRate;
  if (p95Us < rows[0].p95LatencyUs) return 0;
  let rate: number;
  const last = rows[rows.length - 1];
  if (p95Us >= last.p95LatencyUs) {
    rate = col(last);
  } else {
    let i = 0;
    while (rows[i + 1].p95LatencyUs <= p95Us) i++;
    const lo = rows[i];
    const hi = rows[i + 1];
    const f = (p95Us - lo.p95LatencyUs) / (hi.p95LatencyUs - lo.p95LatencyUs);
    rate = col(lo) + f * (col(hi) - col(lo));
  }
  return Math.min(rate, model.maxTokenRate);
}

/** Smallest calibrated p95, µs (0 when the model has no rows). */
export function strictestCalibratedP95(model: DeviceModel): number {
  return model.tokenLimits.length === 0 ? 0 : model.tokenLimits[0].p95LatencyUs;
}
