import { createHash } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import {
  type $Command,
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  HeadBucketCommand,
  PutObjectCommand,
  type S3Client,
  type S3ClientResolvedConfig,
  type ServiceInputTypes,
  type ServiceOutputTypes,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { BadRequest, IntegrityError, ObjectNotFound, StorageUnavailable } from '../../errors.ts';
import type { ObjectMetadata, PutOptions } from '../driver.ts';
import { assertSafeKey } from '../keys.ts';
import { createS3Client, MAX_PUT, MD5, metaOut, s3Error, unquote } from './s3-support.ts';
import { md5Passing } from './s3-upload.ts';

// The connection side of the S3 driver: client and agents, bucket creation, request error
// mapping, and the low-level calls (single and multipart uploads) that s3-upload.ts drives.

export interface S3DriverConfig {
  endpoint: string;
  region: string;
  bucket: string;
  prefix: string;
  accessKeyId: string;
  secretAccessKey: string;
  forcePathStyle: boolean;
  /**
   * Bytes per multipart part (S3 minimum 5 MiB): the most a put of unknown size buffers, and the
   * part size of a known-size put beyond S3's 5 GiB single PutObject.
   */
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

export class S3Connection {
  readonly endpoint: string;
  readonly server: string;
  protected readonly config: S3DriverConfig;
  protected readonly client: S3Client;
  protected readonly agents: [HttpAgent, HttpsAgent];
  protected bucketReady: Promise<void> | null = null;

  constructor(config: S3DriverConfig) {
    if (config.partSize < 5 * 1024 * 1024) throw new BadRequest('S3 partSize must be at least 5 MiB');
    this.config = { ...config };
    this.endpoint = `s3://${config.bucket}/${config.prefix}`;
    this.server = config.endpoint.replace(/\/+$/, '');
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

  /**
   * Uploads one part (1-based number). A Buffer goes with Content-MD5, so S3 rejects bytes damaged
   * on the way; a stream (options.length bytes) is sent as it arrives, its MD5 computed on the way
   * and compared with the ETag S3 returns (a part's ETag is its MD5).
   */
  async uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    data: Buffer | Readable,
    options: { length?: number; signal?: AbortSignal } | AbortSignal = {},
  ): Promise<UploadedPart> {
    assertSafeKey(key);
    const { length, signal } = options instanceof AbortSignal ? { signal: options, length: undefined } : options;
    const what = `upload part ${partNumber} of ${this.locationOf(key)}`;
    const at = { ...this.at(key), UploadId: uploadId, PartNumber: partNumber };
    if (Buffer.isBuffer(data)) {
      const digest = createHash('md5').update(data).digest();
      const res = await this.send(
        what,
        signal,
        new UploadPartCommand({ ...at, Body: data, ContentLength: data.length, ContentMD5: digest.toString('base64') }),
      );
      return { partNumber, etag: unquote(res.ETag), md5: digest.toString('hex'), size: data.length };
    }
    if (length === undefined) throw new BadRequest(`${what}: a streamed part needs its length`);
    const hashed = md5Passing(data);
    const res = await this.send(what, signal, new UploadPartCommand({ ...at, Body: hashed.stream, ContentLength: length }));
    const etag = unquote(res.ETag);
    if (etag !== hashed.md5())
      throw new IntegrityError(`${what}: S3 stored md5 ${etag || '(none)'} but ${hashed.md5()} was sent`);
    return { partNumber, etag, md5: etag, size: length };
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

  protected at(key: string): { Bucket: string; Key: string } {
    return { Bucket: this.config.bucket, Key: this.config.prefix + key };
  }

  protected async send<I extends ServiceInputTypes, O extends ServiceOutputTypes>(
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

  protected async putSingle(key: string, body: Readable | Buffer, length: number, md5: string | undefined, options: PutOptions) {
    const res = await this.send(
      `put ${this.locationOf(key)}`,
      options.signal,
      new PutObjectCommand({
        ...this.at(key),
        Body: body,
        ContentLength: length,
        ContentMD5: md5 ? Buffer.from(md5, 'hex').toString('base64') : undefined,
        Metadata: metaOut(options.metadata),
      }),
    );
    return unquote(res.ETag);
  }

  // The ETag of a multipart object is not the MD5 of its bytes, and metadata is fixed when the
  // upload starts. When the MD5 was not known then, a server-side copy onto itself records it
  // (CopyObject stops at 5 GiB; beyond that head() reports S3's multipart ETag).
  protected async recordMd5(key: string, md5: string, size: number, metadata?: ObjectMetadata, signal?: AbortSignal) {
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

  protected async deleteOne(key: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.send(`delete ${this.locationOf(key)}`, signal, new DeleteObjectCommand(this.at(key)));
    } catch (err) {
      if (!(err instanceof ObjectNotFound)) throw err;
    }
  }

  protected ensureBucket(): Promise<void> {
    this.bucketReady ??= this.createBucketIfMissing().catch((err) => {
      this.bucketReady = null;
      throw err;
    });
    return this.bucketReady;
  }

  protected async createBucketIfMissing(): Promise<void> {
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
