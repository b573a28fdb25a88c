import { Readable } from 'node:stream';
import type { SegmentInfo, StorageDriver } from '../storage/driver.ts';
import { segmentKey } from '../storage/keys.ts';

// Streams a backup of unknown length into storage as segments "<id>_%08d" (Trove's large-object
// layout). The manifest is published by the caller afterwards, once the tool has finished and the
// metadata (LSN) is known, so nothing is visible under the backup's name until the bytes are whole.

export interface SegmentedUpload {
  storage: StorageDriver;
  backupId: string;
  body: Readable;
  segmentSize: number;
  signal: AbortSignal;
}

/** Uploads body cut into segments of segmentSize bytes (the last may be shorter); returns them in order. */
export async function uploadSegments(u: SegmentedUpload): Promise<SegmentInfo[]> {
  const source = u.body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let carry: Buffer | null = null;
  let ended = false;
  const segments: SegmentInfo[] = [];
  try {
    for (let n = 1; ; n++) {
      if (carry === null) {
        const next = await source.next();
        if (next.done) break;
        carry = next.value;
      }
      let remaining = u.segmentSize;
      // One segment's bytes: the carried-over chunk, then more from the source up to the limit.
      const piece = async function* (): AsyncGenerator<Buffer> {
        while (remaining > 0) {
          let chunk: Buffer | null = carry;
          carry = null;
          if (chunk === null) {
            const next = await source.next();
            if (next.done) {
              ended = true;
              return;
            }
            chunk = next.value;
          }
          if (chunk.length > remaining) {
            carry = chunk.subarray(remaining);
            chunk = chunk.subarray(0, remaining);
          }
          remaining -= chunk.length;
          if (chunk.length > 0) yield chunk;
        }
      };
      const key = segmentKey(u.backupId, n);
      const result = await u.storage.put(key, Readable.from(piece(), { objectMode: false }), { signal: u.signal });
      segments.push({ key, size: result.size, etag: result.etag });
      if (ended) break;
    }
    return segments;
  } catch (err) {
    // Stops the producer (destroying a backup stream stops its tool).
    u.body.destroy(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
}
