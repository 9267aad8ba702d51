/**
 * The admin API's bearer token: given on the command line, or generated at
 * first start into `<dataDir>/admin.token` (mode 0600) and reused after, so
 * the CLI on the same host can read it.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const ADMIN_TOKEN_FILE = 'admin.token';
const MIN_TOKEN_LENGTH = 16;

export function adminTokenPath(dataDir: string): string {
  return path.join(dataDir, ADMIN_TOKEN_FILE);
}

export function loadOrCreateAdminToken(dataDir: string, given?: string): string {
  if (given !== undefined) {
    if (given.trim().length < MIN_TOKEN_LENGTH) throw new Error(`the admin token must have at least ${MIN_TOKEN_LENGTH} characters`);
    return given.trim();
  }
  const file = adminTokenPath(dataDir);
  fs.mkdirSync(dataDir, { recursive: true });
  const fresh = crypto.randomBytes(32).toString('hex');
  try {
    // 'wx': create only; a concurrent first start (or an existing file) falls through to reading.
    fs.writeFileSync(file, fresh + '\n', { mode: 0o600, flag: 'wx' });
    return fresh;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const text = fs.readFileSync(file, 'utf8').trim();
  if (text.length < MIN_TOKEN_LENGTH) throw new Error(`${file}: the admin token is shorter than ${MIN_TOKEN_LENGTH} characters`);
  return text;
}

/** Constant-time comparison of a presented token with the expected one. */
export function tokenMatches(presented: string, expected: string): boolean {
  // Hashing first gives equal-length inputs, so timingSafeEqual never throws and the length is not leaked.
  const a = crypto.createHash('sha256').update(presented).digest();
  const b = crypto.createHash('sha256').update(expected).digest();
  return crypto.timingSafeEqual(a, b);
}
