import type { Kysely, Selectable, Transaction, Updateable } from 'kysely';
import { type InstanceStatus, sourcesOf } from '../../instances/state.ts';
import { nowIso } from '../connect.ts';
import type { Database, InstancesTable } from '../schema.ts';

type Executor = Kysely<Database> | Transaction<Database>;
export type InstanceRow = Selectable<InstancesTable>;

export async function findInstance(db: Executor, id: string): Promise<InstanceRow | undefined> {
  return db.selectFrom('instances').selectAll().where('id', '=', id).where('deleted_at', 'is', null).executeTakeFirst();
}

/** Also finds deleted instances: a restore needs the credentials of the instance a backup came from. */
export async function findInstanceEvenDeleted(db: Executor, id: string): Promise<InstanceRow | undefined> {
  return db.selectFrom('instances').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function insertInstance(db: Executor, row: InstanceRow): Promise<void> {
  await db.insertInto('instances').values(row).execute();
}

/** Rows in (created_at, id) order after the marker; fetches limit + 1 so callers know if more exist. */
export async function listInstances(
  db: Executor,
  q: { projectId?: string; markerId?: string; limit: number },
): Promise<InstanceRow[]> {
  let query = db.selectFrom('instances').selectAll().where('deleted_at', 'is', null);
  if (q.projectId !== undefined) query = query.where('project_id', '=', q.projectId);
  if (q.markerId !== undefined) {
    const marker = await db.selectFrom('instances').select(['created_at', 'id']).where('id', '=', q.markerId).executeTakeFirst();
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

/** Instances whose server should be running (for re-adoption when Tern starts). */
export async function instancesWithServers(db: Executor): Promise<InstanceRow[]> {
  return db
    .selectFrom('instances')
    .selectAll()
    .where('deleted_at', 'is', null)
    .where('status', 'in', ['ACTIVE', 'BACKUP'])
    .execute();
}

/**
 * Compare-and-set status change: succeeds only if the row is in a status from which `to` is an
 * allowed move (src/instances/state.ts). Returns false when another actor moved it first.
 */
export async function transitionInstance(
  db: Executor,
  id: string,
  to: InstanceStatus,
  fields: Omit<Updateable<InstancesTable>, 'id' | 'status'> = {},
): Promise<boolean> {
  const result = await db
    .updateTable('instances')
    .set({ ...fields, status: to, updated_at: nowIso() })
    .where('id', '=', id)
    .where('status', 'in', sourcesOf(to))
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function updateInstance(
  db: Executor,
  id: string,
  fields: Omit<Updateable<InstancesTable>, 'id' | 'status'>,
): Promise<void> {
  await db
    .updateTable('instances')
    .set({ ...fields, updated_at: nowIso() })
    .where('id', '=', id)
    .execute();
}

export async function softDeleteInstance(db: Executor, id: string): Promise<void> {
  const now = nowIso();
  await db.updateTable('instances').set({ deleted_at: now, updated_at: now, pid: null }).where('id', '=', id).execute();
}
