import { randomUUID } from 'node:crypto';
import type { AuthContext } from '../auth.ts';
import { runnerFor } from '../datastores/runners.ts';
import type { Db } from '../db/connect.ts';
import { type BackupRow, findBackup, insertBackup, newBackupRow } from '../db/repos/backups.ts';
import { findDatastoreVersion } from '../db/repos/datastores.ts';
import { findInstance, type InstanceRow, transitionInstance } from '../db/repos/instances.ts';
import { BadRequest, NotFound, Unprocessable } from '../errors.ts';
import { enqueue } from '../jobs/queue.ts';
import type { BackupQuota } from './quota.ts';
import type { BackupWithDatastore } from './service.ts';

// Trove's POST /backups {"backup": {"name", "instance", "incremental", "parent_id"}}: checks the
// instance and the parent, then in ONE transaction reserves the project's quota, moves the instance
// to BACKUP (which is what allows one backup at a time), inserts the row NEW and enqueues the
// 'backup.create' job.

export const CREATE_JOB = 'backup.create';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface FromInstanceInput {
  name: string;
  description?: string | null;
  instance: string;
  parentId?: string | null;
  incremental?: boolean;
}

export async function createFromInstance(
  deps: { db: Db; quota: BackupQuota; maxAttempts: number; wakeWorker: () => void },
  ctx: AuthContext,
  projectId: string,
  input: FromInstanceInput,
): Promise<BackupWithDatastore> {
  const db = deps.db.kysely;
  const instance = UUID.test(input.instance) ? await findInstance(db, input.instance) : undefined;
  if (!instance || (instance.project_id !== projectId && !ctx.isAdmin)) {
    throw new NotFound(`Instance ${input.instance} could not be found.`);
  }
  const version = await findDatastoreVersion(db, instance.datastore_version_id);
  const runner = version && runnerFor(version.datastore);
  if (!version || !runner) throw new BadRequest(`instance ${instance.id} has a datastore this region cannot back up`);
  const incremental = input.incremental === true || !!input.parentId;
  if (incremental && !runner.supportsIncremental) {
    throw new BadRequest(`incremental backups are not supported for ${version.datastore}; take a full backup`);
  }
  assertReady(instance);
  const parent = incremental ? await parentFor(deps.db, instance, input.parentId ?? null) : undefined;
  const row = newBackupRow({
    id: randomUUID(),
    project_id: instance.project_id,
    name: input.name,
    description: input.description ?? null,
    instance_id: instance.id,
    parent_id: parent?.id ?? null,
    incremental: parent ? 1 : 0,
    datastore_version_id: version.id,
  });
  await db.transaction().execute(async (trx) => {
    // First, so a refusal leaves the instance as it was (the transaction rolls back anyway).
    await deps.quota.reserve(trx, instance.project_id, 1);
    // Compare-and-set: of two concurrent requests, only one moves ACTIVE -> BACKUP.
    if (!(await transitionInstance(trx, instance.id, 'BACKUP'))) {
      const now = await findInstance(trx, instance.id);
      assertReady(now ?? { ...instance, status: 'SHUTDOWN' });
      throw new Unprocessable(`Instance ${instance.id} changed state meanwhile; try again.`);
    }
    await insertBackup(trx, row);
    await enqueue(trx, { kind: CREATE_JOB, payload: { backupId: row.id }, resourceId: row.id, maxAttempts: deps.maxAttempts });
  });
  deps.wakeWorker();
  return { backup: row, datastore: version };
}

function assertReady(instance: InstanceRow): void {
  if (instance.status === 'BACKUP') {
    throw new Unprocessable(`Instance ${instance.id} is already taking a backup; one backup at a time per instance.`);
  }
  if (instance.status !== 'ACTIVE') {
    throw new Unprocessable(`Instance ${instance.id} is ${instance.status}; backups need an ACTIVE instance.`);
  }
}

/**
 * The parent of an incremental backup: the one named, or (as Trove does) the instance's latest
 * COMPLETED backup; with none, Trove takes a full backup instead.
 */
async function parentFor(db: Db, instance: InstanceRow, parentId: string | null): Promise<BackupRow | undefined> {
  if (parentId === null) {
    return db.kysely
      .selectFrom('backups')
      .selectAll()
      .where('instance_id', '=', instance.id)
      .where('status', '=', 'COMPLETED')
      .where('deleted_at', 'is', null)
      .where('lsn', 'is not', null)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(1)
      .executeTakeFirst();
  }
  const parent = UUID.test(parentId) ? await findBackup(db.kysely, parentId) : undefined;
  if (!parent || parent.project_id !== instance.project_id) throw new NotFound(`Backup ${parentId} could not be found.`);
  if (parent.instance_id !== instance.id) {
    throw new BadRequest(`parent backup ${parentId} is not a backup of instance ${instance.id}`);
  }
  if (parent.status !== 'COMPLETED') {
    throw new Unprocessable(`parent backup ${parentId} is ${parent.status}; an incremental backup needs a COMPLETED parent`);
  }
  if (!parent.lsn) throw new Unprocessable(`parent backup ${parentId} has no LSN to continue from`);
  return parent;
}
