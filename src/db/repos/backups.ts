import type { Kysely, Selectable, Transaction, Updateable } from 'kysely';
import { type BackupStatus, sourcesOf } from '../../backups/state.ts';
import { nowIso } from '../connect.ts';
import type { BackupsTable, Database } from '../schema.ts';

export type BackupRow = Selectable<BackupsTable>;
type Executor = Kysely<Database> | Transaction<Database>;

export interface ListBackupsQuery {
  /** Omit to list every project's backups (admins with all_projects). */
  projectId?: string;
  instanceId?: string;
  /** Datastore name ('mariadb') or datastore version id. */
  datastoreVersionIds?: string[];
  /** Return rows after this id in (created_at, id) order. */
  markerId?: string;
  limit: number;
}

// Every query hides soft-deleted rows; deletion keeps the row for audit and idempotent retries.

export async function insertBackup(db: Executor, row: BackupRow): Promise<void> {
  await db.insertInto('backups').values(row).execute();
}

export async function findBackup(db: Executor, id: string): Promise<BackupRow | undefined> {
  return db.selectFrom('backups').selectAll().where('id', '=', id).where('deleted_at', 'is', null).executeTakeFirst();
}

/** Rows in (created_at, id) order after the marker; fetches limit + 1 so callers know if more exist. */
export async function listBackups(db: Executor, q: ListBackupsQuery): Promise<BackupRow[]> {
  let query = db.selectFrom('backups').selectAll().where('deleted_at', 'is', null);
  if (q.projectId !== undefined) query = query.where('project_id', '=', q.projectId);
  if (q.instanceId !== undefined) query = query.where('instance_id', '=', q.instanceId);
  if (q.datastoreVersionIds !== undefined) query = query.where('datastore_version_id', 'in', q.datastoreVersionIds);
  if (q.markerId !== undefined) {
    const marker = await db.selectFrom('backups').select(['created_at', 'id']).where('id', '=', q.markerId).executeTakeFirst();
    if (marker) {
      query = query.where((eb) =>
        eb.or([
          eb('created_at', '>', marker.created_at),
          eb.and([eb('created_at', '=', marker.created_at), eb('id', '>', marker.id)]),
        ]),
      );
    }
  }
  return query
    .orderBy('created_at')
    .orderBy('id')
    .limit(q.limit + 1)
    .execute();
}

/**
 * Compare-and-set status change: succeeds only if the row is in a status from which `to` is an
 * allowed move (src/backups/state.ts). Returns false when another actor moved it first.
 */
export async function transitionBackup(
  db: Executor,
  id: string,
  to: BackupStatus,
  fields: Omit<Updateable<BackupsTable>, 'id' | 'status'> = {},
): Promise<boolean> {
  const result = await db
    .updateTable('backups')
    .set({ ...fields, status: to, updated_at: nowIso() })
    .where('id', '=', id)
    .where('status', 'in', sourcesOf(to))
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Progress of running work; does not change status. */
export async function updateBackupProgress(
  db: Executor,
  id: string,
  progress: { done: number; total: number | null; rate: number | null },
): Promise<void> {
  await db
    .updateTable('backups')
    .set({ progress_done: progress.done, progress_total: progress.total, progress_rate: progress.rate, updated_at: nowIso() })
    .where('id', '=', id)
    .execute();
}

export async function softDeleteBackup(db: Executor, id: string): Promise<boolean> {
  const now = nowIso();
  const result = await db
    .updateTable('backups')
    .set({ deleted_at: now, updated_at: now })
    .where('id', '=', id)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Backups whose parent is this one and that are not deleted (a parent cannot go while children stay). */
export async function childrenOf(db: Executor, id: string): Promise<BackupRow[]> {
  return db.selectFrom('backups').selectAll().where('parent_id', '=', id).where('deleted_at', 'is', null).execute();
}

/** A blank row with every column set, for callers to fill. */
export function newBackupRow(fields: Pick<BackupRow, 'id' | 'project_id' | 'name'> & Partial<BackupRow>): BackupRow {
  const now = nowIso();
  return {
    description: null,
    status: 'NEW',
    instance_id: null,
    parent_id: null,
    datastore_version_id: null,
    location: null,
    size_bytes: null,
    checksum: null,
    sha256: null,
    source_location: null,
    source_region: null,
    source_backup_id: null,
    source_checksum: null,
    metadata: null,
    incremental: 0,
    encryption_key_id: null,
    wrapped_passphrase: null,
    lsn: null,
    progress_done: 0,
    progress_total: null,
    progress_rate: null,
    fail_reason: null,
    created_at: now,
    updated_at: now,
    deleted_at: null,
    ...fields,
  };
}

/**
 * A backup of this project in this region whose bytes have the given checksum (a copy of it, or
 * the original), finished or still being made: an incremental copy can use it as its parent.
 */
export async function findReusableParent(db: Executor, projectId: string, checksum: string): Promise<BackupRow | undefined> {
  const rows = await db
    .selectFrom('backups')
    .selectAll()
    .where('project_id', '=', projectId)
    .where('deleted_at', 'is', null)
    .where('status', 'in', ['COMPLETED', 'NEW', 'BUILDING', 'SAVING'])
    .where((eb) => eb.or([eb('source_checksum', '=', checksum), eb('checksum', '=', checksum)]))
    .orderBy('created_at')
    .execute();
  return rows.find((r) => r.status === 'COMPLETED') ?? rows[0];
}

/** The row, locked until the end of the transaction on PostgreSQL (SQLite locks the whole database). */
export async function lockBackup(db: Executor, id: string, dialect: 'sqlite' | 'postgres'): Promise<BackupRow | undefined> {
  let q = db.selectFrom('backups').selectAll().where('id', '=', id).where('deleted_at', 'is', null);
  if (dialect === 'postgres') q = q.forUpdate();
  return q.executeTakeFirst();
}

/** Children still waiting for this backup (NEW, not deleted) and that have no job yet. */
export async function waitingChildren(db: Executor, parentId: string): Promise<BackupRow[]> {
  return db
    .selectFrom('backups')
    .selectAll()
    .where('parent_id', '=', parentId)
    .where('status', '=', 'NEW')
    .where('deleted_at', 'is', null)
    .where(({ not, exists, selectFrom }) =>
      not(exists(selectFrom('jobs').select('jobs.id').whereRef('jobs.resource_id', '=', 'backups.id'))),
    )
    .execute();
}
