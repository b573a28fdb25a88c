import { createHash } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type $Command,
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  type S3ClientResolvedConfig,
  type ServiceInputTypes,
  type ServiceOutputTypes,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { BadRequest, IntegrityError, ObjectNotFound, OverLimit, StorageUnavailable } from '../../errors.ts';
import { manifestEtag } from '../../streams/swift-etag.ts';
import type { ByteRange, ObjectInfo, ObjectMetadata, PutOptions, PutResult, SegmentInfo, StorageDriver } from '../driver.ts';
import { assertSafeKey } from '../keys.ts';
import {
  checkedBytes,
  createS3Client,
  infoOf,
  lower,
  MANIFEST,
  MAX_MANIFEST_BYTES,
  MAX_PUT,
  MAX_SEGMENTS,
  MD5,
  MD5_HEX,
  mapLimit,
  metaOut,
  PARALLEL,
  PartSink,
  s3Error,
  TOTAL_ETAG,
  TOTAL_SIZE,
  unquote,
} from './s3-support.ts';

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
// Plain objects: one part buffered at most. A body that ends within partSize is one PutObject with
// Content-MD5; a longer one becomes a low-level multipart upload, checked against options.md5/size
// before CompleteMultipartUpload and aborted on any failure, so nothing partial is ever visible.
// When the MD5 was not known up front, a server-side copy of the object onto itself records it
// in x-amz-meta-tern-md5, because a multipart ETag is not the MD5 of the bytes.
// createUpload/uploadPart/completeUpload/abortUpload are public so a resumable copy can drive
// multipart uploads part by part itself.

export interface S3DriverConfig {
  endpoint: string;
  region: string;
  bucket: string;
  prefix: string;
  accessKeyId: string;
  secretAccessKey: string;
  forcePathStyle: boolean;
  /** Bytes per multipart part, and the most a put buffers (S3 minimum 5 MiB). */
  partSize: number;
  /** Tuning knobs; the defaults suit production. */
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
  maxAttempts?: number;
}

export interface UploadedPart {
  partNumber: number;
  /** ETag as S3 returned it (needed by CompleteMultipartUpload), unquoted. */
  etag: string;
  /** MD5 hex of the part's bytes. */
  md5: string;
  size: number;
}

export class S3Driver implements StorageDriver {
  readonly kind = 's3';
  readonly endpoint: string;
  private readonly config: S3DriverConfig;
  private readonly client: S3Client;
  private readonly agents: [HttpAgent, HttpsAgent];
  private bucketReady: Promise<void> | null = null;

  constructor(config: S3DriverConfig) {
    if (config.partSize < 5 * 1024 * 1024) throw new BadRequest('S3 partSize must be at least 5 MiB');
    this.config = { ...config };
    this.endpoint = `s3://${config.bucket}/${config.prefix}`;
    this.agents = [new HttpAgent({ keepAlive: true, maxSockets: 32 }), new HttpsAgent({ keepAlive: true, maxSockets: 32 })];
    this.client = createS3Client(config, this.agents);
  }

  locationOf(key: string): string {
    assertSafeKey(key);
    return this.endpoint + key;
  }

  keyOf(location: string): string | null {
    if (!location.startsWith(this.endpoint)) return null;
    const key = location.slice(this.endpoint.length);
    try {
      assertSafeKey(key);
      return key;
    } catch {
      return null;
    }
  }

  async head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null> {
    assertSafeKey(key);
    try {
      const res = await this.client.send(new HeadObjectCommand(this.at(key)), { abortSignal: signal });
      return infoOf(key, res);
    } catch (err) {
      const mapped = s3Error(err, `head ${this.locationOf(key)}`, this.config.bucket, signal);
      if (mapped instanceof ObjectNotFound) return null;
      throw mapped;
    }
  }

  async get(key: string, options: { range?: ByteRange; signal?: AbortSignal } = {}): Promise<Readable> {
    assertSafeKey(key);
    const { range, signal } = options;
    const what = `get ${this.locationOf(key)}`;
    if (
      range &&
      !(Number.isInteger(range.start) && Number.isInteger(range.end) && range.start >= 0 && range.end >= range.start)
    ) {
      throw new BadRequest(`${what}: invalid range ${range.start}-${range.end}`);
    }
    // A Range would apply to a manifest's JSON, so ranged reads look at the object first.
    const info = range ? await this.head(key, signal) : null;
    if (range && !info) throw new ObjectNotFound(`${what}: not found`);
    if (info?.segmented) return this.manifestStream(key, info.size, range, signal);
    const res = await this.send(
      what,
      signal,
      new GetObjectCommand({ ...this.at(key), Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
    );
    if (lower(res.Metadata)[MANIFEST]) {
      (res.Body as Readable).destroy();
      return this.manifestStream(key, Number(lower(res.Metadata)[TOTAL_SIZE]), undefined, signal);
    }
    return Readable.from(checkedBytes(res.Body as Readable, res.ContentLength, what, this.config.bucket, signal), {
      objectMode: false,
    });
  }

  async put(key: string, body: Readable, options: PutOptions = {}): Promise<PutResult> {
    assertSafeKey(key);
    const { signal } = options;
    await this.ensureBucket();
    const whole = createHash('md5');
    let size = 0;
    let uploadId: string | null = null;
    const parts: UploadedPart[] = [];
    let result: PutResult | undefined;
    const sink = new PartSink(this.config.partSize, async (data, last) => {
      whole.update(data);
      size += data.length;
      if (options.size !== undefined && size > options.size) throw this.mismatch(key, 'size', size, options.size);
      if (last && uploadId === null) {
        result = await this.putSmall(key, data, whole.digest('hex'), options);
        return;
      }
      uploadId ??= await this.createUpload(key, { metadata: options.metadata, md5: options.md5, signal });
      parts.push(await this.uploadPart(key, uploadId, parts.length + 1, data, signal));
      if (!last) return;
      const md5 = whole.digest('hex');
      this.check(key, md5, size, options);
      await this.completeUpload(key, uploadId, parts, signal);
      uploadId = null;
      if (!options.md5) await this.recordMd5(key, md5, size, options.metadata, signal);
      result = { etag: md5, size };
    });
    try {
      await pipeline(body, sink, { signal });
    } catch (err) {
      if (uploadId !== null) await this.abortUpload(key, uploadId).catch(() => {});
      throw err;
    }
    return result!;
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

  async close(): Promise<void> {
    this.client.destroy();
    for (const agent of this.agents) agent.destroy();
  }

  // Low-level multipart, for put() and for resumable copies that upload part by part.

  /** Starts a multipart upload; md5 (of the whole object, if known) becomes the etag head() reports. */
  async createUpload(
    key: string,
    options: { metadata?: ObjectMetadata; md5?: string; signal?: AbortSignal } = {},
  ): Promise<string> {
    assertSafeKey(key);
    await this.ensureBucket();
    const Metadata = { ...metaOut(options.metadata), ...(options.md5 ? { [MD5]: options.md5.toLowerCase() } : {}) };
    const res = await this.send(
      `start upload ${this.locationOf(key)}`,
      options.signal,
      new CreateMultipartUploadCommand({ ...this.at(key), Metadata }),
    );
    if (!res.UploadId) throw new StorageUnavailable(`start upload ${this.locationOf(key)}: S3 returned no upload id`);
    return res.UploadId;
  }

  /** Uploads one part (1-based number) with Content-MD5, so S3 rejects bytes damaged on the way. */
  async uploadPart(key: string, uploadId: string, partNumber: number, data: Buffer, signal?: AbortSignal): Promise<UploadedPart> {
    assertSafeKey(key);
    const digest = createHash('md5').update(data).digest();
    const res = await this.send(
      `upload part ${partNumber} of ${this.locationOf(key)}`,
      signal,
      new UploadPartCommand({
        ...this.at(key),
        UploadId: uploadId,
        PartNumber: partNumber,
        Body: data,
        ContentLength: data.length,
        ContentMD5: digest.toString('base64'),
      }),
    );
    return { partNumber, etag: unquote(res.ETag), md5: digest.toString('hex'), size: data.length };
  }

  async completeUpload(key: string, uploadId: string, parts: UploadedPart[], signal?: AbortSignal): Promise<void> {
    assertSafeKey(key);
    const Parts = [...parts].sort((a, b) => a.partNumber - b.partNumber).map((p) => ({ PartNumber: p.partNumber, ETag: p.etag }));
    await this.send(
      `complete upload ${this.locationOf(key)}`,
      signal,
      new CompleteMultipartUploadCommand({ ...this.at(key), UploadId: uploadId, MultipartUpload: { Parts } }),
    );
  }

  /** Drops an unfinished upload and its parts; an upload that is already gone is fine. */
  async abortUpload(key: string, uploadId: string, signal?: AbortSignal): Promise<void> {
    assertSafeKey(key);
    try {
      await this.send(
        `abort upload ${this.locationOf(key)}`,
        signal,
        new AbortMultipartUploadCommand({ ...this.at(key), UploadId: uploadId }),
      );
    } catch (err) {
      if (!(err instanceof ObjectNotFound)) throw err;
    }
  }

  private at(key: string): { Bucket: string; Key: string } {
    return { Bucket: this.config.bucket, Key: this.config.prefix + key };
  }

  private async send<I extends ServiceInputTypes, O extends ServiceOutputTypes>(
    what: string,
    signal: AbortSignal | undefined,
    command: $Command<I, O, S3ClientResolvedConfig, ServiceInputTypes, ServiceOutputTypes>,
  ): Promise<O> {
    try {
      return await this.client.send(command, { abortSignal: signal });
    } catch (err) {
      throw s3Error(err, what, this.config.bucket, signal);
    }
  }

  private mismatch(key: string, field: string, got: string | number, want: string | number): IntegrityError {
    return new IntegrityError(`put ${this.locationOf(key)}: ${field} mismatch: got ${got}, expected ${want}`);
  }

  private check(key: string, md5: string, size: number, options: PutOptions): void {
    if (options.size !== undefined && size !== options.size) throw this.mismatch(key, 'size', size, options.size);
    if (options.md5 !== undefined && md5 !== options.md5.toLowerCase()) throw this.mismatch(key, 'md5', md5, options.md5);
  }

  private async putSmall(key: string, data: Buffer, md5: string, options: PutOptions): Promise<PutResult> {
    this.check(key, md5, data.length, options);
    await this.send(
      `put ${this.locationOf(key)}`,
      options.signal,
      new PutObjectCommand({
        ...this.at(key),
        Body: data,
        ContentLength: data.length,
        ContentMD5: Buffer.from(md5, 'hex').toString('base64'),
        Metadata: metaOut(options.metadata),
      }),
    );
    return { etag: md5, size: data.length };
  }

  // The ETag of a multipart object is not the MD5 of its bytes, and metadata is fixed when the
  // upload starts. When the MD5 was not known then, a server-side copy onto itself records it
  // (CopyObject stops at 5 GiB; beyond that head() reports S3's multipart ETag).
  private async recordMd5(key: string, md5: string, size: number, metadata?: ObjectMetadata, signal?: AbortSignal) {
    if (size > MAX_PUT) return;
    const { Key } = this.at(key);
    const CopySource = `${this.config.bucket}/${Key.split('/').map(encodeURIComponent).join('/')}`;
    const Metadata = { ...metaOut(metadata), [MD5]: md5 };
    try {
      await this.send(
        `record md5 of ${this.locationOf(key)}`,
        signal,
        new CopyObjectCommand({ ...this.at(key), CopySource, MetadataDirective: 'REPLACE', Metadata }),
      );
    } catch (err) {
      await this.deleteOne(key).catch(() => {});
      throw err;
    }
  }

  private async deleteOne(key: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.send(`delete ${this.locationOf(key)}`, signal, new DeleteObjectCommand(this.at(key)));
    } catch (err) {
      if (!(err instanceof ObjectNotFound)) throw err;
    }
  }

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

  private async readManifest(key: string, signal?: AbortSignal): Promise<SegmentInfo[]> {
    const what = `read manifest ${this.locationOf(key)}`;
    const res = await this.send(what, signal, new GetObjectCommand(this.at(key)));
    if ((res.ContentLength ?? 0) > MAX_MANIFEST_BYTES) {
      (res.Body as Readable).destroy();
      throw new IntegrityError(`${what}: manifest too large`);
    }
    let text: string;
    try {
      text = await res.Body!.transformToString();
    } catch (err) {
      throw s3Error(err, what, this.config.bucket, signal);
    }
    const parsed = JSON.parse(text) as { segments?: SegmentInfo[] };
    const segments = parsed.segments;
    if (!Array.isArray(segments) || !segments.every((s) => this.keyOf(this.endpoint + s.key) && MD5_HEX.test(s.etag))) {
      throw new IntegrityError(`${what}: not a valid manifest`);
    }
    return segments.map(({ key, size, etag }) => ({ key, size, etag }));
  }

  private async manifestStream(
    key: string,
    total: number,
    range: ByteRange | undefined,
    signal?: AbortSignal,
  ): Promise<Readable> {
    if (range && range.start >= total) throw new BadRequest(`get ${this.locationOf(key)}: range not satisfiable`);
    const segments = await this.readManifest(key, signal);
    return Readable.from(this.segmentBytes(segments, range, signal), { objectMode: false });
  }

  private async *segmentBytes(
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
      const what = `get segment ${this.locationOf(seg.key)}`;
      const res = await this.send(
        what,
        signal,
        new GetObjectCommand({ ...this.at(seg.key), Range: whole ? undefined : `bytes=${from - first}-${to - first}` }),
      );
      const etag = lower(res.Metadata)[MD5] ?? unquote(res.ETag);
      if (whole && (res.ContentLength !== seg.size || (MD5_HEX.test(etag) && etag !== seg.etag))) {
        (res.Body as Readable).destroy();
        throw new IntegrityError(`${what}: segment changed since the manifest was written`);
      }
      yield* checkedBytes(res.Body as Readable, to - from + 1, what, this.config.bucket, signal);
    }
  }

  // The bucket is created on first write; concurrent writers share one attempt, a failure is retried.
  private ensureBucket(): Promise<void> {
    this.bucketReady ??= this.createBucketIfMissing().catch((err) => {
      this.bucketReady = null;
      throw err;
    });
    return this.bucketReady;
  }

  private async createBucketIfMissing(): Promise<void> {
    const Bucket = this.config.bucket;
    try {
      await this.send(`check bucket ${Bucket}`, undefined, new HeadBucketCommand({ Bucket }));
      return;
    } catch (err) {
      if (!(err instanceof ObjectNotFound)) throw err;
    }
    const { region } = this.config;
    const CreateBucketConfiguration = region === 'us-east-1' ? undefined : { LocationConstraint: region as never };
    try {
      await this.client.send(new CreateBucketCommand({ Bucket, CreateBucketConfiguration }));
    } catch (err) {
      if ((err as Error).name !== 'BucketAlreadyOwnedByYou') throw s3Error(err, `create bucket ${Bucket}`, Bucket);
    }
  }
}
