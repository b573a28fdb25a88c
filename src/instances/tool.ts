import { type ChildProcess, spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Cancelled, TernError } from '../errors.ts';
import { childEnv, type OsUser } from './process.ts';

// Runs command-line tools (mariabackup, mbstream, pg_basebackup, tar, initdb, ...) with argument
// arrays (never a shell), a minimal environment, a bounded copy of what they print, and an
// AbortSignal that stops them. Credentials never go on a command line: tools read them from 0600
// files, so neither `ps` nor the captured log ever shows them.

const LOG_LIMIT = 256 * 1024;

/** A datastore tool failed; the message carries the tool's last error line. */
export class ToolError extends TernError {
  override readonly kind = 'datastoreTool';
  readonly tool: string;
  readonly exitCode: number | null;
  readonly log: string;
  constructor(tool: string, exitCode: number | null, reason: string, log: string) {
    super(`${tool} failed: ${reason}`);
    this.tool = tool;
    this.exitCode = exitCode;
    this.log = log;
  }
}

export interface ToolOptions {
  /** Run as this user (uid/gid); null or absent: as Tern's own user. */
  user?: OsUser | null;
  env?: Record<string, string>;
  cwd?: string;
  /** 'pipe' to feed stdin (see runTool's input); default 'ignore', so no tool can wait for a prompt. */
  stdin?: 'ignore' | 'pipe';
  /** 'pipe' to read stdout as data; default 'log' (it joins stderr in the captured log). */
  stdout?: 'pipe' | 'log';
  signal?: AbortSignal;
}

export interface ToolExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The tail of what the tool printed (stderr, plus stdout unless piped). */
  log: string;
}

export interface ToolProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  /** Resolves when the process has exited and its output is closed; never rejects. */
  readonly exited: Promise<ToolExit>;
}

export function spawnTool(cmd: string, args: string[], options: ToolOptions = {}): ToolProcess {
  const name = cmd.slice(cmd.lastIndexOf('/') + 1);
  const child = spawn(cmd, args, {
    cwd: options.cwd,
    env: childEnv(options.user ?? null, options.env),
    stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
    ...(options.user ? { uid: options.user.uid, gid: options.user.gid } : {}),
  });
  let log = '';
  const capture = (chunk: Buffer) => {
    log += chunk.toString('utf8');
    if (log.length > 2 * LOG_LIMIT) log = log.slice(-LOG_LIMIT);
  };
  child.stderr!.on('data', capture);
  if (options.stdout !== 'pipe') child.stdout!.on('data', capture);

  const onAbort = () => stopChild(child);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const exited = new Promise<ToolExit>((resolve) => {
    child.once('error', (err) => {
      capture(Buffer.from(`\n${err.message}\n`));
      resolve({ code: null, signal: null, log: log.slice(-LOG_LIMIT) });
    });
    child.once('close', (code, signal) => resolve({ code, signal, log: log.slice(-LOG_LIMIT) }));
  }).finally(() => options.signal?.removeEventListener('abort', onAbort));
  if (options.signal?.aborted) onAbort();
  return { name, child, stdin: child.stdin, stdout: options.stdout === 'pipe' ? child.stdout : null, exited };
}

/** SIGTERM, then SIGKILL if the tool is still there after 5 s. */
export function stopChild(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  timer.unref();
  child.once('close', () => clearTimeout(timer));
}

export interface RunToolOptions extends ToolOptions {
  /** Streamed into the tool's stdin: a source, optionally followed by transforms (e.g. gunzip). */
  input?: Readable | Array<NodeJS.ReadableStream | NodeJS.ReadWriteStream>;
  /** The run only counts as a success when the log matches this too (e.g. /completed OK!/). */
  okPattern?: RegExp;
}

/** Runs a tool to completion; rejects with ToolError (or Cancelled when aborted). */
export async function runTool(cmd: string, args: string[], options: RunToolOptions = {}): Promise<ToolExit> {
  const tool = spawnTool(cmd, args, { ...options, stdin: options.input ? 'pipe' : (options.stdin ?? 'ignore') });
  let inputError: unknown = null;
  const feeding = options.input
    ? pipeline([...(Array.isArray(options.input) ? options.input : [options.input]), tool.stdin!]).catch((err) => {
        inputError = err;
        stopChild(tool.child);
      })
    : Promise.resolve();
  const [exit] = await Promise.all([tool.exited, feeding]);
  if (options.signal?.aborted) throw new Cancelled(`${tool.name} was cancelled`);
  // When the input failed we stopped the tool: the input's error is the cause. When the tool
  // failed first, our side only saw EPIPE: the tool's own error line explains more.
  if (inputError && exit.signal) throw inputError;
  const failure = checkExit(tool.name, exit, options.okPattern);
  if (failure) throw failure;
  if (inputError) throw inputError;
  return exit;
}

/** The ToolError for an exit, or null when it succeeded. */
export function checkExit(name: string, exit: ToolExit, okPattern?: RegExp): ToolError | null {
  if (exit.code === 0 && (!okPattern || okPattern.test(exit.log))) return null;
  const how = exit.code === 0 ? 'did not report success' : exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
  const line = lastErrorLine(exit.log);
  return new ToolError(name, exit.code, line ? `${line} (${how})` : how, exit.log);
}

// Lines that follow the real error without explaining anything.
const NOISE =
  /^\[ERROR\] (Aborting|Do you already have another .* running|Plugin '.*' registration as a STORAGE ENGINE failed|Unknown\/unsupported storage engine)/;
const ERROR_WORDS = /error|fail|denied|refused|fatal|cannot|can't|could not|unable|invalid|not found|no such|abort/i;

/**
 * The line of a tool's output that best explains a failure: the last error MariaDB tagged
 * "[ERROR]", else the last line that looks like an error, else the last line. (mariadb-install-db
 * ends with a page of advice after the server's own error lines.) Timestamps and "[00]" thread
 * tags are stripped.
 */
export function lastErrorLine(log: string): string {
  const lines = log
    .split('\n')
    .map((line) => cleanLine(line))
    .filter(Boolean);
  const line =
    lines.findLast((l) => l.startsWith('[ERROR]') && !NOISE.test(l)) ??
    lines.findLast((l) => ERROR_WORDS.test(l) && !NOISE.test(l)) ??
    lines.at(-1) ??
    '';
  return line.length > 400 ? `${line.slice(0, 400)}...` : line;
}

function cleanLine(line: string): string {
  return line
    .replace(/^\[\d+\]\s+/, '') // mariabackup thread tag
    .replace(/^\d{4}-\d{2}-\d{2}\s+\d{1,2}:\d{2}:\d{2}(\.\d+)?( UTC)?\s+(\d+\s+)?/, '') // timestamps (+ thread id)
    .replace(/^\[\d+\]\s+/, '') // postgres [pid] after its timestamp
    .trim();
}

/**
 * Pipes a tool's stdout into `sink` and ends the sink only after the tool succeeded, so whoever
 * reads the sink never sees a clean end of a failed run: on failure the sink is destroyed with the
 * ToolError (or Cancelled). Destroying the sink early stops the tool.
 */
export async function streamToolInto(
  tool: ToolProcess,
  sink: Writable,
  options: { okPattern?: RegExp; signal?: AbortSignal } = {},
): Promise<ToolExit> {
  const stopTool = () => stopChild(tool.child);
  sink.once('close', stopTool);
  tool.stdout!.pipe(sink, { end: false });
  const exit = await tool.exited;
  sink.off('close', stopTool);
  let failure: Error | null = null;
  if (options.signal?.aborted) failure = new Cancelled(`${tool.name} was cancelled`);
  // The sink's own error (storage full, an upload that failed) is why the tool was stopped.
  else if (sink.destroyed) failure = sink.errored ?? new Cancelled(`the output of ${tool.name} was closed before the end`);
  else failure = checkExit(tool.name, exit, options.okPattern);
  if (failure) {
    sink.destroy(failure);
    throw failure;
  }
  sink.end();
  return exit;
}
