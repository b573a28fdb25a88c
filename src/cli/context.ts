import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { TernClient } from './client.ts';

// What every command gets: where to write, the environment it was started with, and how to build
// an API client from the global options. Passed in so tests can run commands in-process.

export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: Record<string, string | undefined>;
  cwd: string;
  /** Delay between polls of --wait, in ms. */
  pollMs?: number;
}

export interface GlobalOptions {
  url?: string;
  token?: string;
  project?: string;
}

export const DEFAULT_URL = 'http://127.0.0.1:8779';

/** A failure the command already explained; main prints the message (if any) and exits with code. */
export class CliExit extends Error {
  readonly code: number;
  constructor(message: string, code: number) {
    super(message);
    this.name = 'CliExit';
    this.code = code;
  }
}

export function apiUrl(opts: GlobalOptions, io: CliIo): string {
  const url = opts.url ?? io.env.TERN_URL ?? DEFAULT_URL;
  if (!/^https?:\/\/[^/]/.test(url)) throw new CliExit(`--url must be an http:// or https:// URL, got "${url}"`, 2);
  return url;
}

/** --token, else TERN_TOKEN, else the development token `tern serve` keeps in ./var/dev-token. */
export function resolveToken(opts: GlobalOptions, io: CliIo): string | undefined {
  const token = opts.token ?? io.env.TERN_TOKEN;
  if (token) return token;
  const devToken = resolve(io.cwd, 'var', 'dev-token');
  if (existsSync(devToken)) return readFileSync(devToken, 'utf8').trim() || undefined;
  return undefined;
}

export function makeClient(opts: GlobalOptions, io: CliIo, url?: string): TernClient {
  return new TernClient({
    url: url ?? apiUrl(opts, io),
    token: resolveToken(opts, io),
    project: opts.project ?? io.env.TERN_PROJECT ?? 'dev',
  });
}
