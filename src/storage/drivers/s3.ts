import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { BadRequest, IntegrityError, ObjectNotFound, OverLimit } from '../../errors.ts';
import { manifestEtag } from '../../streams/swift-etag.ts';
import type {
  ByteRange,
  GetOptions,
  ObjectInfo,
  ObjectMetadata,
  PutOptions,
  PutResult,
  SegmentInfo,
  StorageDriver,
} from '../driver.ts';
import { assertSafeKey, ownSegmentKey } from '../keys.ts';
import { S3Connection, type S3DriverConfig } from './s3-connection.ts';
import { type ManifestOps, readManifest, segmentBytes } from './s3-manifest.ts';
import {
  checkedBody,
  infoOf,
  lower,
  MANIFEST,
  MAX_MANIFEST_BYTES,
  MAX_PUT,
  MAX_SEGMENTS,
  MD5_HEX,
  mapLimit,
  metaOut,
  PARALLEL,
  s3Error,
  TOTAL_ETAG,
  TOTAL_SIZE,
  unquote,
} from './s3-support.ts';
import { putObject, type UploadOps } from './s3-upload.ts';

// S3 driver. Large objects follow the StorageDriver model: segments are ordinary objects
// ("<id>_%08d") and the manifest is a small JSON object listing them, marked by x-amz-meta-tern-*
// headers that carry its total size and checksum. We do not assemble an S3 multipart object with
// UploadPartCopy because (1) every part but the last must be >= 5 MiB, so a manifest of small
// segments could not be built; (2) its ETag is MD5 of the *binary* part digests plus "-N", not
// Swift's MD5 of the hex digests, so checksums would not compare across drivers; (3) it would hold
// every byte twice (segments + copy). With a JSON manifest, segments() is exact, get() streams the
// segments in order, delete() removes them, and the checksum is manifestEtag(segment etags).
// Plain S3 clients see the manifest as JSON, not as the joined bytes; only Tern reads it.
//
// Plain objects (s3-upload.ts): streamed as one PutObject when the size is known (up to 5 GiB,
// part by part beyond), at most one part collected when it is not. A body of unknown size that
// fits in one part is one PutObject; a longer one becomes a low-level multipart upload, checked
// against options.md5/size before CompleteMultipartUpload and aborted on any failure, so nothing
// partial is ever visible.
// When the MD5 was not known up front, a server-side copy of the object onto itself records it
// in x-amz-meta-tern-md5, because a multipart ETag is not the MD5 of the bytes.
// createUpload/uploadPart/completeUpload/abortUpload are public so a resumable copy can drive
// multipart uploads part by part itself.

export type { S3DriverConfig, UploadedPart } from './s3-connection.ts';

export class S3Driver extends S3Connection implements StorageDriver {
  readonly kind = 's3';
  private readonly uploads: UploadOps;

  constructor(config: S3DriverConfig) {
    super(config);
    this.uploads = this.makeUploads();
  }

  async head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null> {
    return (await this.headWithEtag(key, signal))?.info ?? null;
  }

  /** head() and the ETag S3 itself gives the object (for a multipart upload not an MD5 of its bytes). */
  private async headWithEtag(key: string, signal?: AbortSignal): Promise<{ info: ObjectInfo; s3Etag?: string } | null> {
    assertSafeKey(key);
    try {
      const res = await this.client.send(new HeadObjectCommand(this.at(key)), { abortSignal: signal });
      return { info: infoOf(key, res), s3Etag: res.ETag };
    } catch (err) {
      const mapped = s3Error(err, `head ${this.locationOf(key)}`, this.config.bucket, signal);
      if (mapped instanceof ObjectNotFound) return null;
      throw mapped;
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    assertSafeKey(key);
    const { range, ifMatch, signal } = options;
    const what = `get ${this.locationOf(key)}`;
    if (
      range &&
      !(Number.isInteger(range.start) && Number.isInteger(range.end) && range.start >= 0 && range.end >= range.start)
    ) {
      throw new BadRequest(`${what}: invalid range ${range.start}-${range.end}`);
    }
    // A Range would apply to a manifest's JSON, and our etag is not always S3's, so ranged and
    // conditional reads look at the object first; S3 then checks that the GET finds the same one.
    const looked = range || ifMatch !== undefined ? await this.headWithEtag(key, signal) : undefined;
    if (looked === null) throw new ObjectNotFound(`${what}: not found`);
    if (ifMatch !== undefined && looked?.info.etag !== ifMatch) {
      throw new IntegrityError(`${what}: the object changed, its etag is no longer ${ifMatch}`);
    }
    if (looked?.info.segmented) return this.manifestStream(key, looked.info.size, range, signal);
    const res = await this.send(
      what,
      signal,
      new GetObjectCommand({
        ...this.at(key),
        Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        IfMatch: ifMatch !== undefined ? looked?.s3Etag : undefined,
      }),
    );
    if (lower(res.Metadata)[MANIFEST]) {
      (res.Body as Readable).destroy();
      return this.manifestStream(key, Number(lower(res.Metadata)[TOTAL_SIZE]), undefined, signal);
    }
    return checkedBody(res.Body as Readable, res.ContentLength, what, this.config.bucket, signal);
  }

  async put(key: string, body: Readable, options: PutOptions = {}): Promise<PutResult> {
    assertSafeKey(key);
    try {
      await this.ensureBucket();
    } catch (err) {
      body.destroy();
      throw err;
    }
    return putObject(this.uploads, key, body, options);
  }

  /** The driver's calls as the streamed upload (s3-upload.ts) uses them. */
  private makeUploads(): UploadOps {
    return {
      partSize: this.config.partSize,
      where: (key) => this.locationOf(key),
      putSingle: (key, body, length, md5, options) => this.putSingle(key, body, length, md5, options),
      createUpload: (key, options) => this.createUpload(key, options),
      uploadPart: (key, uploadId, n, body, length, signal) => this.uploadPart(key, uploadId, n, body, { length, signal }),
      completeUpload: (key, uploadId, parts, signal) => this.completeUpload(key, uploadId, parts, signal),
      abortUpload: (key, uploadId) => this.abortUpload(key, uploadId),
      recordMd5: (key, md5, size, metadata, signal) => this.recordMd5(key, md5, size, metadata, signal),
      deleteOne: (key) => this.deleteOne(key),
    };
  }

  async delete(key: string, signal?: AbortSignal): Promise<void> {
    const info = await this.head(key, signal);
    if (!info) return;
    // Segments first: if we stop half way the manifest is still there and a retry finishes the job.
    if (info.segmented) await mapLimit(await this.readManifest(key, signal), PARALLEL, (s) => this.deleteOne(s.key, signal));
    await this.deleteOne(key, signal);
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo> {
    if (prefix !== '') assertSafeKey(prefix);
    let token: string | undefined;
    do {
      const page = await this.listPage(prefix, token, signal);
      if (!page) return; // no bucket yet: it is created on first put
      for (const o of page.Contents ?? []) {
        const key = (o.Key ?? '').slice(this.config.prefix.length);
        if (this.keyOf(this.endpoint + key) === null) continue;
        // Listings carry no metadata (as in Swift); objects small enough to be a manifest are
        // looked at so that manifests report their total size and checksum.
        if ((o.Size ?? 0) <= MAX_MANIFEST_BYTES) {
          const info = await this.head(key, signal);
          if (info) yield { ...info, metadata: {} };
          continue;
        }
        yield { key, size: o.Size ?? 0, etag: unquote(o.ETag), metadata: {}, segmented: false, lastModified: o.LastModified };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  headSegment(segment: SegmentInfo, signal?: AbortSignal): Promise<ObjectInfo | null> {
    return this.head(ownSegmentKey(segment), signal);
  }

  getSegment(segment: SegmentInfo, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    return this.get(ownSegmentKey(segment), options);
  }

  async segments(key: string, signal?: AbortSignal): Promise<SegmentInfo[] | null> {
    const info = await this.head(key, signal);
    if (!info) throw new ObjectNotFound(`segments ${this.locationOf(key)}: not found`);
    return info.segmented ? this.readManifest(key, signal) : null;
  }

  async putManifest(
    key: string,
    segments: SegmentInfo[],
    options: { metadata?: ObjectMetadata; signal?: AbortSignal } = {},
  ): Promise<PutResult> {
    assertSafeKey(key);
    const { signal } = options;
    const what = `put manifest ${this.locationOf(key)}`;
    if (segments.length > MAX_SEGMENTS) throw new OverLimit(`${what}: ${segments.length} segments, at most ${MAX_SEGMENTS}`);
    for (const s of segments) {
      assertSafeKey(s.key);
      if (!Number.isSafeInteger(s.size) || s.size < 0 || !MD5_HEX.test(s.etag))
        throw new BadRequest(`${what}: bad segment ${s.key}`);
    }
    await this.ensureBucket();
    // Like a Swift SLO PUT: every segment must exist with the size and checksum the manifest claims.
    await mapLimit(segments, PARALLEL, async (s) => {
      const info = await this.head(s.key, signal);
      if (!info) throw new ObjectNotFound(`${what}: segment ${s.key} is missing`);
      if (info.segmented) throw new BadRequest(`${what}: segment ${s.key} is itself a manifest`);
      if (info.size !== s.size) throw this.mismatch(s.key, 'size', info.size, s.size);
      // A segment uploaded by multipart without a known MD5 has an S3 ETag we cannot compare.
      if (MD5_HEX.test(info.etag) && info.etag !== s.etag) throw this.mismatch(s.key, 'md5', info.etag, s.etag);
    });
    const etag = manifestEtag(segments.map((s) => s.etag));
    const size = segments.reduce((n, s) => n + s.size, 0);
    const json = Buffer.from(
      JSON.stringify({ ternManifest: 1, segments: segments.map(({ key, size, etag }) => ({ key, size, etag })) }),
    );
    // list() tells manifests apart by their size, so they must stay small.
    if (json.length > MAX_MANIFEST_BYTES) throw new OverLimit(`${what}: manifest larger than ${MAX_MANIFEST_BYTES} bytes`);
    const metadata = { ...metaOut(options.metadata), [MANIFEST]: '1', [TOTAL_SIZE]: String(size), [TOTAL_ETAG]: etag };
    await this.send(
      what,
      signal,
      new PutObjectCommand({
        ...this.at(key),
        Body: json,
        ContentLength: json.length,
        ContentMD5: createHash('md5').update(json).digest('base64'),
        ContentType: 'application/json',
        Metadata: metadata,
      }),
    );
    return { etag, size };
  }

  async limits(): Promise<{ maxSegmentSize: number; maxManifestSegments: number }> {
    return { maxSegmentSize: MAX_PUT, maxManifestSegments: MAX_SEGMENTS };
  }

  protected mismatch(key: string, field: string, got: string | number, want: string | number): IntegrityError {
    return new IntegrityError(`put ${this.locationOf(key)}: ${field} mismatch: got ${got}, expected ${want}`);
  }

  /** One PutObject of exactly length bytes; S3 checks Content-MD5 when the MD5 is known up front. */
  private async listPage(prefix: string, token: string | undefined, signal?: AbortSignal) {
    const { bucket } = this.config;
    try {
      return await this.client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: this.config.prefix + prefix, ContinuationToken: token }),
        { abortSignal: signal },
      );
    } catch (err) {
      if ((err as Error).name === 'NoSuchBucket') return null;
      throw s3Error(err, `list ${this.endpoint}${prefix}`, bucket, signal);
    }
  }

  private readManifest(key: string, signal?: AbortSignal): Promise<SegmentInfo[]> {
    return readManifest(this.manifestOps, key, signal);
  }

  private async manifestStream(
    key: string,
    total: number,
    range: ByteRange | undefined,
    signal?: AbortSignal,
  ): Promise<Readable> {
    if (range && range.start >= total) throw new BadRequest(`get ${this.locationOf(key)}: range not satisfiable`);
    const segments = await this.readManifest(key, signal);
    return Readable.from(segmentBytes(this.manifestOps, segments, range, signal), { objectMode: false });
  }

  private get manifestOps(): ManifestOps {
    return {
      bucket: this.config.bucket,
      locationOf: (key) => this.locationOf(key),
      isKey: (key) => this.keyOf(this.endpoint + key) !== null,
      get: (what, key, range, signal) =>
        this.send(what, signal, new GetObjectCommand({ ...this.at(key), Range: range })) as Promise<GetObjectCommandOutput>,
    };
  }

  // The bucket is created on first write; concurrent writers share one attempt, a failure is retried.
}
