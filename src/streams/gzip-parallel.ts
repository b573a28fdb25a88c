import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';

// Trove pipes mariabackup through `gzip -6`, which compresses on one core. This Transform cuts the
// input into fixed-size chunks, compresses them on a small pool of worker threads and emits the
// results in input order as concatenated gzip members (RFC 1952 allows several members in one
// file; `gzip -d`, zlib's gunzip and Node's createGunzip all read them as one stream).
// Memory stays bounded: at most `maxInFlight` chunks are compressing or waiting to be emitted, and
// input is not accepted while that many are out.

export interface ParallelGzipOptions {
  /** zlib level 1-9 (default 6, like gzip). */
  level?: number;
  /** Bytes of input per gzip member (default 1 MiB). */
  chunkSize?: number;
  /** Worker threads (default: available cores, at most 8). */
  workers?: number;
  /** Chunks compressing or waiting to be emitted at once (default 2 x workers). */
  maxInFlight?: number;
}

// Plain JS run by each worker: compress one chunk into a single output buffer (deflate never grows
// data by more than a few bytes per block) and hand back the result and the input buffer, both
// moved rather than copied. Producing no garbage matters: worker heaps do not feel the main
// thread's memory pressure and would otherwise hold on to many MiB of dead buffers.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { gzipSync } = require('node:zlib');
parentPort.on('message', ({ seq, data, length, level }) => {
  // One output buffer big enough for the whole member, so zlib allocates once.
  const chunkSize = Math.max(8192, length + (length >> 8) + 1024);
  const out = gzipSync(data.subarray(0, length), { level, chunkSize });
  try {
    parentPort.postMessage({ seq, out, data }, [out.buffer, data.buffer]);
  } catch {
    // Small results may sit in memory zlib shares; send a copy of those.
    const copy = new Uint8Array(out);
    parentPort.postMessage({ seq, out: copy, data }, [copy.buffer, data.buffer]);
  }
});
`;

interface Pending {
  chunk: Buffer;
  offset: number;
  callback: TransformCallback;
}

export class ParallelGzip extends Transform {
  readonly #level: number;
  readonly #chunkSize: number;
  readonly #maxInFlight: number;
  readonly #workers: Worker[] = [];
  #buf: Buffer;
  #spare: Buffer[] = [];
  #fill = 0;
  #nextSeq = 0;
  #nextEmit = 0;
  #inFlight = 0;
  #peakInFlight = 0;
  #done = new Map<number, Buffer>();
  #pending: Pending | null = null;
  #flushCallback: TransformCallback | null = null;

  constructor(options: ParallelGzipOptions = {}) {
    const chunkSize = options.chunkSize ?? 1024 * 1024;
    super({ readableHighWaterMark: chunkSize });
    this.#level = options.level ?? 6;
    this.#chunkSize = chunkSize;
    const workers = Math.max(1, options.workers ?? Math.min(8, availableParallelism()));
    this.#maxInFlight = Math.max(1, options.maxInFlight ?? 2 * workers);
    if (!Number.isInteger(this.#level) || this.#level < 1 || this.#level > 9) throw new RangeError('gzip level must be 1-9');
    if (!Number.isInteger(chunkSize) || chunkSize < 1024) throw new RangeError('chunkSize must be at least 1024 bytes');
    for (let i = 0; i < workers; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true });
      worker.on('message', (m: { seq: number; out: Uint8Array; data: Uint8Array }) => this.#onResult(m.seq, m.out, m.data));
      worker.on('error', (err) => this.destroy(err));
      this.#workers.push(worker);
    }
    this.#buf = Buffer.allocUnsafeSlow(chunkSize);
  }

  /** Highest number of chunks that were out at the same time (for tests and benchmarks). */
  get peakInFlight(): number {
    return this.#peakInFlight;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#pending = { chunk, offset: 0, callback };
    this.#pump();
  }

  override _flush(callback: TransformCallback): void {
    // An empty input still yields a valid (empty) gzip file.
    if (this.#fill > 0 || this.#nextSeq === 0) this.#dispatch();
    this.#flushCallback = callback;
    this.#maybeFinish();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#stopWorkers();
    callback(err);
  }

  // Copies pending input into the current chunk, dispatching full chunks while there is room.
  #pump(): void {
    const pending = this.#pending;
    if (!pending) return;
    while (pending.offset < pending.chunk.length) {
      if (this.#inFlight >= this.#maxInFlight) return; // resumed by #onResult
      const n = pending.chunk.copy(this.#buf, this.#fill, pending.offset);
      pending.offset += n;
      this.#fill += n;
      if (this.#fill === this.#chunkSize) this.#dispatch();
    }
    this.#pending = null;
    pending.callback();
  }

  #dispatch(): void {
    const seq = this.#nextSeq++;
    // The buffer moves to the worker (it owns its ArrayBuffer: never Buffer's shared pool) and
    // comes back with the result; meanwhile input fills a spare one.
    const view = new Uint8Array(this.#buf.buffer, this.#buf.byteOffset, this.#buf.byteLength);
    const message = { seq, data: view, length: this.#fill, level: this.#level };
    this.#workers[seq % this.#workers.length].postMessage(message, [view.buffer as ArrayBuffer]);
    this.#buf = this.#spare.pop() ?? Buffer.allocUnsafeSlow(this.#chunkSize);
    this.#fill = 0;
    this.#inFlight++;
    this.#peakInFlight = Math.max(this.#peakInFlight, this.#inFlight);
  }

  #onResult(seq: number, out: Uint8Array, data: Uint8Array): void {
    if (this.destroyed) return;
    this.#spare.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    this.#done.set(seq, Buffer.from(out.buffer, out.byteOffset, out.byteLength));
    while (this.#done.has(this.#nextEmit)) {
      const bytes = this.#done.get(this.#nextEmit)!;
      this.#done.delete(this.#nextEmit++);
      this.#inFlight--;
      this.push(bytes);
    }
    this.#pump();
    this.#maybeFinish();
  }

  #maybeFinish(): void {
    if (!this.#flushCallback || this.#inFlight > 0) return;
    const callback = this.#flushCallback;
    this.#flushCallback = null;
    this.#stopWorkers();
    callback();
  }

  #stopWorkers(): void {
    for (const worker of this.#workers.splice(0)) void worker.terminate();
  }
}

export function createParallelGzip(options?: ParallelGzipOptions): ParallelGzip {
  return new ParallelGzip(options);
}
