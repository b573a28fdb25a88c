import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { Db } from '../../db/connect.ts';
import { type BackupRow, findBackup, transitionBackup, updateBackupProgress, waitingChildren } from '../../db/repos/backups.ts';
import { forgetParts } from '../../db/repos/transfer-parts.ts';
import { BadRequest, Cancelled, Conflict, IntegrityError, ObjectNotFound, OverLimit } from '../../errors.ts';
import { enqueue } from '../../jobs/queue.ts';
import { oneLine } from '../../jobs/reason.ts';
import type { JobHandler } from '../../jobs/types.ts';
import type { Catalog } from '../../regions/catalog.ts';
import type { ObjectInfo, ObjectMetadata, PutResult, SegmentInfo, StorageDriver } from '../../storage/driver.ts';
import { createProgressStream } from '../../streams/progress.ts';
import { removeBackupObjects } from '../backup-objects.ts';
import { COPY_JOB } from '../jobs.ts';
import { envelopeMetadata, KEY_ID_META, PROJECT_META, targetKeyFor, WRAPPED_META } from '../object-names.ts';
import { copyParts } from './copy-parts.ts';
import { copySegments, putVerifiedManifest, withContext } from './copy-segments.ts';
import { enqueueSweep } from './sweep.ts';

// The 'backup.copy' job: creates a backup in this region from a backup object in a trusted
// region's storage. A segmented source is copied segment by segment (copy-segments.ts), a plain
// one larger than the part size in ranged parts (copy-parts.ts), a small plain one in one PUT.
// Safe to run again: finished segments and parts are recorded and skipped, and a finished backup
// is left alone. On final failure (onGiveUp) everything written is removed, and a 'backup.sweep'
// job looks again a minute later for uploads the store committed after that.

export interface CopyTaskDeps {
  db: Db;
  catalog: Catalog;
  /** This region's storage. */
  target: StorageDriver;
  /** Segments (or ranged parts) copied at once. */
  parallelism: number;
  /** A plain source object larger than this is copied in ranged parts of this size (copy-parts.ts). */
  partSize?: number;
  /** Retries of one segment after a transient error, with backoff, before the job attempt fails. */
  segmentRetries?: number;
  /** Attempts of the jobs this task enqueues (children's copies, the sweep after a failure). */
  maxAttempts?: number;
  /** How long after a failed or cancelled copy's cleanup a second one runs (sweep.ts; default a minute). */
  sweepDelayMs?: number;
  logger?: Pick<Logger, 'info' | 'warn'>;
}

export interface CopyPayload {
  backupId: string;
}

const DEFAULT_PART_SIZE = 64 * 1024 * 1024;
const DONE_STATUSES = new Set(['COMPLETED', 'FAILED', 'DELETE_FAILED']);
const CLEANUP_TIMEOUT_MS = 120_000;

export function copyBackupTask(deps: CopyTaskDeps): JobHandler<CopyPayload> {
  const { db, catalog, target, logger } = deps;
  const parallelism = Math.max(1, Math.floor(deps.parallelism));
  const partSize = Math.max(1, Math.floor(deps.partSize ?? DEFAULT_PART_SIZE));

  async function run({ backupId }: CopyPayload, signal: AbortSignal): Promise<void> {
    const row = await findBackup(db.kysely, backupId);
    // A crash between COMPLETED and the end of the job must not leave children waiting forever.
    if (row?.status === 'COMPLETED') await releaseChildren(backupId);
    if (!row || DONE_STATUSES.has(row.status)) return;
    if (!row.source_location) throw new BadRequest(`backup ${backupId} has no source location to copy from`);
    // Already BUILDING: an earlier run of this job (retried, or reclaimed from a dead worker) wrote.
    const resuming = row.status === 'BUILDING';
    if (!(await transitionBackup(db.kysely, backupId, 'BUILDING'))) return;

    const { region, driver: source, key: sourceKey } = catalog.resolve(row.source_location);
    const head = await source.head(sourceKey, signal);
    if (!head) throw new ObjectNotFound(`source backup object ${row.source_location} not found in ${region}`);
    if (row.source_checksum && row.source_checksum !== head.etag) {
      throw new IntegrityError(
        `source backup object in ${region} changed since the copy was requested: checksum was ${row.source_checksum}, is ${head.etag}`,
      );
    }
    const targetKey = targetKeyFor(sourceKey, backupId);
    const metadata: ObjectMetadata = {
      ...head.metadata,
      [PROJECT_META]: row.project_id,
      ...(await parentMetadata(row)),
      // The source's envelope is under the source region's key; the copy carries ours.
      ...envelopeMetadata(row.encryption_key_id, row.wrapped_passphrase),
    };
    if (!row.wrapped_passphrase) {
      delete metadata[KEY_ID_META];
      delete metadata[WRAPPED_META];
    }
    if (!row.parent_id) {
      delete metadata['parent-location'];
      delete metadata['parent-checksum'];
    }
    const progress = progressReporter(db, backupId, head.size, logger);
    await progress.report();

    const segments = await source.segments(sourceKey, signal);
    const inParts = !segments && head.size > partSize;
    // Ranged parts fit the target by construction (planParts); the other shapes are checked here.
    if (!inParts) await checkLimits(segments, head.size);
    let result: PutResult;
    if (inParts) {
      result = await copyParts({
        db,
        backupId,
        region,
        source,
        sourceKey,
        head,
        target,
        targetKey,
        partSize,
        parallelism,
        retries: deps.segmentRetries ?? 0,
        metadata,
        signal,
        onPartDone: (size, fresh) => progress.add(size, fresh),
      });
    } else if (segments) {
      const copied = await copySegments({
        db,
        backupId,
        region,
        source,
        target,
        segments,
        parallelism,
        resuming,
        retries: deps.segmentRetries ?? 0,
        signal,
        onSegmentDone: (size, fresh) => progress.add(size, fresh),
      });
      result = await putVerifiedManifest(target, targetKey, copied, head, { metadata, signal });
    } else {
      result = await copyPlain({ source, sourceKey, head, targetKey, region }, metadata, progress, signal);
    }

    let completed = false;
    await db.kysely.transaction().execute(async (trx) => {
      completed = await transitionBackup(trx, backupId, 'COMPLETED', {
        location: target.locationOf(targetKey),
        size_bytes: result.size,
        checksum: result.etag,
        source_checksum: head.etag,
        source_region: row.source_region ?? region,
        metadata: JSON.stringify(metadata),
        progress_done: result.size,
        progress_total: result.size,
        fail_reason: null,
      });
      // Incremental children wait for their parent; they start now, in the same transaction.
      if (completed) await releaseChildren(backupId, trx);
    });
    await forgetParts(db.kysely, backupId);
    if (!completed) {
      // Deleted or failed by someone else while we copied: what we wrote belongs to no backup.
      const now = await findBackup(db.kysely, backupId);
      if (now?.status !== 'COMPLETED') await removeWritten(backupId);
      logger?.warn({ backupId, status: now?.status ?? 'deleted' }, 'backup moved away while copying; copy discarded');
      return;
    }
    logger?.info({ backupId, region, bytes: result.size, segments: segments?.length ?? 0, inParts }, 'backup copied');
  }

  /** Parent-Location and Parent-Checksum pointing at this region's copy of the parent, so the chain restores here. */
  async function parentMetadata(row: BackupRow): Promise<ObjectMetadata> {
    if (!row.parent_id) return {};
    const parent = await findBackup(db.kysely, row.parent_id);
    if (parent?.status !== 'COMPLETED' || !parent.location || !parent.checksum) {
      throw new Conflict(`the parent backup ${row.parent_id} is ${parent?.status ?? 'deleted'}, not COMPLETED`);
    }
    return { 'parent-location': parent.location, 'parent-checksum': parent.checksum };
  }

  /** Enqueues the copy jobs of children that waited for this backup (idempotent: only those without a job). */
  async function releaseChildren(parentId: string, trx: Db['kysely'] = db.kysely): Promise<void> {
    for (const child of await waitingChildren(trx, parentId)) {
      await enqueue(trx, {
        kind: COPY_JOB,
        payload: { backupId: child.id },
        resourceId: child.id,
        maxAttempts: deps.maxAttempts,
      });
    }
  }

  /** Children waiting for a copy that failed can never start: they fail too, with the reason. */
  async function failDescendants(parentId: string, reason: string): Promise<void> {
    for (const child of await waitingChildren(db.kysely, parentId)) {
      const why = `the copy of its parent backup ${parentId} failed: ${reason}`;
      if (await transitionBackup(db.kysely, child.id, 'FAILED', { fail_reason: oneLine(new Error(why)) })) {
        await failDescendants(child.id, reason);
      }
    }
  }

  /** Fails before copying anything when the target could not hold the object as the source splits it. */
  async function checkLimits(segments: SegmentInfo[] | null, size: number): Promise<void> {
    const { maxSegmentSize, maxManifestSegments } = await target.limits();
    const largest = segments ? Math.max(0, ...segments.map((s) => s.size)) : size;
    if (largest > maxSegmentSize) {
      throw new OverLimit(
        `the source has a ${segments ? 'segment' : 'single object'} of ${largest} bytes; this region's storage takes at most ${maxSegmentSize} bytes in one piece`,
      );
    }
    if (segments && segments.length > maxManifestSegments) {
      throw new OverLimit(
        `the source has ${segments.length} segments; this region's storage joins at most ${maxManifestSegments} in one manifest`,
      );
    }
  }

  /** Plain (single) object: one streamed PUT checked against the source's MD5 and size. */
  async function copyPlain(
    c: { source: StorageDriver; sourceKey: string; head: ObjectInfo; targetKey: string; region: string },
    metadata: ObjectMetadata,
    progress: Progress,
    signal: AbortSignal,
  ): Promise<PutResult> {
    try {
      const body = await c.source.get(c.sourceKey, { signal });
      const counted = progress.counter();
      // Errors on either side reach the PUT through the destroyed counter stream.
      pipeline(body, counted).catch(() => {});
      try {
        const result = await target.put(c.targetKey, counted, { md5: c.head.etag, size: c.head.size, metadata, signal });
        await progress.settled();
        return result;
      } finally {
        // A PUT that failed before reading must not leave the source stream (and its handle) open.
        counted.destroy();
      }
    } catch (err) {
      signal.throwIfAborted();
      throw withContext(err, `copying ${c.sourceKey} from ${c.region}`);
    }
  }

  /** Removes the manifest and every segment written for this backup. Returns the keys it could not remove. */
  async function removeWritten(backupId: string): Promise<string[]> {
    const { missed } = await removeBackupObjects(target, backupId, AbortSignal.timeout(CLEANUP_TIMEOUT_MS));
    for (const { key, error } of missed) {
      logger?.warn({ backupId, key, err: oneLine(error) }, 'could not remove an object of a failed copy');
    }
    return missed.map((m) => m.key);
  }

  return {
    run: (payload, ctx) => run(payload, ctx.signal),

    async onGiveUp({ backupId }, error) {
      try {
        const missed = await removeWritten(backupId);
        if (missed.length > 0) logger?.warn({ backupId, missed }, 'failed copy left objects behind');
      } catch (err) {
        logger?.warn({ backupId, err: oneLine(err) }, 'could not list the objects of a failed copy');
      }
      await forgetParts(db.kysely, backupId);
      const reason = error instanceof Cancelled ? `copy cancelled: ${oneLine(error)}` : oneLine(error);
      await db.kysely.transaction().execute(async (trx) => {
        await transitionBackup(trx, backupId, 'FAILED', { fail_reason: reason, progress_rate: null });
        // An upload aborted after its last byte left may still be stored after the cleanup above.
        await enqueueSweep(trx, backupId, { delayMs: deps.sweepDelayMs, maxAttempts: deps.maxAttempts });
      });
      await failDescendants(backupId, reason);
      logger?.warn({ backupId, reason }, 'backup copy failed');
    },
  };
}

type Progress = ReturnType<typeof progressReporter>;

/** Progress in the row: bytes done of total, and the rate of bytes actually sent in this run. */
function progressReporter(db: Db, backupId: string, total: number, logger?: CopyTaskDeps['logger']) {
  const started = Date.now();
  let done = 0;
  let sent = 0;
  // Updates go one after another, so an older figure never lands after a newer one.
  let chain: Promise<void> = Promise.resolve();
  const report = () => {
    const seconds = (Date.now() - started) / 1000;
    const rate = sent > 0 && seconds > 0 ? Math.round(sent / seconds) : null;
    const figures = { done, total, rate };
    const next = chain.then(() => updateBackupProgress(db.kysely, backupId, figures));
    chain = next.catch(() => {});
    return next;
  };
  return {
    report,
    /** After each finished part; parts are large, so one row update per part is cheap. */
    add(bytes: number, fresh: boolean): Promise<void> {
      done += bytes;
      if (fresh) sent += bytes;
      return report();
    },
    /** A pass-through that reports bytes as they stream (throttled); a failed update only logs. */
    counter() {
      const base = done;
      return createProgressStream({
        onProgress: (bytes) => {
          sent += bytes - (done - base);
          done = base + bytes;
          report().catch((err) => logger?.warn({ backupId, err: oneLine(err) }, 'could not record copy progress'));
        },
      });
    },
    settled: () => chain,
  };
}
