import { chmod, chown, mkdir, readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { BIN } from './binaries.ts';
import { freePort } from './ports.ts';
import {
  assertReachable,
  checkPassword,
  chownTree,
  isRunning,
  type OsUser,
  privateTempDir,
  removeQuietly,
  serviceUser,
  writeSecretFile,
} from './process.ts';
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

// MariaDB 10.11 servers as local processes: mariadb-install-db into a fresh folder, then mariadbd
// on 127.0.0.1 with its own socket and pid file. --no-defaults everywhere: Debian's
// /etc/mysql/my.cnf points at /var/lib/mysql and must not leak into our servers.

const HOST = '127.0.0.1';

export interface MariadbStartOptions {
  /** The instance folder; must not exist or be empty. */
  dataDir: string;
  /** Default: a free port. */
  port?: number;
  socketDir?: string;
  /** Password of root@localhost and root@127.0.0.1 (no other login is left). */
  rootPassword: string;
  /** More mariadbd options, e.g. ['--innodb-buffer-pool-size=64M']; kept for restarts. */
  extraArgs?: string[];
  signal?: AbortSignal;
}

export interface MariadbRunOptions {
  port?: number;
  socketDir?: string;
  extraArgs?: string[];
  signal?: AbortSignal;
}

export function mariadbPidFile(layout: Layout): string {
  return join(layout.runDir, 'mariadbd.pid');
}

/**
 * The server's own folder for temporary files. Servers sharing /tmp remove each other's
 * "#sql-temptable-*" files: of 8 mariadb-install-db runs at once, 1 to 3 failed.
 */
export function mariadbTmpDir(layout: Layout): string {
  return join(layout.runDir, 'tmp');
}

function sqlString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** A double-quoted option-file value (MariaDB unescapes \\ and \" inside quotes). */
function optionValue(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** Text of a client option file for --defaults-file / --defaults-extra-file; write it 0600. */
export function mariadbClientConfig(server: { host: string; port: number }, user: string, password: string): string {
  checkPassword(password);
  return `[client]\nuser=${optionValue(user)}\npassword=${optionValue(password)}\nhost=${server.host}\nport=${server.port}\nprotocol=TCP\n`;
}

/** Creates a fresh MariaDB instance in options.dataDir and starts it. */
export async function startMariadb(options: MariadbStartOptions): Promise<ManagedServer> {
  checkPassword(options.rootPassword);
  const layout = layoutOf(options.dataDir);
  await createEmptyInstanceDir(layout.dataDir);
  const user = serviceUser('mysql');
  let server: ManagedServer | null = null;
  try {
    await assertReachable(layout.dataDir, user);
    await mkdir(mariadbTmpDir(layout), { recursive: true });
    if (user) await chownTree(layout.dataDir, user);
    await runTool(BIN.mariadbInstallDb, mariadbInstallDbArgs(layout, user), { signal: options.signal });
    // The server runs this file before it accepts connections, so root is never without a
    // password; it is 0600, readable only by the server's user, and gone once the server is up.
    const initFile = join(layout.runDir, 'init.sql');
    const pw = sqlString(options.rootPassword);
    await writeSecretFile(
      initFile,
      [
        `ALTER USER 'root'@'localhost' IDENTIFIED BY ${pw};`,
        `CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED BY ${pw};`,
        `GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;`,
        `DROP USER IF EXISTS 'mysql'@'localhost';`,
        '',
      ].join('\n'),
      user,
    );
    try {
      server = await runMariadb(layout.dataDir, { ...options, initFile });
    } finally {
      await removeQuietly(initFile);
    }
    await checkLogin(server, options.rootPassword, options.signal);
    return server;
  } catch (err) {
    if (server) await server.destroy();
    else await removeQuietly(layout.dataDir);
    throw err;
  }
}

/** Starts mariadbd on the database already in <dataDir>/db (a restore, or a restart). */
export async function runMariadb(
  dataDir: string,
  options: MariadbRunOptions & { initFile?: string } = {},
): Promise<ManagedServer> {
  const layout = layoutOf(dataDir);
  const user = serviceUser('mysql');
  await mkdir(mariadbTmpDir(layout), { recursive: true });
  const socket = await chooseSocketDir(layout, options.socketDir);
  await mkdir(socket.dir, { recursive: true });
  if (user) {
    for (const dir of [layout.dataDir, layout.runDir, mariadbTmpDir(layout), socket.dir]) await chown(dir, user.uid, user.gid);
    await assertReachable(layout.dbDir, user);
  }
  await chmod(layout.dataDir, 0o750);
  const extraArgs = options.extraArgs ?? [];
  const started = withPortRetry(options.port, freePort, async (port) => {
    const state: ServerState = { kind: 'mariadb', host: HOST, port, socketDir: socket.dir, ownSocketDir: socket.own, extraArgs };
    await writeState(dataDir, state);
    const pid = await launch({
      cmd: BIN.mariadbd,
      args: mariadbdArgs(layout, state, user, options.initFile),
      layout,
      ready: () => mariadbAcceptsConnections(HOST, port),
      signal: options.signal,
    });
    return serverHandle(layout, state, pid, 'SIGTERM');
  });
  return started.catch(async (err) => {
    if (socket.own) await removeQuietly(socket.dir);
    throw err;
  });
}

/** mariadb-install-db's arguments: it runs a server too, which needs the instance's own tmpdir. */
export function mariadbInstallDbArgs(layout: Layout, user: OsUser | null): string[] {
  return [
    '--no-defaults',
    `--datadir=${layout.dbDir}`,
    `--tmpdir=${mariadbTmpDir(layout)}`,
    ...(user ? [`--user=${user.name}`] : []),
    '--skip-test-db',
    '--skip-name-resolve',
  ];
}

function mariadbdArgs(layout: Layout, state: ServerState, user: OsUser | null, initFile?: string): string[] {
  return [
    '--no-defaults', // must come first
    `--datadir=${layout.dbDir}`,
    `--socket=${join(state.socketDir, 'mysqld.sock')}`,
    `--pid-file=${mariadbPidFile(layout)}`,
    `--tmpdir=${mariadbTmpDir(layout)}`,
    `--port=${state.port}`,
    `--bind-address=${state.host}`,
    '--skip-name-resolve',
    ...(user ? [`--user=${user.name}`] : []),
    ...(initFile ? [`--init-file=${initFile}`] : []),
    ...state.extraArgs,
  ];
}

/** The PID of this instance's running mariadbd, or null. */
export async function runningMariadbPid(layout: Layout): Promise<number | null> {
  const pid = Number((await readFile(mariadbPidFile(layout), 'utf8').catch(() => '')).trim());
  return pid > 0 && isRunning(pid) && isServerOf(pid, layout.dbDir) ? pid : null;
}

/**
 * True when the server sends a protocol-10 handshake: it has finished starting (and run its init
 * file) and accepts logins. Needs no credentials.
 */
export function mariadbAcceptsConnections(host: string, port: number, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let data = Buffer.alloc(0);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
    socket.on('data', (chunk) => {
      data = Buffer.concat([data, chunk]);
      // 3-byte length, 1-byte sequence, then the payload: 0x0a = handshake v10, 0xff = error.
      if (data.length >= 5) done(data[4] === 0x0a);
    });
  });
}

/** Logs in over TCP with the client and a 0600 option file (the password never reaches argv). */
async function checkLogin(server: ManagedServer, password: string, signal?: AbortSignal): Promise<void> {
  const dir = await privateTempDir();
  try {
    const file = join(dir, 'client.cnf');
    await writeSecretFile(file, mariadbClientConfig(server, 'root', password));
    await runTool(BIN.mariadb, [`--defaults-file=${file}`, '--batch', '-e', 'SELECT 1'], { signal });
  } finally {
    await removeQuietly(dir);
  }
}
