import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { BIN } from '../../src/instances/binaries.ts';
import { privateTempDir, removeQuietly, writeSecretFile } from '../../src/instances/process.ts';
import { type ManagedServer, mariadbClientConfig, POSTGRES_SUPERUSER } from '../../src/instances/provisioner.ts';

// Shared setup for tests that run real MariaDB and PostgreSQL servers.

const ROOT = resolve(import.meta.dirname, '../..');
let packagesReady = false;

/** Installs the Debian packages the datastore tests need (scripts/datastores.sh), once per process. */
export function ensureDatastorePackages(): void {
  if (packagesReady) return;
  const result = spawnSync('bash', [join(ROOT, 'scripts/datastores.sh')], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) throw new Error(`scripts/datastores.sh failed with ${result.status}`);
  packagesReady = true;
}

/**
 * A temp folder for instance folders. 0711: the mysql and postgres users must be able to pass
 * through it to their own folders, but not list it.
 */
export function makeTestDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `tern-${prefix}-`));
  chmodSync(dir, 0o711);
  return dir;
}

/** Tracks servers and folders and removes them all, even when a test failed half-way. */
export class Cleanup {
  #servers: ManagedServer[] = [];
  #dirs: string[] = [];

  server<T extends ManagedServer>(server: T): T {
    this.#servers.push(server);
    return server;
  }

  dir(dir: string): string {
    this.#dirs.push(dir);
    return dir;
  }

  async run(): Promise<void> {
    for (const server of this.#servers.splice(0).reverse()) await server.destroy().catch(() => {});
    for (const dir of this.#dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs SQL on a MariaDB server through the real client (password in a 0600 file); returns the rows as text. */
export async function mariadbSql(server: { host: string; port: number }, password: string, sql: string): Promise<string> {
  const dir = await privateTempDir('tern-test-sql-');
  try {
    const file = join(dir, 'client.cnf');
    await writeSecretFile(file, mariadbClientConfig(server, 'root', password));
    const child = spawn(BIN.mariadb, [`--defaults-file=${file}`, '--batch', '--skip-column-names'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => {
      out += c;
    });
    child.stderr.on('data', (c) => {
      err += c;
    });
    child.stdin.end(sql);
    const code = await new Promise((r) => child.on('close', r));
    if (code !== 0) throw new Error(`mariadb client failed: ${err.trim()}`);
    return out;
  } finally {
    await removeQuietly(dir);
  }
}

/** Runs a query on a PostgreSQL server over TCP with the postgres superuser's password. */
export async function pgQuery(server: { host: string; port: number }, password: string, sql: string, database = 'postgres') {
  const client = new pg.Client({ host: server.host, port: server.port, user: POSTGRES_SUPERUSER, password, database });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Command lines of all running processes whose argv[0] ends with `name`. */
export function commandLinesOf(name: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv[0]?.endsWith(name)) found.push(argv.join(' '));
    } catch {
      // the process ended meanwhile
    }
  }
  return found;
}
