import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';

// Runs `bin/tern serve` as a real process with a config written into its own folder, for tests
// that need separate regions (separate processes, databases and storage) rather than in-process apps.

const TERN = resolve(import.meta.dirname, '../../bin/tern');

export interface ServedRegion {
  url: string;
  child: ChildProcess;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** Everything it wrote to stdout (its JSON log lines) so far; empty unless asked for. */
  stdout(): string;
  /** SIGTERM, then the exit code (SIGKILL after 10 s). */
  stop(): Promise<number | null>;
}

export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => ok(port));
    });
    srv.on('error', fail);
  });
}

export interface ServeOptions {
  /** More environment variables for the process (e.g. a private TMPDIR). */
  env?: Record<string, string>;
  /** Keep what the process writes to stdout (its log); otherwise it is discarded. */
  captureStdout?: boolean;
}

export async function serveRegion(
  dir: string,
  config: Record<string, unknown>,
  options: ServeOptions = {},
): Promise<ServedRegion> {
  const port = await freePort();
  const file = join(dir, 'tern.json');
  writeFileSync(file, JSON.stringify({ listen: { host: '127.0.0.1', port }, dataDir: dir, logLevel: 'warn', ...config }));
  const child = spawn(TERN, ['serve', '--config', file], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...options.env },
    stdio: ['ignore', options.captureStdout ? 'pipe' : 'ignore', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  child.stdout?.on('data', (d) => {
    stdout += d;
  });
  const exited = new Promise<number | null>((ok) => child.on('exit', (code) => ok(code)));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  };
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`tern serve exited with ${child.exitCode}: ${stderr}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) return { url, child, stderr: () => stderr, stdout: () => stdout, stop };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`tern serve did not answer /healthz within 30 s: ${stderr}`);
}
