import type { AuthContext } from '../auth.ts';
import type { Db } from '../db/connect.ts';
import { type BackupRow, childrenOf, findBackup, listBackups, softDeleteBackup } from '../db/repos/backups.ts';
import { type DatastoreVersion, findDatastoreVersion, versionIdsOfDatastore } from '../db/repos/datastores.ts';
import { findInstance } from '../db/repos/instances.ts';
import { BadRequest, Forbidden, NotFound, Unprocessable } from '../errors.ts';
import { activeJobFor, enqueue, requestCancel } from '../jobs/queue.ts';
import type { CopyRequests } from './copy-request.ts';
import { createFromInstance } from './create-from-instance.ts';
import { COPY_JOB, DELETE_JOB } from './jobs.ts';
import type { BackupQuota } from './quota.ts';
import { isRunning } from './state.ts';

// The backups domain: what may be created, seen and deleted, by whom. Shared by HTTP and CLI;
// knows nothing of Fastify. Work that takes time is a job enqueued in the same transaction as the row.

export { COPY_JOB, DELETE_JOB } from './jobs.ts';

export interface CreateBackupInput {
  name: string;
  description?: string | null;
  instance?: string | null;
  parentId?: string | null;
  incremental?: boolean;
  /** The blueprint's form: URL of the source object in a trusted region's storage. */
  location?: string | null;
  /** Trove's pointer form, which Tern turns into a real copy. */
  restoreFrom?: { remoteLocation: string; localDatastoreVersionId: string; size?: number | null } | null;
  /** Ask a source region's API for the location. */
  source?: { region: string; id: string } | null;
}

export interface ListBackupsInput {
  projectId: string;
  limit?: number;
  marker?: string;
  instanceId?: string;
  datastore?: string;
  allProjects?: boolean;
}

export interface BackupWithDatastore {
  backup: BackupRow;
  datastore: DatastoreVersion | undefined;
  /** The wrapped passphrase and its key id, set only for a caller of the backup's own project (copies to other regions). */
  envelope?: { keyId: string; wrapped: string };
}

export interface BackupServiceDeps {
  db: Db;
  /** The location, restore_from and source forms of create (copies from another region). */
  copies: CopyRequests;
  limits: { maxPageSize: number; defaultPageSize: number };
  /** Backups per project; every form of create reserves its rows in the transaction that inserts them. */
  quota: BackupQuota;
  maxAttempts: number;
  /** Nudges the in-process worker after an enqueue (no-op when the worker runs elsewhere). */
  wakeWorker: () => void;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class BackupService {
  private readonly deps: BackupServiceDeps;
  constructor(deps: BackupServiceDeps) {
    this.deps = deps;
  }

  async create(ctx: AuthContext, projectId: string, input: CreateBackupInput): Promise<BackupWithDatastore> {
    const forms = [input.instance, input.location, input.restoreFrom, input.source].filter((v) => v !== undefined && v !== null);
    if (forms.length !== 1) {
      throw new BadRequest(
        'give exactly one of "instance" (back up an instance), "location" or "restore_from" (copy a backup from another region), or "source" ({"region", "id"})',
      );
    }
    if (input.instance) {
      return createFromInstance(this.deps, ctx, projectId, { ...input, instance: input.instance });
    }
    // Before the source is inspected: a project at its quota costs no request to another region.
    await this.deps.quota.precheck(projectId);
    return this.deps.copies.create(ctx, projectId, input);
  }

  async list(ctx: AuthContext, input: ListBackupsInput): Promise<{ items: BackupWithDatastore[]; nextMarker?: string }> {
    const limit = input.limit ?? this.deps.limits.defaultPageSize;
    if (!Number.isInteger(limit) || limit < 1 || limit > this.deps.limits.maxPageSize) {
      throw new BadRequest(`limit must be a whole number from 1 to ${this.deps.limits.maxPageSize}`);
    }
    if (input.allProjects && !ctx.isAdmin) throw new Forbidden('all_projects is for administrators only');
    const db = this.deps.db.kysely;
    if (input.marker !== undefined) {
      const marker = UUID.test(input.marker) ? await findBackup(db, input.marker) : undefined;
      if (!marker || (!input.allProjects && marker.project_id !== input.projectId)) {
        throw new BadRequest(`marker ${input.marker} is not the id of a backup in this listing`);
      }
    }
    let datastoreVersionIds: string[] | undefined;
    if (input.datastore !== undefined) {
      datastoreVersionIds = await versionIdsOfDatastore(db, input.datastore);
      if (!datastoreVersionIds) throw new BadRequest(`datastore ${input.datastore} does not exist in this region`);
    }
    const rows = await listBackups(db, {
      projectId: input.allProjects ? undefined : input.projectId,
      instanceId: input.instanceId,
      datastoreVersionIds,
      markerId: input.marker,
      limit,
    });
    const page = rows.slice(0, limit);
    const items = await Promise.all(page.map((b) => this.withDatastore(b)));
    return { items, nextMarker: rows.length > limit ? page[page.length - 1].id : undefined };
  }

  /** Trove's GET /instances/{id}/backups: the instance must exist and be the caller's. */
  async listForInstance(ctx: AuthContext, input: ListBackupsInput & { instanceId: string }) {
    const instance = UUID.test(input.instanceId) ? await findInstance(this.deps.db.kysely, input.instanceId) : undefined;
    if (!instance || (instance.project_id !== input.projectId && !ctx.isAdmin)) {
      throw new NotFound(`Instance ${input.instanceId} could not be found.`);
    }
    return this.list(ctx, input);
  }

  async get(ctx: AuthContext, projectId: string, id: string): Promise<BackupWithDatastore> {
    const backup = await this.visible(ctx, projectId, id);
    const result = await this.withDatastore(backup);
    // Only the wrapped blob and key id, only to the owning project: what another region needs to re-wrap a copy.
    if (ctx.projectId === backup.project_id && backup.encryption_key_id && backup.wrapped_passphrase) {
      result.envelope = { keyId: backup.encryption_key_id, wrapped: backup.wrapped_passphrase };
    }
    return result;
  }

  async delete(ctx: AuthContext, projectId: string, id: string): Promise<void> {
    const backup = await this.visible(ctx, projectId, id);
    if ((await childrenOf(this.deps.db.kysely, id)).length > 0) {
      throw new Unprocessable(`backup ${id} has incremental backups based on it; delete those first`);
    }
    if (isRunning(backup.status)) {
      await this.cancelCopy(backup);
      this.deps.wakeWorker();
      return;
    }
    // Hide the row at once and remove the bytes in a job; a failed removal brings the row back as DELETE_FAILED.
    await this.deps.db.kysely.transaction().execute(async (trx) => {
      if (!(await softDeleteBackup(trx, id))) throw new NotFound(`Backup ${id} could not be found.`);
      await enqueue(trx, { kind: DELETE_JOB, payload: { backupId: id }, resourceId: id, maxAttempts: this.deps.maxAttempts });
    });
    this.deps.wakeWorker();
  }

  /**
   * DELETE of a copy still under way cancels it: the row goes at once, the copy job is flagged (a
   * queued one never starts) and its worker aborts and removes every object it wrote. Other
   * running backups (of instances) cannot be cancelled and keep Trove's 422.
   */
  private async cancelCopy(backup: BackupRow): Promise<void> {
    await this.deps.db.kysely.transaction().execute(async (trx) => {
      const job = await activeJobFor(trx, backup.id);
      // A copy waiting for its parent has no job yet; its parent's task skips deleted rows.
      const isCopy = job ? job.kind === COPY_JOB : backup.source_location !== null && backup.status === 'NEW';
      if (!isCopy) {
        throw new Unprocessable(
          `backup ${backup.id} is ${backup.status}; wait until it is COMPLETED or FAILED before deleting it`,
        );
      }
      if (!(await softDeleteBackup(trx, backup.id))) throw new NotFound(`Backup ${backup.id} could not be found.`);
      await requestCancel(trx, backup.id);
    });
  }

  /** The backup if the caller may see it; another project's backup is reported as not found. */
  private async visible(ctx: AuthContext, projectId: string, id: string): Promise<BackupRow> {
    const backup = UUID.test(id) ? await findBackup(this.deps.db.kysely, id) : undefined;
    if (!backup || (backup.project_id !== projectId && !ctx.isAdmin)) {
      throw new NotFound(`Backup ${id} could not be found.`);
    }
    return backup;
  }

  private async withDatastore(backup: BackupRow): Promise<BackupWithDatastore> {
    const datastore = backup.datastore_version_id
      ? await findDatastoreVersion(this.deps.db.kysely, backup.datastore_version_id)
      : undefined;
    return { backup, datastore };
  }
}
