/** Child-process helpers for the control-plane tests: a real `reflex serve`, lines from stdout, SIGKILL. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const NODE = process.execPath;
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export function waitForLine(child: ChildProcess, re: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
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

export function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** `reflex serve` on a memory device with an admin port; `admin` resolves to its base URL. */
export function serve(dataDir: string, extra: string[] = []): { child: ChildProcess; admin: Promise<string> } {
  const args = [path.join(ROOT, 'src/cli/main.ts'), 'serve', '--memory', '64M', '--data-dir', dataDir, '--admin-port', '0', '--port', '0', '--workers', '1', ...extra];
  const child = spawn(NODE, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const admin = waitForLine(child, /admin API and status page: (http:\/\/[\d.]+:\d+)\//).then((m) => m[1]);
  return { child, admin };
}

export async function api(base: string, token: string, method: string, p: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await fetch(base + p, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}
