import { setTimeout as sleep } from 'node:timers/promises';
import type { Db } from '../../db/connect.ts';
import { finishedParts, recordPart } from '../../db/repos/transfer-parts.ts';
import { IntegrityError, isTransient, TernError } from '../../errors.ts';
import type { ObjectMetadata, PutResult, SegmentInfo, StorageDriver } from '../../storage/driver.ts';
import { segmentKey } from '../../storage/keys.ts';

// Copies a large object segment by segment, N at a time. Each segment is streamed from the source
// straight into the target with its expected MD5 and size, so the target refuses bad bytes; each
// finished segment is recorded, and that record is the resume point of a retried job.

export interface SegmentCopy {
  db: Db;
  backupId: string;
  /** Source region name, for messages. */
  region: string;
  source: StorageDriver;
  target: StorageDriver;
  segments: SegmentInfo[];
  parallelism: number;
  /**
   * An earlier run of this copy may have stored segments it died before recording; each one is
   * looked up in the target before it is sent again.
   */
  resuming: boolean;
  /** Retries of one segment after a transient error (5xx, reset, timeout), with backoff. */
  retries?: number;
  signal: AbortSignal;
  /** Called after each segment is safely in the target (copied now or found from an earlier run). */
  onSegmentDone(size: number, copied: boolean): Promise<void>;
}

/** Copies every segment not already in the target; returns the target's segment list for the manifest. */
export async function copySegments(c: SegmentCopy): Promise<SegmentInfo[]> {
  const recorded = new Map((await finishedParts(c.db.kysely, c.backupId)).map((p) => [p.part_number, p]));
  const total = c.segments.length;
  const planned = c.segments.map((seg, i) => ({ n: i + 1, seg, key: segmentKey(c.backupId, i + 1) }));
  await runBounded(planned, c.parallelism, c.signal, async ({ n, seg, key }, signal, stopped) => {
    const part = recorded.get(n);
    const isRecorded = part?.key === key && part.etag === seg.etag && part.size === seg.size;
    if (isRecorded || c.resuming) {
      // Trust an earlier run only if the target holds exactly these bytes: every segment put here
      // carries the source's MD5, which the target checked when it stored them.
      const there = await c.target.head(key, signal);
      if (there && there.etag === seg.etag && there.size === seg.size) {
        if (!isRecorded) await record(c, n, key, seg);
        await c.onSegmentDone(seg.size, false);
        return;
      }
    }
    for (let attempt = 0; ; attempt++) {
      try {
        await copyOne(c, seg, key, signal);
        break;
      } catch (err) {
        if (!isTransient(err) || attempt >= (c.retries ?? 0) || stopped.aborted) {
          throw withContext(err, `copying segment ${n} of ${total} from ${c.region}`);
        }
        // A blip on one segment should not send the whole job back to the queue.
        await sleep(Math.min(SEGMENT_BACKOFF_MAX_MS, SEGMENT_BACKOFF_MS * 2 ** attempt), undefined, { signal: stopped });
      }
    }
    await record(c, n, key, seg);
    await c.onSegmentDone(seg.size, true);
  });
  return planned.map(({ key, seg }) => ({ key, size: seg.size, etag: seg.etag }));
}

function record(c: SegmentCopy, n: number, key: string, seg: SegmentInfo): Promise<void> {
  return recordPart(c.db.kysely, { backup_id: c.backupId, part_number: n, key, size: seg.size, etag: seg.etag });
}

const SEGMENT_BACKOFF_MS = 250;
const SEGMENT_BACKOFF_MAX_MS = 5000;

/** One segment, streamed from source to target with its expected MD5 and size. */
async function copyOne(c: SegmentCopy, seg: SegmentInfo, key: string, signal: AbortSignal): Promise<void> {
  const body = await c.source.getSegment(seg, { signal });
  // Its errors reach us through the PUT; an abort before the PUT reads must not go unheard.
  body.on('error', () => {});
  try {
    await c.target.put(key, body, { md5: seg.etag, size: seg.size, signal });
  } finally {
    // A PUT that failed before reading must not leave the source stream open.
    body.destroy();
  }
}

/** Publishes the manifest and checks it has the source's checksum. */
export async function putVerifiedManifest(
  target: StorageDriver,
  key: string,
  segments: SegmentInfo[],
  expected: { etag: string; size: number },
  options: { metadata: ObjectMetadata; signal: AbortSignal },
): Promise<PutResult> {
  const result = await target.putManifest(key, segments, options);
  if (result.etag !== expected.etag || result.size !== expected.size) {
    throw new IntegrityError(
      `checksum mismatch on the copied manifest: expected ${expected.etag} (${expected.size} bytes), got ${result.etag} (${result.size} bytes)`,
    );
  }
  return result;
}

/**
 * Runs work over items with at most `limit` at once. The first failure stops new work and aborts
 * `stopped` (no more retries or waits) but not the `signal` of work in flight: an upload cut off
 * after its last byte may still be stored once we have cleaned up, so a failing copy lets the
 * uploads it has started end before it reports. An outside abort (cancel, shutdown, lost lease)
 * aborts both. The call settles only when nothing is running any more.
 */
export async function runBounded<T>(
  items: readonly T[],
  limit: number,
  signal: AbortSignal,
  work: (item: T, signal: AbortSignal, stopped: AbortSignal) => Promise<void>,
): Promise<void> {
  signal.throwIfAborted();
  const controller = new AbortController();
  const forward = () => controller.abort(signal.reason);
  signal.addEventListener('abort', forward, { once: true });
  let next = 0;
  let failed = false;
  let firstError: unknown;
  const worker = async () => {
    while (!failed && !controller.signal.aborted && next < items.length) {
      const item = items[next++];
      try {
        await work(item, signal, controller.signal);
      } catch (err) {
        if (!failed) {
          failed = true;
          firstError = err;
          controller.abort(err);
        }
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  } finally {
    signal.removeEventListener('abort', forward);
  }
  // An outside abort (cancel, shutdown, lost lease) is reported as such, not as the AbortError it caused.
  signal.throwIfAborted();
  if (failed) throw firstError;
}

/** The same kind of error (so retry rules still apply) with where it happened in front. */
export function withContext(err: unknown, where: string): unknown {
  if (!(err instanceof TernError)) return err;
  const Kind = err.constructor as new (message: string, options?: { cause?: unknown }) => TernError;
  const what = err instanceof IntegrityError ? 'checksum or size mismatch ' : '';
  return new Kind(`${what}${where}: ${err.message}`, { cause: err });
}
