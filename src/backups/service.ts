import { randomUUID } from 'node:crypto';
import type { AuthContext } from '../auth.ts';
import type { Db } from '../db/connect.ts';
import {
  type BackupRow,
  childrenOf,
  findBackup,
  insertBackup,
  listBackups,
  newBackupRow,
  softDeleteBackup,
} from '../db/repos/backups.ts';
import {
  type DatastoreVersion,
  findDatastoreVersion,
  findDatastoreVersionByName,
  versionIdsOfDatastore,
} from '../db/repos/datastores.ts';
import { findInstance } from '../db/repos/instances.ts';
import { BadRequest, Forbidden, NotFound, NotImplemented, Unprocessable } from '../errors.ts';
import { enqueue } from '../jobs/queue.ts';
import type { Catalog } from '../regions/catalog.ts';
import { createFromInstance } from './create-from-instance.ts';
import { isRunning } from './state.ts';

// The backups domain: what may be created, seen and deleted, by whom. Shared by HTTP and CLI;
// knows nothing of Fastify. Work that takes time is a job enqueued in the same transaction as the row.

export const COPY_JOB = 'backup.copy';
export const DELETE_JOB = 'backup.delete';

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
}

export interface BackupServiceDeps {
  db: Db;
  catalog: Catalog;
  limits: { maxPageSize: number; defaultPageSize: number };
  maxAttempts: number;
  /** Nudges the in-process worker after an enqueue (no-op when the worker runs elsewhere). */
  wakeWorker: () => void;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Object metadata that names the project owning a backup's bytes (written by Tern on every object). */
export const PROJECT_META = 'project-id';

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
    if (input.source)
      throw new NotImplemented(
        'the {"source": {"region", "id"}} form is not available yet; pass the source object URL as "location"',
      );
    const location = input.location ?? input.restoreFrom!.remoteLocation;
    const { region, driver, key } = this.deps.catalog.resolve(location);
    const head = await driver.head(key);
    if (!head) throw new NotFound(`no backup object at ${location}: it may have been deleted, or the location is mistyped`);
    const owner = head.metadata[PROJECT_META];
    if (owner !== undefined && owner !== projectId && !ctx.isAdmin) {
      throw new Forbidden(`the backup at ${location} belongs to another project`);
    }
    const version = await this.sourceDatastore(head.metadata, input.restoreFrom?.localDatastoreVersionId);
    const row = newBackupRow({
      id: randomUUID(),
      project_id: projectId,
      name: input.name,
      description: input.description ?? null,
      datastore_version_id: version.id,
      source_location: location,
      source_region: region,
      source_checksum: head.etag,
      progress_total: head.size,
    });
    await this.deps.db.kysely.transaction().execute(async (trx) => {
      await insertBackup(trx, row);
      await enqueue(trx, {
        kind: COPY_JOB,
        payload: { backupId: row.id },
        resourceId: row.id,
        maxAttempts: this.deps.maxAttempts,
      });
    });
    this.deps.wakeWorker();
    return { backup: row, datastore: version };
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
    return this.withDatastore(await this.visible(ctx, projectId, id));
  }

  async delete(ctx: AuthContext, projectId: string, id: string): Promise<void> {
    const backup = await this.visible(ctx, projectId, id);
    if (isRunning(backup.status)) {
      throw new Unprocessable(`backup ${id} is ${backup.status}; wait until it is COMPLETED or FAILED before deleting it`);
    }
    if ((await childrenOf(this.deps.db.kysely, id)).length > 0) {
      throw new Unprocessable(`backup ${id} has incremental backups based on it; delete those first`);
    }
    // Hide the row at once and remove the bytes in a job; a failed removal brings the row back as DELETE_FAILED.
    await this.deps.db.kysely.transaction().execute(async (trx) => {
      if (!(await softDeleteBackup(trx, id))) throw new NotFound(`Backup ${id} could not be found.`);
      await enqueue(trx, { kind: DELETE_JOB, payload: { backupId: id }, resourceId: id, maxAttempts: this.deps.maxAttempts });
    });
    this.deps.wakeWorker();
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

  /** The local datastore version a copied backup will restore with; it must exist here and agree with the source. */
  private async sourceDatastore(
    metadata: Record<string, string>,
    requestedVersionId: string | undefined,
  ): Promise<DatastoreVersion> {
    const db = this.deps.db.kysely;
    const sourceType = metadata.datastore;
    const sourceVersion = metadata['datastore-version'];
    if (requestedVersionId !== undefined) {
      const version = UUID.test(requestedVersionId) ? await findDatastoreVersion(db, requestedVersionId) : undefined;
      if (!version) throw new BadRequest(`datastore version ${requestedVersionId} does not exist in this region`);
      if (sourceType && sourceType !== version.datastore) {
        throw new BadRequest(
          `the source backup is a ${sourceType} backup, but datastore version ${requestedVersionId} is ${version.datastore}`,
        );
      }
      return version;
    }
    if (!sourceType || !sourceVersion) {
      throw new BadRequest(
        'the source object carries no datastore metadata (X-Object-Meta-Datastore and -Datastore-Version); use "restore_from" with "local_datastore_version_id"',
      );
    }
    const version = await findDatastoreVersionByName(db, sourceType, sourceVersion);
    if (!version) throw new BadRequest(`the source backup is ${sourceType} ${sourceVersion}, which this region does not offer`);
    return version;
  }
}
