import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Db } from '../../db/connect.ts';
import { finishedParts, forgetParts, recordPart } from '../../db/repos/transfer-parts.ts';
import { IntegrityError, isTransient, OverLimit } from '../../errors.ts';
import type { ObjectInfo, ObjectMetadata, PutResult, SegmentInfo, StorageDriver } from '../../storage/driver.ts';
import { segmentKey } from '../../storage/keys.ts';
import { runBounded, withContext } from './copy-segments.ts';

// Copies one plain (non-segmented) source object larger than the part size in ranged parts: each
// part is a ranged GET streamed into a target segment "<id>_%08d", N at a time, and each finished
// part is recorded in transfer_parts, the resume point of a retried job.
//
// A plain object's ETag is the MD5 of all its bytes, and MD5s of parts cannot be combined into it.
// So once every part is in place the target segments are read back in order (local traffic, not
// the cross-region link) and their MD5 compared with the source's ETag; only then is the manifest
// published, so nothing is visible under the backup's key before the whole is proven equal. Each
// ranged GET is conditional on the source's ETag, so a source replaced mid-copy fails the copy at
// its next part; the final check would catch it too, after the rest had crossed regions.

export interface PartCopy {
  db: Db;
  backupId: string;
  /** Source region name, for messages. */
  region: string;
  source: StorageDriver;
  sourceKey: string;
  /** The source's HEAD: size, and ETag = MD5 of its bytes. */
  head: ObjectInfo;
  target: StorageDriver;
  targetKey: string;
  /** Wanted bytes per part; raised when the target could not join that many parts. */
  partSize: number;
  parallelism: number;
  /** Retries of one part after a transient error, with backoff. */
  retries?: number;
  metadata: ObjectMetadata;
  signal: AbortSignal;
  /** Called after each part is safely in the target (copied now or found from an earlier run). */
  onPartDone(size: number, copied: boolean): Promise<void>;
}

export interface PlannedPart {
  /** 1-based, as the segment number. */
  n: number;
  start: number;
  /** Inclusive. */
  end: number;
}

const PART_BACKOFF_MS = 250;
const PART_BACKOFF_MAX_MS = 5000;

/** Byte ranges of `size` bytes in parts of `partSize` (the last one shorter), within the target's limits. */
export function planParts(
  size: number,
  partSize: number,
  limits: { maxSegmentSize: number; maxManifestSegments: number },
): PlannedPart[] {
  if (!Number.isSafeInteger(size) || size <= 0) throw new IntegrityError(`cannot cut an object of ${size} bytes into parts`);
  // Bigger parts rather than a manifest the target refuses.
  const part = Math.max(Math.floor(partSize), Math.ceil(size / limits.maxManifestSegments));
  if (part > limits.maxSegmentSize) {
    throw new OverLimit(
      `the source object of ${size} bytes needs parts of ${part} bytes; this region's storage takes at most ${limits.maxSegmentSize} in one piece`,
    );
  }
  const parts: PlannedPart[] = [];
  for (let start = 0, n = 1; start < size; start += part, n++) parts.push({ n, start, end: Math.min(size, start + part) - 1 });
  return parts;
}

/** Copies the parts not already in the target, verifies the whole, publishes the manifest. */
export async function copyParts(c: PartCopy): Promise<PutResult> {
  const parts = planParts(c.head.size, c.partSize, await c.target.limits());
  const recorded = new Map((await finishedParts(c.db.kysely, c.backupId)).map((p) => [p.part_number, p]));
  const segments: SegmentInfo[] = parts.map((p) => ({ key: segmentKey(c.backupId, p.n), size: p.end - p.start + 1, etag: '' }));
  await runBounded(parts, c.parallelism, c.signal, async (part, signal) => {
    const seg = segments[part.n - 1];
    const earlier = recorded.get(part.n);
    if (earlier && earlier.key === seg.key && earlier.size === seg.size) {
      // Recorded by an earlier run; trust it only if the target still holds exactly those bytes.
      const there = await c.target.head(seg.key, signal);
      if (there && there.etag === earlier.etag && there.size === seg.size) {
        seg.etag = earlier.etag;
        await c.onPartDone(seg.size, false);
        return;
      }
    }
    seg.etag = await copyPartWithRetries(c, part, seg, parts.length, signal);
    await recordPart(c.db.kysely, { backup_id: c.backupId, part_number: part.n, key: seg.key, size: seg.size, etag: seg.etag });
    await c.onPartDone(seg.size, true);
  });
  try {
    await verifyWhole(c.target, segments, c.head, c.signal);
  } catch (err) {
    // Recorded parts are what failed the check: a later attempt must fetch every part again.
    if (err instanceof IntegrityError) await forgetParts(c.db.kysely, c.backupId);
    throw err;
  }
  return c.target.putManifest(c.targetKey, segments, { metadata: c.metadata, signal: c.signal });
}

async function copyPartWithRetries(
  c: PartCopy,
  part: PlannedPart,
  seg: SegmentInfo,
  total: number,
  signal: AbortSignal,
): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    try {
      const range = { start: part.start, end: part.end };
      const body = await c.source.get(c.sourceKey, { range, ifMatch: c.head.etag, signal });
      // Its errors reach us through the PUT; an abort before the PUT reads must not go unheard.
      body.on('error', () => {});
      try {
        // No MD5 is known for a range; the target checks the size, and verifyWhole the bytes.
        return (await c.target.put(seg.key, body, { size: seg.size, signal })).etag;
      } finally {
        body.destroy();
      }
    } catch (err) {
      if (!isTransient(err) || attempt >= (c.retries ?? 0) || signal.aborted) {
        throw withContext(err, `copying part ${part.n} of ${total} (bytes ${part.start}-${part.end}) from ${c.region}`);
      }
      await sleep(Math.min(PART_BACKOFF_MAX_MS, PART_BACKOFF_MS * 2 ** attempt), undefined, { signal });
    }
  }
}

/** Reads the target segments in order and checks their joined MD5 and size against the source's. */
async function verifyWhole(target: StorageDriver, segments: SegmentInfo[], head: ObjectInfo, signal: AbortSignal) {
  const md5 = createHash('md5');
  let bytes = 0;
  for (const seg of segments) {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        md5.update(chunk);
        bytes += chunk.length;
        done();
      },
    });
    await pipeline(await target.get(seg.key, { signal }), sink, { signal });
  }
  const got = md5.digest('hex');
  if (got !== head.etag || bytes !== head.size) {
    throw new IntegrityError(
      `checksum mismatch on the copied parts: the source object has MD5 ${head.etag} (${head.size} bytes), the parts joined have ${got} (${bytes} bytes)`,
    );
  }
}
