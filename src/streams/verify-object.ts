import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { IntegrityError } from '../errors.ts';
import { manifestEtag } from './swift-etag.ts';

// Checks a whole object while it is read, so a restore never consumes bytes other than the ones
// the backup recorded: a plain object against its MD5, a large object segment by segment against
// each segment's MD5 and then against the manifest checksum (MD5 of the segment MD5s).

export interface ExpectedObject {
  /** What to call it in errors, e.g. the location. */
  what: string;
  /** The checksum recorded for the backup (MD5 for a plain object, the manifest etag for a large one). */
  checksum: string;
  /** Segments in order (size and MD5 each), or null for a plain object. */
  segments: Array<{ size: number; etag: string }> | null;
  size: number;
}

class VerifyObject extends Transform {
  private readonly expected: ExpectedObject;
  private hash: Hash = createHash('md5');
  private index = 0;
  private inSegment = 0;
  private total = 0;
  private readonly seen: string[] = [];

  constructor(expected: ExpectedObject) {
    super();
    this.expected = expected;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.total += chunk.length;
    if (this.total > this.expected.size) {
      callback(new IntegrityError(`${this.expected.what}: more than the recorded ${this.expected.size} bytes`));
      return;
    }
    const segments = this.expected.segments;
    let rest = chunk;
    try {
      while (segments && rest.length > 0) {
        const seg = segments[this.index];
        const take = Math.min(rest.length, seg.size - this.inSegment);
        this.hash.update(rest.subarray(0, take));
        this.inSegment += take;
        rest = rest.subarray(take);
        if (this.inSegment === seg.size) this.closeSegment();
      }
      if (!segments) this.hash.update(chunk);
    } catch (err) {
      callback(err as Error);
      return;
    }
    callback(null, chunk);
  }

  private closeSegment(): void {
    const seg = this.expected.segments![this.index];
    const md5 = this.hash.digest('hex');
    if (md5 !== seg.etag) {
      throw new IntegrityError(`${this.expected.what}: segment ${this.index + 1} has md5 ${md5}, expected ${seg.etag}`);
    }
    this.seen.push(md5);
    this.index++;
    this.inSegment = 0;
    this.hash = createHash('md5');
  }

  override _flush(callback: TransformCallback): void {
    const e = this.expected;
    if (this.total !== e.size) {
      callback(new IntegrityError(`${e.what}: read ${this.total} bytes, the backup recorded ${e.size}`));
      return;
    }
    const got = e.segments ? manifestEtag(this.seen) : this.hash.digest('hex');
    if (got !== e.checksum.toLowerCase()) {
      callback(new IntegrityError(`${e.what}: checksum ${got}, the backup recorded ${e.checksum}`));
      return;
    }
    callback();
  }
}

/** A pass-through that errors (IntegrityError) as soon as the bytes differ from the expected object. */
export function createObjectVerifier(expected: ExpectedObject): Transform {
  return new VerifyObject(expected);
}
