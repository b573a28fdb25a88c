import type { Kysely, Transaction } from 'kysely';
import type { Db } from '../db/connect.ts';
import { LOCK_SPACE, lockForCheck } from '../db/locks.ts';
import type { Database } from '../db/schema.ts';
import { OverLimit } from '../errors.ts';

// Trove's per-project backup quota (max_backups_per_tenant): a create that would leave the project
// holding more backups than allowed is refused with 413 overLimit, before any row or job exists.
//
// What counts is every backup row of the project that is not deleted, whatever its status: NEW,
// BUILDING and SAVING (space is about to be used), COMPLETED, and also FAILED and DELETE_FAILED, as
// in Trove, where a backup's quota usage is released only when the backup is deleted. A FAILED
// backup stays listed until its owner deletes it, so it keeps its place; deleting it frees one.
//
// Race safety: reserve() runs in the transaction that inserts the rows and holds a lock for the
// project until that transaction ends (src/db/locks.ts), so of N concurrent creates exactly as many
// as fit get through, on SQLite and on PostgreSQL with any number of API processes.

type Executor = Kysely<Database> | Transaction<Database>;

export class BackupQuota {
  readonly perProject: number;
  private readonly db: Db;

  constructor(db: Db, perProject: number) {
    if (!Number.isInteger(perProject) || perProject < 1)
      throw new RangeError(`backupsPerProject must be >= 1, got ${perProject}`);
    this.db = db;
    this.perProject = perProject;
  }

  /**
   * Early refusal without a lock, before the slow checks of a create (source HEADs, other regions'
   * APIs): a project already at its quota hears so at once. reserve() is still the one that counts.
   */
  async precheck(projectId: string, adding = 1): Promise<void> {
    this.assertRoom(projectId, await countBackups(this.db.kysely, projectId), adding);
  }

  /** Locks the project's quota until `trx` ends, then refuses if `adding` more rows would not fit. Call before inserting. */
  async reserve(trx: Transaction<Database>, projectId: string, adding: number): Promise<void> {
    await lockForCheck(trx, this.db.dialect, LOCK_SPACE.backupQuota, projectId);
    this.assertRoom(projectId, await countBackups(trx, projectId), adding);
  }

  private assertRoom(projectId: string, used: number, adding: number): void {
    if (used + adding <= this.perProject) return;
    const what = adding === 1 ? 'one more' : `${adding} more (the backup and parents to copy with it)`;
    throw new OverLimit(
      `Quota exceeded for resources: ['backups']. Project ${projectId} holds ${used} of its ${this.perProject} backups and asked for ${what}; delete backups it no longer needs (FAILED ones count too).`,
    );
  }
}

/** Backups the project holds: every row not deleted, whatever its status. */
export async function countBackups(db: Executor, projectId: string): Promise<number> {
  const row = await db
    .selectFrom('backups')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('project_id', '=', projectId)
    .where('deleted_at', 'is', null)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
