import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

// A pass-through that digests the bytes flowing through it, so a put or copy learns the checksum
// and size of what it moved without a second read.

export interface DigestStream extends Transform {
  /** Bytes seen so far (final once the stream has ended). */
  readonly bytes: number;
  /** MD5 hex of every byte; throws before the stream has ended. */
  md5(): string;
  /** SHA-256 hex; throws before the end, or when the stream was not created with { sha256: true }. */
  sha256(): string;
}

class DigestTransform extends Transform implements DigestStream {
  bytes = 0;
  private readonly md5Hash: Hash = createHash('md5');
  private readonly sha256Hash: Hash | null;
  private digests: { md5: string; sha256: string | null } | null = null;

  constructor(sha256: boolean) {
    super();
    this.sha256Hash = sha256 ? createHash('sha256') : null;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.md5Hash.update(chunk);
    this.sha256Hash?.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.digests = { md5: this.md5Hash.digest('hex'), sha256: this.sha256Hash?.digest('hex') ?? null };
    callback();
  }

  md5(): string {
    if (!this.digests) throw new Error('digest stream has not ended yet');
    return this.digests.md5;
  }

  sha256(): string {
    if (!this.digests) throw new Error('digest stream has not ended yet');
    if (this.digests.sha256 === null) throw new Error('digest stream was created without sha256');
    return this.digests.sha256;
  }
}

export function createDigestStream(options: { sha256?: boolean } = {}): DigestStream {
  return new DigestTransform(options.sha256 === true);
}
