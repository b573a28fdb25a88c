import { randomUUID } from 'node:crypto';
import type { AuthContext } from '../auth.ts';
import type { Db } from '../db/connect.ts';
import { type BackupRow, findReusableParent, insertBackup, lockBackup, newBackupRow } from '../db/repos/backups.ts';
import { type DatastoreVersion, findDatastoreVersion, findDatastoreVersionByName } from '../db/repos/datastores.ts';
import { BadRequest, Conflict, Forbidden } from '../errors.ts';
import { enqueue } from '../jobs/queue.ts';
import type { Keyring, Wrapped } from '../keys/keyring.ts';
import type { Catalog } from '../regions/catalog.ts';
import type { SourceRegionApi } from '../regions/source-api.ts';
import { COPY_JOB } from './jobs.ts';
import { type InspectedSource, inspectSource, trustedLocation } from './location.ts';
import { envelopeOf } from './object-names.ts';
import type { BackupQuota } from './quota.ts';
import type { BackupWithDatastore, CreateBackupInput } from './service.ts';

// The three ways to ask for a copy -- the blueprint's "location", Trove's "restore_from" and Tern's
// {"source": {"region", "id"}} -- turned into the same thing: backup rows in NEW and one
// 'backup.copy' job, written in one transaction after every check passed (trust, ownership,
// completeness, datastore, keys), so a refusal leaves nothing behind and opens no connection to
// an untrusted host.
//
// Incremental chains: the parents of the requested backup are copied too, oldest first, unless
// this region already has a backup with the parent's checksum (then that one is the parent). Each
// new row's job is enqueued only once its parent is COMPLETED (by the parent's copy task), so a
// chain never holds a worker waiting.
//
// Two identical requests make two independent backups (own ids, own objects); only parents are
// shared. That keeps each request's outcome its own: a DELETE or failure of one never touches the other.

export interface CopyRequestDeps {
  db: Db;
  catalog: Catalog;
  keyring: Keyring;
  sourceApi: SourceRegionApi;
  quota: BackupQuota;
  maxAttempts: number;
  wakeWorker: () => void;
}

/** One backup of the chain, checked and ready to become a row. */
interface PlannedCopy {
  source: InspectedSource;
  version: DatastoreVersion;
  sourceBackupId: string | null;
  encryption: Wrapped | null;
  parent: ParentRef | null;
}

type ParentRef = { kind: 'api'; region: string; id: string } | { kind: 'location'; location: string; checksum?: string };

const MAX_CHAIN = 64;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class CopyRequests {
  private readonly deps: CopyRequestDeps;
  constructor(deps: CopyRequestDeps) {
    this.deps = deps;
  }

  async create(ctx: AuthContext, projectId: string, input: CreateBackupInput): Promise<BackupWithDatastore> {
    const requested = await this.plan(ctx, projectId, input);
    // Walk up the chain until a parent this region already has (or the full backup at the root).
    const chain: PlannedCopy[] = [requested];
    const seen = new Set([requested.source.head.etag]);
    let attachTo: BackupRow | undefined;
    for (let cur = requested; cur.parent; ) {
      if (chain.length >= MAX_CHAIN) throw new BadRequest(`the backup's chain of parents is longer than ${MAX_CHAIN}`);
      const parent = await this.planParent(ctx, projectId, cur);
      if (seen.has(parent.source.head.etag)) throw new BadRequest('the backup chain loops (a parent names a descendant)');
      seen.add(parent.source.head.etag);
      attachTo = await findReusableParent(this.deps.db.kysely, projectId, parent.source.head.etag);
      if (attachTo) break;
      chain.push(parent);
      cur = parent;
    }
    const rows = chain.reverse().map((p, i) =>
      newBackupRow({
        id: randomUUID(),
        project_id: projectId,
        name: i === chain.length - 1 ? input.name : `${input.name} (parent ${chain.length - 1 - i})`,
        description: i === chain.length - 1 ? (input.description ?? null) : `parent copied for ${input.name}`,
        datastore_version_id: p.version.id,
        source_location: p.source.location,
        source_region: p.source.region,
        source_backup_id: p.sourceBackupId,
        source_checksum: p.source.head.etag,
        // The real size, known from the source; Trove's restore_from size is only an estimate.
        size_bytes: p.source.head.size,
        progress_total: p.source.head.size,
        incremental: p.parent ? 1 : 0,
        encryption_key_id: p.encryption?.keyId ?? null,
        wrapped_passphrase: p.encryption?.wrapped ?? null,
      }),
    );
    for (let i = 1; i < rows.length; i++) rows[i].parent_id = rows[i - 1].id;
    if (attachTo) rows[0].parent_id = attachTo.id;

    const { db, maxAttempts, quota } = this.deps;
    await db.kysely.transaction().execute(async (trx) => {
      // Every row counts: parents copied along are backups the project holds too.
      await quota.reserve(trx, projectId, rows.length);
      // Locked so the parent cannot complete unseen between this check and our commit: either it
      // is COMPLETED now and we enqueue, or its copy task sees our row and enqueues it.
      const parent = attachTo ? await lockBackup(trx, attachTo.id, db.dialect) : undefined;
      if (attachTo && (!parent || parent.status === 'FAILED' || parent.status === 'DELETE_FAILED')) {
        throw new Conflict(`the copy of a parent of this backup (${attachTo.id}) just failed or was deleted; try again`);
      }
      for (const row of rows) await insertBackup(trx, row);
      if (!parent || parent.status === 'COMPLETED') {
        await enqueue(trx, { kind: COPY_JOB, payload: { backupId: rows[0].id }, resourceId: rows[0].id, maxAttempts });
      }
    });
    this.deps.wakeWorker();
    return { backup: rows[rows.length - 1], datastore: requested.version };
  }

  /** The requested backup, by whichever form the caller used. */
  private async plan(ctx: AuthContext, projectId: string, input: CreateBackupInput): Promise<PlannedCopy> {
    if (input.source) return this.planFromApi(ctx, projectId, input.source.region, input.source.id);
    const location = input.location ?? input.restoreFrom!.remoteLocation;
    const source = await inspectSource(this.deps.catalog, location, projectId);
    const version = await this.datastoreOf(source.head.metadata, input.restoreFrom?.localDatastoreVersionId);
    const encryption = this.rewrap(envelopeOf(source.head.metadata), `the backup at ${location}`);
    return { source, version, sourceBackupId: null, encryption, parent: parentOfObject(source) };
  }

  private async planParent(ctx: AuthContext, projectId: string, child: PlannedCopy): Promise<PlannedCopy> {
    const ref = child.parent!;
    const parent =
      ref.kind === 'api'
        ? await this.planFromApi(ctx, projectId, ref.region, ref.id)
        : await this.planFromLocation(projectId, ref.location, ref.checksum);
    if (parent.version.datastore !== child.version.datastore) {
      throw new BadRequest(
        `the parent of the backup is a ${parent.version.datastore} backup, the backup ${child.version.datastore}`,
      );
    }
    return parent;
  }

  private async planFromLocation(projectId: string, location: string, checksum?: string): Promise<PlannedCopy> {
    const source = await inspectSource(this.deps.catalog, location, projectId);
    if (checksum && checksum !== source.head.etag) {
      throw new BadRequest(`the parent backup at ${location} has changed: its checksum is not the one its child records`);
    }
    const version = await this.datastoreOf(source.head.metadata, undefined);
    const encryption = this.rewrap(envelopeOf(source.head.metadata), `the parent backup at ${location}`);
    return { source, version, sourceBackupId: null, encryption, parent: parentOfObject(source) };
  }

  /** Asks the source region's API for the backup, then checks its bytes as for a location. */
  private async planFromApi(ctx: AuthContext, projectId: string, region: string, id: string): Promise<PlannedCopy> {
    if (region === this.deps.catalog.regions()[0]?.region) {
      throw new BadRequest(`region ${region} is this region; a copy comes from another region`);
    }
    const remote = await this.deps.sourceApi.getBackup(region, projectId, id, ctx.token);
    if (remote.projectId !== projectId) throw new Forbidden(`backup ${id} in region ${region} belongs to another project`);
    if (remote.status !== 'COMPLETED' || !remote.location || !remote.checksum) {
      throw new BadRequest(`backup ${id} in region ${region} is ${remote.status}; only a COMPLETED backup can be copied`);
    }
    const trusted = trustedLocation(this.deps.catalog, remote.location);
    if (trusted.region !== region) {
      throw new BadRequest(`region ${region} keeps backup ${id} outside its storage in this region's catalog`);
    }
    // The source API answered this caller's token for this project: that is proof of ownership.
    const source = await inspectSource(this.deps.catalog, remote.location, projectId, { vouched: true });
    if (source.head.etag !== remote.checksum) {
      throw new BadRequest(`backup ${id} in region ${region}: the stored object does not have the checksum its record shows`);
    }
    const metadata = { ...source.head.metadata };
    if (remote.datastore) {
      metadata.datastore = remote.datastore.type;
      metadata['datastore-version'] = remote.datastore.version;
    }
    return {
      source,
      version: await this.datastoreOf(metadata, undefined),
      sourceBackupId: remote.id,
      encryption: this.rewrap(remote.encryption ?? envelopeOf(source.head.metadata), `backup ${remote.id} in region ${region}`),
      parent: remote.parentId ? { kind: 'api', region, id: remote.parentId } : null,
    };
  }

  /** The passphrase re-wrapped under this region's key (the bytes stay as they are); refused now if we cannot open it. */
  private rewrap(envelope: Wrapped | null, what: string): Wrapped | null {
    if (!envelope) return null;
    const { keyring } = this.deps;
    if (!keyring.has(envelope.keyId)) {
      throw new BadRequest(
        `${what} is encrypted under key ${envelope.keyId}, which this region does not hold; add that key to the catalog entry of its region`,
      );
    }
    return keyring.rewrap(envelope);
  }

  /** The local datastore version a copied backup will restore with; it must exist here and agree with the source. */
  private async datastoreOf(metadata: Record<string, string>, requestedVersionId: string | undefined): Promise<DatastoreVersion> {
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

/** Trove's Parent-Location / Parent-Checksum object metadata, if the object is incremental. */
function parentOfObject(source: InspectedSource): ParentRef | null {
  const location = source.head.metadata['parent-location'];
  if (!location) return null;
  return { kind: 'location', location, checksum: source.head.metadata['parent-checksum'] || undefined };
}
