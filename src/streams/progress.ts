import { Transform, type TransformCallback } from 'node:stream';

// A pass-through that reports how many bytes went by, throttled so a fast stream does not turn
// into a flood of database updates or terminal redraws.

export interface ProgressOptions {
  onProgress(bytesSoFar: number): void;
  /** Least time between two reports while bytes flow; default 1000 ms. */
  intervalMs?: number;
}

export interface ProgressStream extends Transform {
  readonly bytes: number;
}

class ProgressTransform extends Transform implements ProgressStream {
  bytes = 0;
  private last = Number.NEGATIVE_INFINITY;
  private reported = -1;
  private readonly onProgress: (bytes: number) => void;
  private readonly intervalMs: number;

  constructor(options: ProgressOptions) {
    super();
    this.onProgress = options.onProgress;
    this.intervalMs = options.intervalMs ?? 1000;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    const now = performance.now();
    let failed: Error | null = null;
    if (now - this.last >= this.intervalMs) {
      this.last = now;
      failed = this.report();
    }
    if (failed) callback(failed);
    else callback(null, chunk);
  }

  // One last report at the end (even inside the interval) so the final figure is exact.
  override _flush(callback: TransformCallback): void {
    callback(this.reported === this.bytes ? null : this.report());
  }

  private report(): Error | null {
    this.reported = this.bytes;
    try {
      this.onProgress(this.bytes);
      return null;
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  }
}

/** Calls onProgress(bytesSoFar) at most every intervalMs while data flows, and once at the end. */
export function createProgressStream(options: ProgressOptions): ProgressStream {
  return new ProgressTransform(options);
}
