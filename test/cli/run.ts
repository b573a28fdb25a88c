import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';

// Runs bin/tern as a child process, the way users run it.

const ROOT = resolve(import.meta.dirname, '../..');
const TERN = join(ROOT, 'bin/tern');

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs bin/tern with a clean environment (no TERN_* from the caller) plus `env`. */
export function tern(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): Promise<Ran> {
  return new Promise((ok, fail) => {
    const child = spawn(TERN, args, {
      cwd: options.cwd ?? ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', fail);
    child.on('close', (code) => ok({ code, stdout, stderr }));
  });
}

/** Runs bin/tern on a pseudo-terminal (util-linux `script`), so stdout.isTTY is true. */
export function ternOnTty(args: string[], env: Record<string, string>): Promise<Ran> {
  const quoted = [TERN, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  return new Promise((ok, fail) => {
    const child = spawn('script', ['-qec', `stty cols 120; ${quoted}`, '/dev/null'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', TERM: 'xterm', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.on('error', fail);
    child.on('close', (code) => ok({ code, stdout, stderr: '' }));
  });
}
