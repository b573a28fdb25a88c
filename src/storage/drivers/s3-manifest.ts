import type { Readable } from 'node:stream';
import type { GetObjectCommandOutput } from '@aws-sdk/client-s3';
import { IntegrityError } from '../../errors.ts';
import type { ByteRange, SegmentInfo } from '../driver.ts';
import { checkedBody, lower, MAX_MANIFEST_BYTES, MD5, MD5_HEX, s3Error, unquote } from './s3-support.ts';

// Reading the S3 driver's manifests: a small JSON object listing the segments of a large object
// (see s3.ts for why it is not an S3 multipart object), and streaming the joined segment bytes.

export interface ManifestOps {
  bucket: string;
  locationOf(key: string): string;
  /** True when key is a safe key of this driver. */
  isKey(key: string): boolean;
  /** GetObject of key, optionally with a Range header value; errors already mapped. */
  get(what: string, key: string, range: string | undefined, signal?: AbortSignal): Promise<GetObjectCommandOutput>;
}

export async function readManifest(ops: ManifestOps, key: string, signal?: AbortSignal): Promise<SegmentInfo[]> {
  const what = `read manifest ${ops.locationOf(key)}`;
  const res = await ops.get(what, key, undefined, signal);
  if ((res.ContentLength ?? 0) > MAX_MANIFEST_BYTES) {
    (res.Body as Readable).destroy();
    throw new IntegrityError(`${what}: manifest too large`);
  }
  let text: string;
  try {
    text = await res.Body!.transformToString();
  } catch (err) {
    throw s3Error(err, what, ops.bucket, signal);
  }
  let segments: SegmentInfo[] | undefined;
  try {
    segments = (JSON.parse(text) as { segments?: SegmentInfo[] }).segments;
  } catch {
    segments = undefined;
  }
  if (!Array.isArray(segments) || !segments.every((s) => ops.isKey(s.key) && MD5_HEX.test(s.etag))) {
    throw new IntegrityError(`${what}: not a valid manifest`);
  }
  return segments.map(({ key, size, etag }) => ({ key, size, etag }));
}

/** The bytes of the segments in order (only the part a range asks for), each checked against the manifest. */
export async function* segmentBytes(
  ops: ManifestOps,
  segments: SegmentInfo[],
  range: ByteRange | undefined,
  signal?: AbortSignal,
): AsyncGenerator<Buffer> {
  let offset = 0;
  for (const seg of segments) {
    const first = offset;
    const last = offset + seg.size - 1;
    offset += seg.size;
    const from = Math.max(first, range?.start ?? 0);
    const to = Math.min(last, range?.end ?? Number.POSITIVE_INFINITY);
    if (from > to) continue;
    const whole = from === first && to === last;
    const what = `get segment ${ops.locationOf(seg.key)}`;
    const res = await ops.get(what, seg.key, whole ? undefined : `bytes=${from - first}-${to - first}`, signal);
    const etag = lower(res.Metadata)[MD5] ?? unquote(res.ETag);
    if (whole && (res.ContentLength !== seg.size || (MD5_HEX.test(etag) && etag !== seg.etag))) {
      (res.Body as Readable).destroy();
      throw new IntegrityError(`${what}: segment changed since the manifest was written`);
    }
    yield* checkedBody(res.Body as Readable, to - from + 1, what, ops.bucket, signal);
  }
}
