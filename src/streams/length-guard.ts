import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { StorageUnavailable } from '../errors.ts';

// A response body handed to callers as a plain byte stream: it fails when the connection ends
// short of the announced length, and a failure of the underlying body reaches the reader as the
// driver's own error. A pass-through Transform costs one callback per chunk, where an async
// generator costs several promises, and a download moves tens of thousands of chunks.

/**
 * Pipes body through a LengthGuard. mapError turns a failure of body into the error the reader
 * sees; destroying the returned stream destroys body, and so does an abort of signal (some HTTP
 * clients stop watching their signal once the response headers arrived).
 */
export function guardBody(
  body: Readable,
  expected: number | undefined,
  what: string,
  mapError: (err: unknown) => Error,
  signal?: AbortSignal,
): Readable {
  const guard = new LengthGuard(expected, what);
  const onAbort = () => guard.destroy(signal?.reason);
  body.on('error', (err) => guard.destroy(mapError(err)));
  guard.on('close', () => {
    signal?.removeEventListener('abort', onAbort);
    if (!body.readableEnded) body.destroy();
  });
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  body.pipe(guard);
  return guard;
}

/** Counts bytes; ending short of (or beyond) `expected` means the connection was cut or lied. */
export class LengthGuard extends Transform {
  private bytes = 0;
  private readonly expected: number | undefined;
  private readonly what: string;

  constructor(expected: number | undefined, what: string) {
    super();
    this.expected = expected;
    this.what = what;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.expected !== undefined && this.bytes !== this.expected) {
      callback(new StorageUnavailable(`${this.what}: the connection ended after ${this.bytes} of ${this.expected} bytes`));
      return;
    }
    callback();
  }
}
