import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Compiles a C test program into a temporary directory and returns the binary's path. */
export function buildC(source: string, name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-c-'));
  const out = path.join(dir, name);
  execFileSync('cc', ['-O2', '-Wall', '-Werror', '-o', out, source, '-lm'], { stdio: 'inherit' });
  return out;
}
