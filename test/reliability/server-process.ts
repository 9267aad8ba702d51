/**
 * `bin/reflex serve` as a child process, for tests that kill it, signal it,
 * or measure its memory from outside (VmRSS in /proc/PID/status).
 *
 *   const p = await spawnServer(['--memory', '64M', '--port', '0', ...], { tenants: 1 });
 *   p.ports       data ports in the order the server printed them
 *   p.rss()       resident bytes now
 *   p.kill('SIGKILL'); await p.exited;
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/reflex');

export interface ServerProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Data ports of the tenants, as printed. */
  readonly ports: number[];
  readonly nbdPort: number | null;
  readonly adminPort: number | null;
  /** Everything the server printed so far. */
  output(): string;
  rss(): number;
  kill(sig: NodeJS.Signals): void;
  /** Resolves with the exit code (or signal name) once the process is gone. */
  readonly exited: Promise<number | string>;
}

export interface SpawnOptions {
  /** Tenant port lines to wait for (default 1). */
  tenants?: number;
  nbd?: boolean;
  admin?: boolean;
  /** Raise the open-file limit first (through a shell: Node cannot setrlimit). */
  fileLimit?: number;
  readyTimeoutMs?: number;
}

/** Resident set size of a process, bytes (0 once it is gone). */
export function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0;
  }
}

export function spawnServer(args: string[], o: SpawnOptions = {}): Promise<ServerProcess> {
  const quoted = [BIN, 'serve', ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child =
    o.fileLimit !== undefined
      ? spawn('bash', ['-c', `ulimit -n ${o.fileLimit} && exec ${quoted}`], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(BIN, ['serve', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server not ready in time:\n${out}`));
    }, o.readyTimeoutMs ?? 20000);
    const check = (): void => {
      const ports = [...out.matchAll(/^\s+[\d.]+:(\d+) tenant /gm)].map((m) => Number(m[1]));
      const nbd = /^\s+[\d.]+:(\d+) NBD/m.exec(out);
      const admin = /admin API and status page: https?:\/\/[\d.]+:(\d+)\//.exec(out);
      if (ports.length < (o.tenants ?? 1) || (o.nbd && nbd === null) || (o.admin && admin === null)) return;
      clearTimeout(timer);
      resolve({
        child,
        pid: child.pid!,
        ports,
        nbdPort: nbd ? Number(nbd[1]) : null,
        adminPort: admin ? Number(admin[1]) : null,
        output: () => out,
        rss: () => rssOf(child.pid!),
        kill: (sig) => {
          child.kill(sig);
        },
        exited,
      });
    };
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      check();
    });
    child.stderr!.on('data', (c: Buffer) => {
      out += c.toString();
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before it was ready:\n${out}`));
    });
  });
}
