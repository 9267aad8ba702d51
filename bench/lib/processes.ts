/**
 * Child processes for benchmarks: servers pinned to a core with taskset,
 * waited on until they print a ready line, stopped with SIGTERM; and
 * one-shot commands whose stdout is collected.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

export interface RunningChild {
  pid: number;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (released before returning, so a small race remains). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** `taskset -c CPU cmd...` when a CPU is given (taskset execs: the pid is the command's). */
function pinned(cpu: number | null, cmd: string[]): [string, string[]] {
  return cpu === null ? [cmd[0], cmd.slice(1)] : ['taskset', ['-c', String(cpu), ...cmd]];
}

/** Starts a long-running process and resolves once a stdout line matches `ready`. */
export function startChild(cmd: string[], cpu: number | null, ready: RegExp, timeoutMs = 30_000): Promise<RunningChild> {
  const [file, args] = pinned(cpu, cmd);
  const child: ChildProcess = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let isReady = false;
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd.join(' ')}: not ready after ${timeoutMs} ms\n${out}${err}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd.join(' ')} exited with ${code}\n${out}${err}`));
    });
    child.stdout!.on('data', (d: Buffer) => {
      if (isReady) return;
      out += d.toString();
      if (ready.test(out)) {
        isReady = true;
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve({
          pid: child.pid!,
          stop: () =>
            new Promise<void>((done) => {
              if (child.exitCode !== null) return done();
              const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
              child.once('exit', () => {
                clearTimeout(kill);
                done();
              });
              child.kill('SIGTERM');
            }),
        });
      }
    });
  });
}

/** Runs a command to completion; resolves with stdout, rejects on a non-zero exit. */
export function runCommand(cmd: string[], cpu: number | null): Promise<string> {
  const [file, args] = pinned(cpu, cmd);
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    // 'close', not 'exit': 'exit' can come before the last of stdout is read.
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd.join(' ')} exited with ${code}\n${err}`))));
  });
}
