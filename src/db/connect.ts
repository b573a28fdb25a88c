import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';
import pg from 'pg';
import * as initial from './migrations/001_initial.ts';
import * as instanceSecrets from './migrations/002_instance_secrets.ts';
import type { Database } from './schema.ts';
import { openSqlite } from './sqlite.ts';

export type Dialect = 'sqlite' | 'postgres';

export interface Db {
  kysely: Kysely<Database>;
  dialect: Dialect;
  close(): Promise<void>;
}

// PostgreSQL returns int8/numeric as strings by default; our bigints (bytes, epoch ms) fit a double.
pg.types.setTypeParser(20, (v) => Number(v));
pg.types.setTypeParser(1700, (v) => Number(v));

/** Opens the metadata database named by url ("sqlite:/path", "sqlite::memory:", "postgres://...") and migrates it. */
export async function connectDb(url: string, options: { migrate?: boolean } = {}): Promise<Db> {
  let kysely: Kysely<Database>;
  let dialect: Dialect;
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length);
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    dialect = 'sqlite';
    kysely = new Kysely<Database>({ dialect: new SqliteDialect({ database: openSqlite(path) }) });
  } else {
    dialect = 'postgres';
    const pool = new pg.Pool({ connectionString: url, max: 10 });
    // A server restart must not crash the process. The pool only listens on idle clients; a client
    // checked out between two queries (inside a transaction, say) emits its 'error' unheard, which
    // Node turns into an uncaught exception. The query in flight fails on its own, and the pool
    // drops the broken client on release, so the next query reconnects.
    pool.on('error', () => {});
    pool.on('connect', (client) => client.on('error', () => {}));
    kysely = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  }
  const db: Db = { kysely, dialect, close: () => kysely.destroy() };
  if (options.migrate !== false) await migrate(db);
  return db;
}

const MIGRATIONS: Record<string, (d: Dialect) => Migration> = {
  '001_initial': (d) => ({ up: (db) => initial.up(db, d), down: (db) => initial.down(db) }),
  '002_instance_secrets': () => instanceSecrets,
};

export async function migrate(db: Db): Promise<void> {
  const provider: MigrationProvider = {
    getMigrations: async () => Object.fromEntries(Object.entries(MIGRATIONS).map(([k, m]) => [k, m(db.dialect)])),
  };
  const { error } = await new Migrator({ db: db.kysely, provider }).migrateToLatest();
  if (error) throw error;
}

/** Current time as stored in timestamp columns. */
export function nowIso(): string {
  return new Date().toISOString();
}
