// Shared pieces of the NBD interop tests: a server with two exports, the
// real client tools, and the rule for missing tools (fail, unless
// REFLEX_ALLOW_SKIP=1 says skipping is acceptable here).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { TestContext } from 'node:test';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';
import { resolveConfig } from '../../src/control/config.ts';

export const ALLOW_SKIP = process.env.REFLEX_ALLOW_SKIP === '1';

function onPath(tool: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    if (dir !== '' && fs.existsSync(`${dir}/${tool}`)) return true;
  }
  return false;
}

/** Loud skip: a banner on stderr and the test marked skipped. */
export function loudSkip(t: TestContext, reason: string): void {
  const line = '!'.repeat(72);
  console.warn(`\n${line}\n!! SKIPPED ${t.name}: ${reason}\n${line}\n`);
  t.skip(reason);
}

/**
 * True when every tool is installed. Otherwise fails the test, or with
 * REFLEX_ALLOW_SKIP=1 skips it loudly and returns false.
 */
export function haveTools(t: TestContext, tools: readonly string[]): boolean {
  const missing = tools.filter((x) => !onPath(x));
  if (missing.length === 0) return true;
  const reason = `missing tools: ${missing.join(', ')} (install libnbd-bin qemu-utils fio nbdkit e2fsprogs fuse3)`;
  if (!ALLOW_SKIP) throw new Error(`${reason}; set REFLEX_ALLOW_SKIP=1 to skip instead`);
  loudSkip(t, reason);
  return false;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a tool with a hard time limit; rejects with its output on failure. */
export function run(cmd: string, args: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err !== null) {
        reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\nstdout: ${stdout}\nstderr: ${stderr}`));
      } else {
        resolve({ stdout, stderr });
      }
    });
  });
}

export interface NbdTestServer {
  srv: RunningServer;
  port: number;
  uri(exportName: string): string;
}

/** Two workers over a 256 MiB memory device; exports vol1 (the default, 128 MiB at 0) and vol2 (64 MiB at 128 MiB). */
export async function startNbdTestServer(memory = '256M'): Promise<NbdTestServer> {
  const srv = await startServer(
    resolveConfig(
      {
        memory,
        workers: 2,
        nbdPort: 0,
        ports: [
          { port: 0, tenant: 'vol1', volumeOffset: '0', volumeSize: '128M' },
          { port: 0, tenant: 'vol2', volumeOffset: '128M', volumeSize: '64M' },
        ],
      },
      2,
    ),
  );
  const port = srv.nbdPort;
  if (port === null) throw new Error('server started without NBD');
  return { srv, port, uri: (name) => `nbd://127.0.0.1:${port}/${name}` };
}

export function sha256File(path: string, length?: number): string {
  const data = fs.readFileSync(path);
  return createHash('sha256').update(length === undefined ? data : data.subarray(0, length)).digest('hex');
}

/** A file of pseudo-random bytes (deterministic per seed, so failures reproduce). */
export function writeRandomFile(path: string, bytes: number, seed: number): void {
  const b = Buffer.allocUnsafe(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i += 4) {
    // xorshift32
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  fs.writeFileSync(path, b);
}
