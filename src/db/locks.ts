import { sql, type Transaction } from 'kysely';
import type { Dialect } from './connect.ts';
import type { Database } from './schema.ts';

// Transaction-scoped locks for "count, then write" checks (quotas, caps) that must not interleave
// with the same check in another request, pool connection or process.
//
// PostgreSQL: an advisory lock on (space, hashtext(key)), held until commit or rollback, so only
// the transactions checking the same thing wait for each other. A hash collision only makes two
// keys share a lock, never lets a check through. Taken before the count, so the count's snapshot
// (READ COMMITTED: one per statement) includes whatever the previous holder committed.
//
// SQLite: one writer at a time per database file. A write statement that changes nothing takes
// the write lock now (an UPDATE takes it before it evaluates WHERE) instead of at the first real
// insert; holding it from before the count, no other connection or process can commit in between.

/** Lock spaces: the first key of PostgreSQL's two-key advisory locks, one per kind of check. */
export const LOCK_SPACE = {
  backupQuota: 741_001,
  jobClaim: 741_002,
} as const;

export async function lockForCheck(
  trx: Transaction<Database>,
  dialect: Dialect,
  space: (typeof LOCK_SPACE)[keyof typeof LOCK_SPACE],
  key: string,
): Promise<void> {
  if (dialect === 'postgres') {
    await sql`SELECT pg_advisory_xact_lock(${space}::int4, hashtext(${key}))`.execute(trx);
  } else {
    await sql`UPDATE jobs SET id = id WHERE 0`.execute(trx);
  }
}
