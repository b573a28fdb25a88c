import { chmod, chown, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BIN } from './binaries.ts';
import { freePort } from './ports.ts';
import { assertReachable, checkPassword, chownTree, isRunning, removeQuietly, serviceUser, writeSecretFile } from './process.ts';
import {
  chooseSocketDir,
  createEmptyInstanceDir,
  isServerOf,
  type Layout,
  launch,
  layoutOf,
  type ManagedServer,
  type ServerState,
  serverHandle,
  withPortRetry,
  writeState,
} from './server.ts';
import { runTool } from './tool.ts';

// PostgreSQL 15 servers as local processes: initdb into a fresh folder, then postgres on
// 127.0.0.1 with its own socket folder. Both run as the `postgres` user when Tern is root (initdb
// refuses root). TCP logins need the password (scram-sha-256); the socket is 0700.

const HOST = '127.0.0.1';
export const POSTGRES_SUPERUSER = 'postgres';

export interface PostgresStartOptions {
  /** The instance folder; must not exist or be empty. */
  dataDir: string;
  /** Default: a free port. */
  port?: number;
  socketDir?: string;
  /** Password of the `postgres` superuser. */
  rootPassword: string;
  /** More postgres arguments, e.g. ['-c', 'fsync=off']; kept for restarts. */
  extraArgs?: string[];
  signal?: AbortSignal;
}

export interface PostgresRunOptions {
  port?: number;
  socketDir?: string;
  extraArgs?: string[];
  signal?: AbortSignal;
}

/** Creates a fresh PostgreSQL cluster in options.dataDir and starts it. */
export async function startPostgres(options: PostgresStartOptions): Promise<ManagedServer> {
  checkPassword(options.rootPassword);
  const layout = layoutOf(options.dataDir);
  await createEmptyInstanceDir(layout.dataDir);
  const user = serviceUser('postgres');
  let server: ManagedServer | null = null;
  try {
    await assertReachable(layout.dataDir, user);
    await mkdir(layout.runDir, { recursive: true });
    if (user) await chownTree(layout.dataDir, user);
    // initdb reads the password from a 0600 file that only the postgres user can read.
    const pwFile = join(layout.runDir, 'initdb.pw');
    await writeSecretFile(pwFile, `${options.rootPassword}\n`, user);
    try {
      await runTool(
        BIN.initdb,
        [
          '-D',
          layout.dbDir,
          '-U',
          POSTGRES_SUPERUSER,
          `--pwfile=${pwFile}`,
          '--auth-local=peer',
          '--auth-host=scram-sha-256',
          '--encoding=UTF8',
          '--locale=C.UTF-8',
        ],
        { user, signal: options.signal },
      );
    } finally {
      await removeQuietly(pwFile);
    }
    server = await runPostgres(layout.dataDir, options);
    return server;
  } catch (err) {
    if (server) await server.destroy();
    else await removeQuietly(layout.dataDir);
    throw err;
  }
}

/** Starts postgres on the cluster already in <dataDir>/db (a restore, or a restart). */
export async function runPostgres(dataDir: string, options: PostgresRunOptions = {}): Promise<ManagedServer> {
  const layout = layoutOf(dataDir);
  const user = serviceUser('postgres');
  await mkdir(layout.runDir, { recursive: true });
  const socket = await chooseSocketDir(layout, options.socketDir);
  await mkdir(socket.dir, { recursive: true });
  if (user) {
    for (const dir of [layout.dataDir, layout.runDir, socket.dir, layout.dbDir]) await chown(dir, user.uid, user.gid);
    await assertReachable(layout.dbDir, user);
  }
  await chmod(layout.dataDir, 0o750);
  await chmod(layout.dbDir, 0o700); // postgres refuses a data folder others can read
  const extraArgs = options.extraArgs ?? [];
  const started = withPortRetry(options.port, freePort, async (port) => {
    const state: ServerState = {
      kind: 'postgresql',
      host: HOST,
      port,
      socketDir: socket.dir,
      ownSocketDir: socket.own,
      extraArgs,
    };
    await writeState(dataDir, state);
    const args = ['-D', layout.dbDir, '-h', HOST, '-p', String(port), '-k', socket.dir, '-c', 'unix_socket_permissions=0700'];
    const pid = await launch({
      cmd: BIN.postgres,
      args: [...args, ...extraArgs],
      user,
      layout,
      ready: async (pid) => {
        // A stale postmaster.pid may still say "ready": only trust the one our process wrote.
        const status = await postmasterStatus(layout);
        return status?.pid === pid && status.status === 'ready';
      },
      signal: options.signal,
    });
    // SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to disconnect.
    return serverHandle(layout, state, pid, 'SIGINT');
  });
  return started.catch(async (err) => {
    if (socket.own) await removeQuietly(socket.dir);
    throw err;
  });
}

/** PID and status ("starting", "ready", "stopping", ...) from postmaster.pid, or null. */
export async function postmasterStatus(layout: Layout): Promise<{ pid: number; status: string } | null> {
  const text = await readFile(join(layout.dbDir, 'postmaster.pid'), 'utf8').catch(() => '');
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  return pid > 0 ? { pid, status: (lines[7] ?? '').trim() } : null;
}

/** The PID of this instance's running postmaster, or null. */
export async function runningPostgresPid(layout: Layout): Promise<number | null> {
  const pid = (await postmasterStatus(layout))?.pid ?? 0;
  return pid > 0 && isRunning(pid) && isServerOf(pid, layout.dbDir) ? pid : null;
}

/** One pgpass line (":" and "\" escaped); write it to a 0600 file named by PGPASSFILE. */
export function pgpassLine(server: { host: string; port: number }, user: string, password: string): string {
  checkPassword(password);
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
  return `${server.host}:${server.port}:*:${esc(user)}:${esc(password)}\n`;
}
