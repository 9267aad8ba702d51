/**
 * What `reflex tenant` and `reflex volume` share: the admin API's address
 * and token from flags, and a small JSON-over-HTTP(S) client. Uses
 * node:http(s) rather than fetch so that --ca can name the certificate of a
 * self-signed admin port.
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { adminTokenPath } from '../control/admin-token.ts';
import { UsageError } from './usage-error.ts';

/** The admin port `reflex serve` uses unless told otherwise. */
export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:7070';

export const COMMON_OPTIONS = {
  admin: { type: 'string' },
  token: { type: 'string' },
  'data-dir': { type: 'string' },
  ca: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const COMMON_HELP = `common options:
  --admin URL       admin API (default ${DEFAULT_ADMIN_URL}; https://… for a TLS admin port)
  --token TOKEN     admin token (default: $REFLEX_ADMIN_TOKEN, else <data-dir>/admin.token)
  --data-dir DIR    the server's data directory, for its admin.token (default ./data)
  --ca FILE         CA certificate (PEM) to trust for an https admin URL
  --json            print the API's JSON answer`;

export interface Answer {
  status: number;
  body: any;
}

export class AdminClient {
  readonly base: URL;
  private readonly token: string;
  private readonly ca: Buffer | undefined;

  constructor(base: string, token: string, ca?: Buffer) {
    try {
      this.base = new URL(base);
    } catch {
      throw new UsageError(`--admin: "${base}" is not a URL (example: ${DEFAULT_ADMIN_URL})`);
    }
    if (this.base.protocol !== 'http:' && this.base.protocol !== 'https:') throw new UsageError(`--admin: ${base} must be http:// or https://`);
    this.token = token;
    this.ca = ca;
  }

  request(method: string, path: string, body?: unknown): Promise<Answer> {
    const url = new URL(path, this.base);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string | number> = { authorization: `Bearer ${this.token}`, accept: 'application/json' };
    if (payload !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { method, headers, ca: this.ca, timeout: 30_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // Not JSON (a proxy's error page?): keep the text for the message.
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error('no answer in 30 s')));
      req.on('error', (err) => reject(new Error(`cannot reach the admin API at ${this.base.origin}: ${err.message}`)));
      req.end(payload);
    });
  }
}

/** The client the common flags describe. */
export function clientFrom(values: { admin?: string; token?: string; 'data-dir'?: string; ca?: string }): AdminClient {
  let token = values.token ?? process.env.REFLEX_ADMIN_TOKEN;
  if (token === undefined) {
    const file = adminTokenPath(values['data-dir'] ?? 'data');
    try {
      token = fs.readFileSync(file, 'utf8').trim();
    } catch {
      throw new UsageError(`no admin token: give --token, set REFLEX_ADMIN_TOKEN, or --data-dir of the server (no ${file})`);
    }
  }
  const ca = values.ca === undefined ? undefined : fs.readFileSync(values.ca);
  return new AdminClient(values.admin ?? process.env.REFLEX_ADMIN_URL ?? DEFAULT_ADMIN_URL, token, ca);
}

/** Prints an API error (admission refusals with their reasons) and gives the exit status. */
export function reportFailure(what: string, a: Answer): number {
  const reason = typeof a.body === 'object' && a.body !== null && 'error' in a.body ? String(a.body.error) : String(a.body);
  const refused = typeof a.body === 'object' && a.body !== null && a.body.admitted === false;
  console.error(`${what}: ${refused ? 'refused by admission control' : `failed (HTTP ${a.status})`}: ${reason}`);
  return 1;
}

/** A whole non-negative integer flag. */
export function intFlag(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,15}$/.test(text)) throw new UsageError(`${flag}: "${text}" is not a whole number`);
  return Number(text);
}

/** Fixed-width text table; numbers right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const right = header.map((_, i) => rows.length > 0 && rows.every((r) => /^[\d,.\s—-]*$/.test(r[i])));
  const line = (cells: string[]): string => cells.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Bytes as the largest binary unit that divides them, e.g. 1G, 512K. */
export function fmtSize(n: number): string {
  for (const [u, v] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) if (n >= v && n % v === 0) return `${n / v}${u}`;
  return String(n);
}
