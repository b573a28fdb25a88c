import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough, type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { IntegrityError } from '../../errors.ts';
import type { ObjectMetadata, PutOptions, PutResult } from '../driver.ts';
import { MAX_PUT } from './s3-support.ts';

// How S3Driver.put turns a byte stream into an object, holding as little as possible in memory.
//
// Size known (options.size, as every copy and verified upload passes it): nothing is buffered.
// Up to S3's 5 GiB the object is one PutObject, beyond that parts of partSize; each is a
// sub-stream of exactly its length, sent as it arrives. Its MD5 is computed on the way and
// compared with the ETag S3 returns (S3 and Swift's s3api give a part's or plain object's MD5 as
// its ETag); a PutObject of a caller's known MD5 goes with Content-MD5, which S3 checks itself.
// The last byte of the object is held back until the body has ended, so a body longer than
// announced fails before S3 could complete (and publish) anything.
// Size unknown: each part is collected into one Buffer, because S3 needs a Content-Length before
// the first byte; a Buffer also lets the SDK send a part again after a network error. A body that
// ends within one part is a single PutObject with Content-MD5.

/** What the upload needs from the driver: single puts and the low-level multipart calls. */
export interface UploadOps {
  partSize: number;
  where(key: string): string;
  /** PutObject of exactly `length` bytes; resolves to the ETag S3 returned (unquoted). */
  putSingle(key: string, body: Readable | Buffer, length: number, md5: string | undefined, options: PutOptions): Promise<string>;
  createUpload(key: string, options: { metadata?: ObjectMetadata; md5?: string; signal?: AbortSignal }): Promise<string>;
  uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: Readable | Buffer,
    length: number,
    signal?: AbortSignal,
  ): Promise<Part>;
  completeUpload(key: string, uploadId: string, parts: Part[], signal?: AbortSignal): Promise<void>;
  abortUpload(key: string, uploadId: string): Promise<void>;
  recordMd5(key: string, md5: string, size: number, metadata?: ObjectMetadata, signal?: AbortSignal): Promise<void>;
  deleteOne(key: string): Promise<void>;
}

export interface Part {
  partNumber: number;
  etag: string;
  md5: string;
  size: number;
}

export async function putObject(ops: UploadOps, key: string, body: Readable, putOptions: PutOptions): Promise<PutResult> {
  // The SDK ends a request only through its abort signal (a failed body stream leaves it waiting),
  // so every request of this put listens to one that a failure here also aborts.
  const controller = new AbortController();
  const forward = () => controller.abort(putOptions.signal?.reason);
  if (putOptions.signal?.aborted) forward();
  else putOptions.signal?.addEventListener('abort', forward, { once: true });
  const signal = controller.signal;
  const options = { ...putOptions, signal };
  // With the size known nothing is buffered, so an object S3 takes in one PutObject (up to 5 GiB)
  // goes up in one request: fewer round trips, and an ETag that is the MD5 of the bytes.
  const single = options.size !== undefined && options.size <= MAX_PUT;
  // A PutObject with Content-MD5 is checked by S3 itself (BadDigest otherwise): hashing every byte
  // here too would only double the CPU. Parts are hashed, since S3 checks no whole object.
  const expected = options.md5?.toLowerCase();
  const checkedByS3 = expected !== undefined && single;
  const whole = checkedByS3 ? null : createHash('md5');
  // Unhashed only when S3 checks the caller's MD5, which is then the MD5 of the body.
  const bodyMd5 = () => whole?.digest('hex') ?? (expected as string);
  let size = 0;
  let uploadId: string | null = null;
  const parts: Part[] = [];
  let result: PutResult | undefined;
  const mismatch = (field: string, got: string | number, want: string | number) =>
    new IntegrityError(`put ${ops.where(key)}: ${field} mismatch: got ${got}, expected ${want}`);
  const check = (md5: string) => {
    if (options.size !== undefined && size !== options.size) throw mismatch('size', size, options.size);
    if (expected !== undefined && md5 !== expected) throw mismatch('md5', md5, expected);
  };
  const count = (chunk: Buffer) => {
    whole?.update(chunk);
    size += chunk.length;
    if (options.size !== undefined && size > options.size)
      throw mismatch('size', `more than ${size - chunk.length}`, options.size);
  };

  const onPart = async (data: Readable | Buffer, length: number, last: boolean) => {
    if (last && uploadId === null) {
      // The whole object in one request: S3 checks Content-MD5 when we know the MD5 up front.
      const etag = await ops.putSingle(key, data, length, expected, options);
      const md5 = bodyMd5();
      if (etag !== md5) {
        await ops.deleteOne(key).catch(() => {});
        throw mismatch('stored md5', etag, md5);
      }
      check(md5);
      result = { etag: md5, size };
      return;
    }
    uploadId ??= await ops.createUpload(key, { metadata: options.metadata, md5: options.md5, signal });
    parts.push(await ops.uploadPart(key, uploadId, parts.length + 1, data, length, signal));
    if (!last) return;
    const md5 = bodyMd5();
    check(md5);
    await ops.completeUpload(key, uploadId, parts, signal);
    uploadId = null;
    if (!options.md5) await ops.recordMd5(key, md5, size, options.metadata, signal);
    result = { etag: md5, size };
  };

  const sink =
    options.size !== undefined
      ? new StreamedParts(options.size, single ? Math.max(1, options.size) : ops.partSize, count, onPart)
      : new BufferedParts(ops.partSize, count, onPart);
  try {
    await pipeline(body, sink, { signal });
  } catch (err) {
    const reason = putOptions.signal?.aborted ? putOptions.signal.reason : err;
    controller.abort(reason);
    if (uploadId !== null) await ops.abortUpload(key, uploadId).catch(() => {});
    throw reason;
  } finally {
    putOptions.signal?.removeEventListener('abort', forward);
  }
  return result!;
}

type OnPart = (data: Readable | Buffer, length: number, last: boolean) => Promise<void>;

/**
 * Cuts a body of known total size into parts of partSize (the last shorter) and hands each part
 * on as a stream while its bytes arrive; a write waits until the part's request takes the bytes.
 */
class StreamedParts extends Writable {
  private current: { stream: PassThrough; remaining: number; sent: Promise<void>; last: boolean } | null = null;
  private started = false;
  /** The object's final bytes, sent once the body has ended. */
  private held: Buffer | null = null;
  private left: number;
  private readonly partSize: number;
  private readonly count: (chunk: Buffer) => void;
  private readonly onPart: OnPart;

  constructor(total: number, partSize: number, count: (chunk: Buffer) => void, onPart: OnPart) {
    super();
    this.left = total;
    this.partSize = partSize;
    this.count = count;
    this.onPart = onPart;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.take(chunk).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    // An empty object is one empty PutObject; a body shorter than announced fails in the count check.
    const run = async () => {
      if (this.current === null && this.left === 0 && !this.started) await this.onPart(emptyStream(), 0, true);
      const part = this.current;
      if (part !== null && this.held !== null) {
        part.stream.end(this.held);
        this.held = null;
        this.current = null;
        await part.sent;
      }
      if (this.current !== null || this.left > 0) {
        this.current?.stream.destroy();
        throw new IntegrityError(`body ended ${this.left + (this.current?.remaining ?? 0)} bytes short of its announced size`);
      }
    };
    run().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.current?.stream.destroy(error ?? undefined);
    callback(error);
  }

  private async take(chunk: Buffer): Promise<void> {
    this.count(chunk);
    while (chunk.length > 0) {
      if (this.current === null) {
        const length = Math.min(this.partSize, this.left);
        if (length === 0) return; // more bytes than announced: count() has thrown already
        this.left -= length;
        const stream = new PassThrough({ highWaterMark: 256 * 1024 });
        // Destroyed with our error when the put fails; the request itself ends through the abort signal.
        stream.on('error', () => {});
        this.started = true;
        const sent = this.onPart(stream, length, this.left === 0);
        // Observed here; awaited below.
        sent.catch(() => {});
        this.current = { stream, remaining: length, sent, last: this.left === 0 };
      }
      const part = this.current;
      const n = Math.min(part.remaining, chunk.length);
      part.remaining -= n;
      const piece = chunk.subarray(0, n);
      chunk = chunk.subarray(n);
      if (part.last && part.remaining === 0) {
        this.held = piece; // see _final
        return;
      }
      if (!part.stream.write(piece)) await Promise.race([once(part.stream, 'drain'), part.sent]);
      if (part.remaining === 0) {
        part.stream.end();
        this.current = null;
        await part.sent;
      }
    }
  }
}

/** Collects each part (size unknown up front) into one Buffer. */
class BufferedParts extends Writable {
  private chunks: Buffer[] = [];
  private filled = 0;
  private readonly partSize: number;
  private readonly count: (chunk: Buffer) => void;
  private readonly onPart: OnPart;

  constructor(partSize: number, count: (chunk: Buffer) => void, onPart: OnPart) {
    super();
    this.partSize = partSize;
    this.count = count;
    this.onPart = onPart;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.take(chunk).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.flush(true).then(() => callback(), callback);
  }

  private async take(chunk: Buffer): Promise<void> {
    this.count(chunk);
    while (chunk.length > 0) {
      // A full part goes out only once more bytes arrive, so the last part is known to be last.
      if (this.filled === this.partSize) await this.flush(false);
      const n = Math.min(this.partSize - this.filled, chunk.length);
      this.chunks.push(chunk.subarray(0, n));
      this.filled += n;
      chunk = chunk.subarray(n);
    }
  }

  private async flush(last: boolean): Promise<void> {
    const data = Buffer.concat(this.chunks, this.filled);
    this.chunks = [];
    this.filled = 0;
    await this.onPart(data, data.length, last);
  }
}

function emptyStream(): Readable {
  const stream = new PassThrough();
  stream.end();
  return stream;
}

/** MD5 of a stream's bytes as they pass, for comparing with the ETag S3 returns. */
export function md5Passing(body: Readable): { stream: Readable; md5: () => string } {
  const hash = createHash('md5');
  const out = new PassThrough({ highWaterMark: 256 * 1024 });
  // The SDK pipes `out` without listening for its errors; the request ends through its signal.
  out.on('error', () => {});
  body.on('data', (chunk: Buffer) => hash.update(chunk));
  body.on('error', (err) => out.destroy(err));
  body.pipe(out);
  let digest: string | null = null;
  return { stream: out, md5: () => (digest ??= hash.digest('hex')) };
}
