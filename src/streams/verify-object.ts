import { createHash, type Hash } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
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

/** The running check: fed the bytes in order, it throws IntegrityError as soon as they differ. */
class ObjectCheck {
  private readonly expected: ExpectedObject;
  private hash: Hash = createHash('md5');
  private index = 0;
  private inSegment = 0;
  private total = 0;
  private readonly seen: string[] = [];

  constructor(expected: ExpectedObject) {
    this.expected = expected;
  }

  /** True between two segments of a large object: every byte so far has been checked. */
  get betweenSegments(): boolean {
    return this.expected.segments !== null && this.inSegment === 0;
  }

  update(chunk: Buffer): void {
    const e = this.expected;
    this.total += chunk.length;
    if (this.total > e.size) throw new IntegrityError(`${e.what}: size mismatch: more than the recorded ${e.size} bytes`);
    if (!e.segments) {
      this.hash.update(chunk);
      return;
    }
    let rest = chunk;
    while (rest.length > 0) {
      const seg = e.segments[this.index];
      const take = Math.min(rest.length, seg.size - this.inSegment);
      this.hash.update(rest.subarray(0, take));
      this.inSegment += take;
      rest = rest.subarray(take);
      if (this.inSegment === seg.size) this.closeSegment();
    }
  }

  end(): void {
    const e = this.expected;
    if (this.total !== e.size) {
      throw new IntegrityError(`${e.what}: size mismatch: read ${this.total} bytes, the backup recorded ${e.size}`);
    }
    const got = e.segments ? manifestEtag(this.seen) : this.hash.digest('hex');
    if (got !== e.checksum.toLowerCase()) {
      throw new IntegrityError(`${e.what}: checksum mismatch: ${got}, the backup recorded ${e.checksum}`);
    }
  }

  private closeSegment(): void {
    const seg = this.expected.segments![this.index];
    const md5 = this.hash.digest('hex');
    if (md5 !== seg.etag) {
      throw new IntegrityError(
        `${this.expected.what}: checksum mismatch in segment ${this.index + 1}: md5 ${md5}, expected ${seg.etag}`,
      );
    }
    this.seen.push(md5);
    this.index++;
    this.inSegment = 0;
    this.hash = createHash('md5');
  }
}

export interface VerifiedRead {
  /**
   * The bytes. They end only after the whole object checked out; on a mismatch the stream is
   * destroyed with the IntegrityError before the last chunk of the bad segment is passed on.
   */
  stream: Readable;
  /**
   * What the read found wrong with the bytes, or null. When the reader stopped early (a tool
   * failed on damaged bytes before the end of their segment, where the check is), the rest of
   * that segment is read for the verdict, and not passed on. Storage errors are not verdicts.
   */
  verdict(): Promise<IntegrityError | null>;
}

/** Reads `body` through the check; see VerifiedRead. */
export function verifiedRead(body: Readable, expected: ExpectedObject): VerifiedRead {
  const check = new ObjectCheck(expected);
  const out = new PassThrough();
  let settle: (found: IntegrityError | null) => void = () => {};
  const verdict = new Promise<IntegrityError | null>((resolve) => {
    settle = resolve;
  });
  // After the reader left: body is read on only to judge the segment it was in.
  let judging = false;
  const judged = (found: IntegrityError | null) => {
    settle(found);
    body.destroy();
  };
  const checked = (run: () => void): boolean => {
    try {
      run();
      return true;
    } catch (err) {
      out.destroy(err as Error);
      judged(err as IntegrityError);
      return false;
    }
  };
  body.on('data', (chunk: Buffer) => {
    if (!checked(() => check.update(chunk))) return;
    if (judging || out.destroyed) {
      if (check.betweenSegments) judged(null);
      return;
    }
    if (!out.write(chunk)) body.pause();
  });
  out.on('drain', () => body.resume());
  body.once('end', () => {
    if (checked(() => check.end())) {
      settle(null);
      if (!out.destroyed) out.end();
    }
  });
  body.once('error', (err) => {
    out.destroy(err);
    settle(null);
  });
  out.once('close', () => {
    if (body.readableEnded || body.destroyed) return;
    if (check.betweenSegments) return judged(null);
    judging = true;
    body.resume();
  });
  return { stream: out, verdict: () => verdict };
}
