import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cancelled, Conflict } from '../errors.ts';
import { childEnv, commandLine, isRunning, type OsUser, readFrom, removeQuietly, terminate } from './process.ts';
import { lastErrorLine, ToolError } from './tool.ts';

// A database server Tern started as a detached process with its own folder. The process outlives
// Tern; a restarted Tern finds it again through the folder (see provisioner.adopt).
//
// Folder layout (`dataDir`, owned by Tern):
//   db/               the database files (MariaDB datadir / PostgreSQL PGDATA)
//   run/              socket and pid file, unless socketDir says otherwise
//   server.log        what the server printed
//   tern-server.json  kind, port, socket folder and extra arguments, for restarts

export type DatastoreKind = 'mariadb' | 'postgresql';

export interface ManagedServer {
  readonly kind: DatastoreKind;
  readonly pid: number;
  readonly host: string;
  readonly port: number;
  /** The instance folder Tern owns (see the layout above). */
  readonly dataDir: string;
  /** The database files inside it. */
  readonly dbDir: string;
  readonly socketDir: string;
  readonly logFile: string;
  /** Stops the server (fast shutdown) and waits until its process is gone. */
  stop(): Promise<void>;
  /** stop(), then removes the folder (and a socket folder made for it). */
  destroy(): Promise<void>;
}

export interface ServerState {
  kind: DatastoreKind;
  host: string;
  port: number;
  socketDir: string;
  /** True when socketDir was made for this server (outside dataDir) and goes with it. */
  ownSocketDir: boolean;
  extraArgs: string[];
}

export interface Layout {
  dataDir: string;
  dbDir: string;
  runDir: string;
  logFile: string;
  stateFile: string;
}

export function layoutOf(dataDir: string): Layout {
  return {
    dataDir,
    dbDir: join(dataDir, 'db'),
    runDir: join(dataDir, 'run'),
    logFile: join(dataDir, 'server.log'),
    stateFile: join(dataDir, 'tern-server.json'),
  };
}

// Unix socket paths are limited to 107 bytes; PostgreSQL's is "<dir>/.s.PGSQL.<port>".
const MAX_SOCKET_DIR = 80;

/**
 * The socket folder to use: the caller's, run/ inside the instance, or a short one under /tmp
 * (made here, empty). Callers start a server only when none runs in the folder, so what an earlier
 * server left in the short one is stale.
 */
export async function chooseSocketDir(layout: Layout, socketDir?: string): Promise<{ dir: string; own: boolean }> {
  if (socketDir) return { dir: socketDir, own: false };
  if (layout.runDir.length <= MAX_SOCKET_DIR) return { dir: layout.runDir, own: false };
  const dir = shortSocketDir(layout.dataDir);
  // rm removes a symlink planted there, not what it points to; mkdir fails if one reappears.
  await removeQuietly(dir);
  await mkdir(dir, { mode: 0o700 });
  return { dir, own: true };
}

const OWN_SOCKET_DIR_PREFIX = '/tmp/tern-sock-';

/**
 * The short socket folder of an instance folder whose own path is too long. Named after the
 * instance folder, so a delete or a restart finds it even when Tern was killed before it could
 * record it in the state file.
 */
export function shortSocketDir(dataDir: string): string {
  return `${OWN_SOCKET_DIR_PREFIX}${createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 16)}`;
}

/**
 * Removes the short socket folder of an instance folder: the one named after it, and the one an
 * earlier release named at random and recorded in the state file. That path comes from a file, so
 * it goes only if it is such a folder, never a caller's or a tampered path.
 */
export async function removeShortSocketDir(
  dataDir: string,
  state: Pick<ServerState, 'socketDir' | 'ownSocketDir'> | null,
): Promise<void> {
  await removeQuietly(shortSocketDir(dataDir));
  const recorded = state?.ownSocketDir ? state.socketDir : null;
  if (
    recorded &&
    dirname(recorded) === dirname(OWN_SOCKET_DIR_PREFIX) &&
    basename(recorded).startsWith(basename(OWN_SOCKET_DIR_PREFIX))
  ) {
    await removeQuietly(recorded);
  }
}

export async function readState(dataDir: string): Promise<ServerState> {
  return JSON.parse(await readFile(layoutOf(dataDir).stateFile, 'utf8')) as ServerState;
}

export async function writeState(dataDir: string, state: ServerState): Promise<void> {
  await writeFile(layoutOf(dataDir).stateFile, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o644 });
}

/** True when `pid` is a server of this instance (guards against a recycled PID). */
export function isServerOf(pid: number, dbDir: string): boolean {
  const argv = commandLine(pid);
  return !!argv && argv.some((arg) => arg === dbDir || arg.endsWith(`=${dbDir}`));
}

export function serverHandle(layout: Layout, state: ServerState, pid: number, stopSignal: NodeJS.Signals): ManagedServer {
  const stop = async () => {
    // Never signal a PID that no longer belongs to this server.
    if (isServerOf(pid, layout.dbDir)) await terminate(pid, stopSignal);
  };
  return {
    kind: state.kind,
    pid,
    host: state.host,
    port: state.port,
    dataDir: layout.dataDir,
    dbDir: layout.dbDir,
    socketDir: state.socketDir,
    logFile: layout.logFile,
    stop,
    async destroy() {
      await stop();
      await removeQuietly(layout.dataDir);
      await removeShortSocketDir(layout.dataDir, state);
    },
  };
}

export interface LaunchOptions {
  cmd: string;
  args: string[];
  /** spawn as this user (PostgreSQL); mariadbd switches user itself via --user. */
  user?: OsUser | null;
  layout: Layout;
  /** Resolves true once the server (process `pid`) accepts connections. */
  ready: (pid: number) => Promise<boolean>;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Thrown when the server could not bind its port, so a caller that picked the port can pick another. */
export class PortInUse extends ToolError {}

/** Starts a detached server process and waits until it is ready; kills it when it never gets there. */
export async function launch(options: LaunchOptions): Promise<number> {
  const { layout } = options;
  const logOffset = await stat(layout.logFile).then(
    (s) => s.size,
    () => 0,
  );
  const logFd = openSync(layout.logFile, 'a', 0o640);
  let exited = false;
  let pid: number;
  try {
    const child = spawn(options.cmd, options.args, {
      detached: true, // its own session: it survives Tern and a Ctrl-C in Tern's terminal
      stdio: ['ignore', logFd, logFd],
      env: childEnv(options.user ?? null),
      ...(options.user ? { uid: options.user.uid, gid: options.user.gid } : {}),
    });
    child.once('exit', () => {
      exited = true;
    });
    child.once('error', () => {
      exited = true;
    });
    child.unref();
    pid = child.pid ?? -1;
  } finally {
    closeSync(logFd);
  }
  const name = options.cmd.slice(options.cmd.lastIndexOf('/') + 1);
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  for (;;) {
    if (exited || pid < 0 || !isRunning(pid)) {
      const log = await readFrom(layout.logFile, logOffset);
      const ErrorType = /address already in use/i.test(log) ? PortInUse : ToolError;
      throw new ErrorType(name, null, lastErrorLine(log) || 'server exited during start', log);
    }
    if (await options.ready(pid).catch(() => false)) return pid;
    if (options.signal?.aborted || Date.now() > deadline) {
      await terminate(pid, 'SIGKILL', 10_000);
      if (options.signal?.aborted) throw new Cancelled(`${name} start was cancelled`);
      const log = await readFrom(layout.logFile, logOffset);
      throw new ToolError(name, null, `not ready in time; last line: ${lastErrorLine(log)}`, log);
    }
    await sleep(100);
  }
}

/** Runs `start` with a fresh free port until the server binds one (only when the caller chose no port). */
export async function withPortRetry<T>(
  fixedPort: number | undefined,
  pick: () => Promise<number>,
  start: (port: number) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const port = fixedPort ?? (await pick());
    try {
      return await start(port);
    } catch (err) {
      if (!(err instanceof PortInUse) || fixedPort !== undefined || attempt >= 3) throw err;
    }
  }
}

/** Creates the instance folder; an existing one must be empty (Tern never starts over old data). */
export async function createEmptyInstanceDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o750 });
  if ((await readdir(dir)).length > 0) throw new Conflict(`instance folder ${dir} is not empty`);
}
