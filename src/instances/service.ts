import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { AuthContext } from '../auth.ts';
import { runnerFor } from '../datastores/runners.ts';
import type { Db } from '../db/connect.ts';
import { nowIso } from '../db/connect.ts';
import { findBackup } from '../db/repos/backups.ts';
import { type DatastoreVersion, findDatastoreVersion, listDatastores } from '../db/repos/datastores.ts';
import {
  findInstance,
  findInstanceEvenDeleted,
  type InstanceRow,
  insertInstance,
  instancesWithServers,
  listInstances,
  transitionInstance,
  updateInstance,
} from '../db/repos/instances.ts';
import { BadRequest, Conflict, Forbidden, NotFound, Unprocessable } from '../errors.ts';
import { enqueue } from '../jobs/queue.ts';
import type { Keyring } from '../keys/keyring.ts';
import type { InstanceServers } from './registry.ts';

// The instances domain: database servers Tern runs for a project. Shared by HTTP and CLI; knows
// nothing of Fastify. Starting, restoring and removing servers are jobs enqueued with the row.

export const INSTANCE_CREATE_JOB = 'instance.create';
export const INSTANCE_DELETE_JOB = 'instance.delete';

const GB = 1024 ** 3;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** The admin user of each datastore's servers (see src/instances/*-process.ts). */
export const ADMIN_USER: Record<string, string> = { mariadb: 'root', postgresql: 'postgres' };

export interface CreateInstanceInput {
  name: string;
  datastore?: { type?: string | null; version?: string | null } | null;
  volumeSize: number;
  restorePoint?: { backupRef: string } | null;
}

export interface InstanceWithDatastore {
  instance: InstanceRow;
  datastore: DatastoreVersion | undefined;
}

export interface CreatedInstance extends InstanceWithDatastore {
  /** Shown once, in the create response; null password for a restore (the source's users come along). */
  credential: { username: string; password: string | null };
}

export interface InstanceServiceDeps {
  db: Db;
  keyring: Keyring;
  servers: InstanceServers;
  /** Folder holding one folder per instance (<dataDir>/instances). */
  instancesDir: string;
  limits: { maxPageSize: number; defaultPageSize: number };
  maxAttempts: number;
  wakeWorker: () => void;
  logger?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

export class InstanceService {
  private readonly deps: InstanceServiceDeps;
  constructor(deps: InstanceServiceDeps) {
    this.deps = deps;
  }

  async create(ctx: AuthContext, projectId: string, input: CreateInstanceInput): Promise<CreatedInstance> {
    if (!Number.isInteger(input.volumeSize) || input.volumeSize < 1) {
      throw new BadRequest('volume size must be a positive whole number of GB');
    }
    const db = this.deps.db.kysely;
    let version = await this.requestedVersion(input.datastore);
    let restoreBackupId: string | null = null;
    let wrappedPassword: { keyId: string; wrapped: string } | null = null;
    let password: string | null = null;
    if (input.restorePoint) {
      const ref = input.restorePoint.backupRef;
      const backup = UUID.test(ref) ? await findBackup(db, ref) : undefined;
      if (!backup || (backup.project_id !== projectId && !ctx.isAdmin)) throw new NotFound(`Backup ${ref} could not be found.`);
      if (backup.status !== 'COMPLETED') {
        throw new Conflict(`Backup ${ref} is ${backup.status}; only a COMPLETED backup can be restored.`);
      }
      const backupVersion = backup.datastore_version_id ? await findDatastoreVersion(db, backup.datastore_version_id) : undefined;
      if (!backupVersion) throw new BadRequest(`backup ${ref} has no datastore version this region offers`);
      if (version && (version.datastore !== backupVersion.datastore || version.id !== backupVersion.id)) {
        throw new BadRequest(
          `The datastore of backup ${ref} is ${backupVersion.datastore} ${backupVersion.name}; it cannot be restored into ${version.datastore} ${version.name}.`,
        );
      }
      version = backupVersion;
      if ((backup.size_bytes ?? 0) / GB > input.volumeSize) {
        throw new Forbidden(
          `Backup ${ref} (${((backup.size_bytes ?? 0) / GB).toFixed(2)} GB) is larger than the volume of ${input.volumeSize} GB.`,
        );
      }
      restoreBackupId = backup.id;
      // A restored server keeps the users and passwords of the backed-up one.
      const source = backup.instance_id ? await findInstanceEvenDeleted(db, backup.instance_id) : undefined;
      if (source?.wrapped_password && source.password_key_id) {
        wrappedPassword = this.deps.keyring.rewrap({ keyId: source.password_key_id, wrapped: source.wrapped_password });
      }
    }
    if (!version) version = await this.defaultVersion(undefined);
    if (!runnerFor(version.datastore)) {
      throw new BadRequest(`this region cannot run ${version.datastore} instances (it offers mariadb and postgresql)`);
    }
    if (!restoreBackupId) {
      password = randomBytes(18).toString('base64url');
      wrappedPassword = this.deps.keyring.wrap(password);
    }
    const id = randomUUID();
    const now = nowIso();
    const row: InstanceRow = {
      id,
      project_id: projectId,
      name: input.name,
      status: 'BUILD',
      datastore_version_id: version.id,
      volume_size: input.volumeSize,
      host: null,
      port: null,
      data_dir: join(this.deps.instancesDir, id),
      pid: null,
      fail_reason: null,
      created_at: now,
      updated_at: now,
      deleted_at: null,
      admin_user: ADMIN_USER[version.datastore],
      wrapped_password: wrappedPassword?.wrapped ?? null,
      password_key_id: wrappedPassword?.keyId ?? null,
      restore_backup_id: restoreBackupId,
    };
    await db.transaction().execute(async (trx) => {
      await insertInstance(trx, row);
      await enqueue(trx, {
        kind: INSTANCE_CREATE_JOB,
        payload: { instanceId: id },
        resourceId: id,
        maxAttempts: this.deps.maxAttempts,
      });
    });
    this.deps.wakeWorker();
    return { instance: row, datastore: version, credential: { username: ADMIN_USER[version.datastore], password } };
  }

  async list(
    _ctx: AuthContext,
    input: { projectId: string; limit?: number; marker?: string },
  ): Promise<{ items: InstanceWithDatastore[]; nextMarker?: string }> {
    const limit = input.limit ?? this.deps.limits.defaultPageSize;
    if (!Number.isInteger(limit) || limit < 1 || limit > this.deps.limits.maxPageSize) {
      throw new BadRequest(`limit must be a whole number from 1 to ${this.deps.limits.maxPageSize}`);
    }
    if (input.marker !== undefined) {
      const marker = UUID.test(input.marker) ? await findInstance(this.deps.db.kysely, input.marker) : undefined;
      if (!marker || marker.project_id !== input.projectId) {
        throw new BadRequest(`marker ${input.marker} is not the id of an instance in this listing`);
      }
    }
    const rows = await listInstances(this.deps.db.kysely, { projectId: input.projectId, markerId: input.marker, limit });
    const page = rows.slice(0, limit);
    const items = await Promise.all(page.map((r) => this.withDatastore(r)));
    return { items, nextMarker: rows.length > limit ? page[page.length - 1].id : undefined };
  }

  async get(ctx: AuthContext, projectId: string, id: string): Promise<InstanceWithDatastore> {
    return this.withDatastore(await this.visible(ctx, projectId, id));
  }

  /** Trove's DELETE: SHUTDOWN now, the server stopped and its folder removed by a job. */
  async delete(ctx: AuthContext, projectId: string, id: string): Promise<void> {
    const instance = await this.visible(ctx, projectId, id);
    if (instance.status === 'SHUTDOWN') return;
    if (instance.status === 'BUILD' || instance.status === 'BACKUP') {
      throw new Unprocessable(`Instance ${id} is ${instance.status}; wait until it is ACTIVE or ERROR before deleting it.`);
    }
    await this.deps.db.kysely.transaction().execute(async (trx) => {
      if (!(await transitionInstance(trx, id, 'SHUTDOWN'))) {
        throw new Unprocessable(`Instance ${id} changed state meanwhile; try again.`);
      }
      await enqueue(trx, {
        kind: INSTANCE_DELETE_JOB,
        payload: { instanceId: id },
        resourceId: id,
        maxAttempts: this.deps.maxAttempts,
      });
    });
    this.deps.wakeWorker();
  }

  /**
   * At start-up: re-attaches to the servers of ACTIVE (and BACKUP) instances, restarting those
   * that stopped while Tern was down; one that cannot be brought back goes to ERROR with the reason.
   */
  async adoptServers(): Promise<void> {
    const db = this.deps.db.kysely;
    for (const row of await instancesWithServers(db)) {
      if (!row.data_dir) continue;
      try {
        const server = await this.deps.servers.adopt(row.id, row.data_dir);
        if (server.port !== row.port || server.pid !== row.pid) {
          await updateInstance(db, row.id, { host: server.host, port: server.port, pid: server.pid });
        }
        this.deps.logger?.info({ instanceId: row.id, port: server.port }, 'instance server adopted');
      } catch (err) {
        const reason = `the server could not be restarted: ${(err as Error).message}`;
        await transitionInstance(db, row.id, 'ERROR', { fail_reason: reason.slice(0, 500) });
        this.deps.logger?.warn({ instanceId: row.id, reason }, 'instance server not adopted');
      }
    }
  }

  /** The instance if the caller may see it; another project's is reported as not found. */
  private async visible(ctx: AuthContext, projectId: string, id: string): Promise<InstanceRow> {
    const row = UUID.test(id) ? await findInstance(this.deps.db.kysely, id) : undefined;
    if (!row || (row.project_id !== projectId && !ctx.isAdmin)) throw new NotFound(`Instance ${id} could not be found.`);
    return row;
  }

  private async withDatastore(instance: InstanceRow): Promise<InstanceWithDatastore> {
    return { instance, datastore: await findDatastoreVersion(this.deps.db.kysely, instance.datastore_version_id) };
  }

  /** Trove's lookup: datastore by name or id, version by name or id, or the datastore's default. */
  private async requestedVersion(ds: CreateInstanceInput['datastore']): Promise<DatastoreVersion | undefined> {
    if (!ds?.type) {
      if (ds?.version) throw new BadRequest('give datastore.type along with datastore.version');
      return undefined;
    }
    return this.defaultVersion(ds);
  }

  private async defaultVersion(ds: CreateInstanceInput['datastore'] | undefined): Promise<DatastoreVersion> {
    const stores = await listDatastores(this.deps.db.kysely);
    const type = ds?.type ?? 'mariadb';
    const store = stores.find((s) => s.name === type || s.id === type);
    if (!store) throw new NotFound(`Datastore '${type}' cannot be found.`);
    const wanted = ds?.version ?? store.default_version_id;
    const v = store.versions.find((x) => x.id === wanted || x.name === wanted);
    if (v?.active !== 1) throw new NotFound(`Datastore version '${wanted}' cannot be found.`);
    const version = await findDatastoreVersion(this.deps.db.kysely, v.id);
    if (!version) throw new NotFound(`Datastore version '${wanted}' cannot be found.`);
    return version;
  }
}
