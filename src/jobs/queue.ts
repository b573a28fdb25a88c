import type { Kysely, Selectable, Transaction } from 'kysely';
import { type Db, type Dialect, nowIso } from '../db/connect.ts';
import { LOCK_SPACE, lockForCheck } from '../db/locks.ts';
import type { Database, JobsTable } from '../db/schema.ts';
import type { EnqueueOptions } from './types.ts';

// The durable queue: plain rows in `jobs`. A job is claimed under a lease (owner + expiry); every
// write after the claim is conditional on still holding that lease, so a worker that lost its lease
// (paused, partitioned, presumed dead) can never overwrite the state another worker has since set.

export type JobRow = Selectable<JobsTable>;
type Executor = Kysely<Database> | Transaction<Database>;

export const DEFAULT_MAX_ATTEMPTS = 5;
const MAX_ERROR_LENGTH = 2000;

/** Inserts a queued job. Pass the caller's transaction so the row and its job commit together. */
export async function enqueue(db: Executor, options: EnqueueOptions, defaultMaxAttempts = DEFAULT_MAX_ATTEMPTS): Promise<number> {
  const maxAttempts = options.maxAttempts ?? defaultMaxAttempts;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new RangeError(`maxAttempts must be >= 1, got ${maxAttempts}`);
  const now = nowIso();
  const row = await db
    .insertInto('jobs')
    .values({
      kind: options.kind,
      payload: JSON.stringify(options.payload ?? null),
      resource_id: options.resourceId ?? null,
      status: 'queued',
      attempts: 0,
      max_attempts: maxAttempts,
      run_after: options.runAfter ?? Date.now(),
      lease_owner: null,
      lease_expires_at: null,
      cancel_requested: 0,
      last_error: null,
      created_at: now,
      updated_at: now,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return Number(row.id);
}

/**
 * Asks for the resource's unfinished jobs to stop. A queued job that never started is cancelled
 * here; a running one (or one waiting to retry, which may have written something) is flagged and
 * a worker aborts it and calls the handler's onGiveUp so it can clean up. Returns the jobs touched.
 */
export async function requestCancel(db: Executor, resourceId: string): Promise<number> {
  const now = Date.now();
  const fresh = await db
    .updateTable('jobs')
    .set({ status: 'cancelled', cancel_requested: 1, last_error: 'cancelled before it started', updated_at: nowIso() })
    .where('resource_id', '=', resourceId)
    .where('status', '=', 'queued')
    .where('attempts', '=', 0)
    .executeTakeFirst();
  const started = await db
    .updateTable('jobs')
    // A retry waiting out its backoff becomes due at once, so the cleanup is not delayed.
    .set((eb) => ({
      cancel_requested: 1,
      run_after: eb.case().when('status', '=', 'queued').then(now).else(eb.ref('run_after')).end(),
      updated_at: nowIso(),
    }))
    .where('resource_id', '=', resourceId)
    .where('status', 'in', ['queued', 'running'])
    .where('cancel_requested', '=', 0)
    .executeTakeFirst();
  return Number(fresh.numUpdatedRows) + Number(started.numUpdatedRows);
}

/** The resource's unfinished (queued or running) job, newest first, if any. */
export async function activeJobFor(db: Executor, resourceId: string): Promise<JobRow | undefined> {
  return db
    .selectFrom('jobs')
    .selectAll()
    .where('resource_id', '=', resourceId)
    .where('status', 'in', ['queued', 'running'])
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
}

export async function findJob(db: Executor, id: number): Promise<JobRow | undefined> {
  return db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Most jobs of a kind that may run at once across every worker sharing the database, by kind. */
export type KindLimits = Readonly<Record<string, number>>;

/**
 * Claims one due job: queued with run_after reached, or running under an expired lease (its worker
 * died). Returns it with the new lease and attempts + 1, or undefined when nothing is due.
 * Oldest due first (run_after, then id), so jobs of a kind start in the order they were made.
 *
 * A kind in `limits` is passed over while that many of its jobs run under live leases (counting
 * every worker, as they share the table); other kinds are still claimed meanwhile, and the kind's
 * oldest due job is the next one to start when a slot frees up.
 *
 * One UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING statement on both databases. On
 * PostgreSQL the subquery takes FOR UPDATE SKIP LOCKED, so concurrent claimers pass over each
 * other's rows instead of waiting. On SQLite a write statement takes the database write lock
 * before it reads (as BEGIN IMMEDIATE does) and holds it to the end, so two processes can never
 * pick the same row; being one synchronous call, it also cannot interleave with another handle
 * in the same process (an explicit BEGIN IMMEDIATE ... COMMIT spanning awaits can, and then blocks
 * the event loop for busy_timeout). That also makes the count of running jobs for `limits` exact
 * on SQLite. On PostgreSQL two claimers could each count the same running jobs and both start one
 * more, so with limits the statement runs in a transaction holding the claim lock (src/db/locks.ts)
 * until commit: claims are serialized, and each one counts what the previous one committed.
 */
export async function claim(
  db: Db,
  owner: string,
  leaseMs: number,
  kinds?: string[],
  limits: KindLimits = {},
): Promise<JobRow | undefined> {
  if (kinds && kinds.length === 0) return undefined;
  const limited = Object.entries(limits).filter(([kind]) => !kinds || kinds.includes(kind));
  for (const [kind, max] of limited) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`limit of ${kind} must be >= 1, got ${max}`);
  }
  if (db.dialect === 'postgres' && limited.length > 0) {
    return db.kysely.transaction().execute(async (trx) => {
      await lockForCheck(trx, db.dialect, LOCK_SPACE.jobClaim, 'claim');
      return claimStatement(trx, db.dialect, owner, leaseMs, kinds, limited);
    });
  }
  return claimStatement(db.kysely, db.dialect, owner, leaseMs, kinds, limited);
}

function claimStatement(
  db: Executor,
  dialect: Dialect,
  owner: string,
  leaseMs: number,
  kinds: string[] | undefined,
  limited: Array<[string, number]>,
): Promise<JobRow | undefined> {
  const now = Date.now();
  let pick = db
    .selectFrom('jobs')
    .select('id')
    .where((eb) =>
      eb.or([
        eb.and([eb('status', '=', 'queued'), eb('run_after', '<=', now)]),
        eb.and([eb('status', '=', 'running'), eb('lease_expires_at', '<', now)]),
      ]),
    )
    .orderBy('run_after')
    .orderBy('id')
    .limit(1);
  if (kinds) pick = pick.where('kind', 'in', kinds);
  for (const [kind, max] of limited) {
    // Reclaiming an expired job of the kind is starting one too: it is not among the live ones counted.
    pick = pick.where((eb) =>
      eb.or([
        eb('kind', '!=', kind),
        eb(
          eb
            .selectFrom('jobs as live')
            .select((e) => e.fn.countAll().as('n'))
            .where('live.kind', '=', kind)
            .where('live.status', '=', 'running')
            .where('live.lease_expires_at', '>=', now),
          '<',
          max,
        ),
      ]),
    );
  }
  if (dialect === 'postgres') pick = pick.forUpdate().skipLocked();
  return db
    .updateTable('jobs')
    .set((eb) => ({
      status: 'running',
      lease_owner: owner,
      lease_expires_at: now + leaseMs,
      attempts: eb('attempts', '+', 1),
      updated_at: nowIso(),
    }))
    .where('id', '=', pick)
    .returningAll()
    .executeTakeFirst();
}

/** Extends the lease if `owner` still holds it. `owned: false` means stop: someone else has the job now. */
export async function heartbeat(
  db: Db,
  id: number,
  owner: string,
  leaseMs: number,
): Promise<{ owned: boolean; cancelRequested: boolean }> {
  const row = await db.kysely
    .updateTable('jobs')
    .set({ lease_expires_at: Date.now() + leaseMs, updated_at: nowIso() })
    .where('id', '=', id)
    .where('lease_owner', '=', owner)
    .where('status', '=', 'running')
    .returning('cancel_requested')
    .executeTakeFirst();
  return { owned: row !== undefined, cancelRequested: row?.cancel_requested === 1 };
}

/** Marks the job succeeded. False when the lease was lost first (nothing written). */
export async function complete(db: Db, id: number, owner: string): Promise<boolean> {
  return finish(db, id, owner, { status: 'succeeded', last_error: null });
}

/**
 * Records a failed attempt: with retryAt, back to queued until then; without, finally failed.
 * The runner decides which (transient error and attempts left). False when the lease was lost.
 */
export async function fail(
  db: Db,
  id: number,
  owner: string,
  error: unknown,
  options: { retryAt?: number } = {},
): Promise<boolean> {
  const last_error = errorText(error);
  if (options.retryAt === undefined) return finish(db, id, owner, { status: 'failed', last_error });
  return finish(db, id, owner, { status: 'queued', last_error, run_after: options.retryAt });
}

export async function markCancelled(db: Db, id: number, owner: string, reason = 'cancelled'): Promise<boolean> {
  return finish(db, id, owner, { status: 'cancelled', last_error: reason });
}

/** Gives the job back (shutdown): queued and due now, and this attempt is not counted. */
export async function release(db: Db, id: number, owner: string): Promise<boolean> {
  const result = await db.kysely
    .updateTable('jobs')
    .set((eb) => ({
      status: 'queued',
      attempts: eb('attempts', '-', 1),
      run_after: Date.now(),
      lease_owner: null,
      lease_expires_at: null,
      updated_at: nowIso(),
    }))
    .where('id', '=', id)
    .where('lease_owner', '=', owner)
    .where('status', '=', 'running')
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

async function finish(
  db: Db,
  id: number,
  owner: string,
  values: { status: string; last_error: string | null; run_after?: number },
): Promise<boolean> {
  const result = await db.kysely
    .updateTable('jobs')
    .set({ ...values, lease_owner: null, lease_expires_at: null, updated_at: nowIso() })
    .where('id', '=', id)
    .where('lease_owner', '=', owner)
    .where('status', '=', 'running')
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export function errorText(error: unknown): string {
  const text = error instanceof Error ? `${error.name === 'Error' ? '' : `${error.name}: `}${error.message}` : String(error);
  return text.length > MAX_ERROR_LENGTH ? `${text.slice(0, MAX_ERROR_LENGTH)}...` : text;
}
