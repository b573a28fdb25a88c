import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import pg from 'pg';
import { connectDb, type Db } from '../../src/db/connect.ts';
import { createPgDatabase, dropPgDatabase, PG_ADMIN_URL } from '../helpers/db.ts';

// PostgreSQL ends a connection that Tern holds between two queries of a transaction (a server
// restart or an administrator's pg_terminate_backend do this). The process must live on: the
// transaction fails, and the next query gets a fresh connection.

let url: string;
let db: Db;

before(async () => {
  url = await createPgDatabase();
  db = await connectDb(url);
});

after(async () => {
  await db?.close();
  if (url) await dropPgDatabase(url);
});

test('a connection ended mid-transaction fails that transaction and nothing else', async () => {
  let uncaught: unknown;
  const onUncaught = (err: unknown) => {
    uncaught = err;
  };
  process.on('uncaughtException', onUncaught);
  try {
    const outcome = await db.kysely
      .transaction()
      .execute(async (trx) => {
        const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
        const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
        await admin.connect();
        try {
          await admin.query('select pg_terminate_backend($1)', [rows[0].pid]);
        } finally {
          await admin.end();
        }
        await sleep(300); // the client hears of the closed socket while it is checked out
        await sql`select 1`.execute(trx);
        return 'committed';
      })
      .catch((err: Error) => `failed: ${err.message}`);
    assert.match(outcome, /^failed: /, 'the transaction on the ended connection cannot commit');
    assert.equal(uncaught, undefined, `no uncaught exception: ${uncaught}`);
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(db.kysely);
    assert.equal(rows[0].one, 1, 'the next query reconnects');
  } finally {
    process.off('uncaughtException', onUncaught);
  }
});
