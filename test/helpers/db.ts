import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { connectDb, type Db } from '../../src/db/connect.ts';

// Every metadata test runs on both databases: SQLite in memory, and a fresh database on the real
// PostgreSQL that scripts/test.sh starts (or reuses) on loopback, dropped afterwards.

/** Admin URL of the test PostgreSQL server (a database we may CREATE/DROP databases from). */
export const PG_ADMIN_URL = process.env.TERN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDb {
  name: 'sqlite' | 'postgres';
  /** A fresh, migrated metadata database. */
  open(): Promise<{ db: Db; url: string; drop(): Promise<void> }>;
}

export const TEST_DBS: TestDb[] = [
  {
    name: 'sqlite',
    async open() {
      const db = await connectDb('sqlite::memory:');
      return { db, url: 'sqlite::memory:', drop: () => db.close() };
    },
  },
  {
    name: 'postgres',
    async open() {
      const url = await createPgDatabase();
      const db = await connectDb(url);
      return {
        db,
        url,
        drop: async () => {
          await db.close();
          await dropPgDatabase(url);
        },
      };
    },
  },
];

/** Creates an empty PostgreSQL database for one test and returns its URL. */
export async function createPgDatabase(): Promise<string> {
  const name = `tern_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function dropPgDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  if (!/^tern_test_[0-9a-f]+$/.test(name)) throw new Error(`refusing to drop ${name}`);
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}
