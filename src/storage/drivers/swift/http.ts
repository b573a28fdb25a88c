import { Transform, type TransformCallback } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import {
  BadRequest,
  IntegrityError,
  OverLimit,
  StorageAuthFailed,
  StorageFull,
  StorageUnavailable,
  TernError,
} from '../../../errors.ts';

// HTTP plumbing shared by Swift auth and the driver: error mapping, small-body reads, backoff and a
// byte meter. Messages name the operation and URL but never a token, key or password.

export type Response = Dispatcher.ResponseData;

/** Maps a thrown error to Tern's vocabulary; an abort surfaces as the signal's reason. */
export function netError(err: unknown, what: string, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason ?? err;
  if (err instanceof TernError) return err;
  const e = err as { code?: string; name?: string; message?: string };
  const why = e?.code ?? e?.name ?? 'error';
  return new StorageUnavailable(`${what}: ${why} (${oneLine(e?.message ?? String(err))})`, { cause: err });
}

const SOCKET_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'EHOSTUNREACH']);

/** An error of the connection itself (reset, refused, undici socket errors), not of the data. */
export function isSocketError(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return typeof code === 'string' && (SOCKET_CODES.has(code) || code.startsWith('UND_ERR_'));
}

/** A 5xx (or other status we cannot act on) as a transient failure, after draining the body. */
export async function statusError(res: Response, what: string): Promise<StorageUnavailable> {
  const text = await readText(res, 512).catch(() => '');
  return new StorageUnavailable(`${what}: Swift answered ${res.statusCode}${text ? ` (${oneLine(text)})` : ''}`);
}

/** Reads a small response body as text, failing rather than buffering more than limit bytes. */
export async function readText(res: Response, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      res.body.destroy();
      throw new StorageUnavailable(`response body larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function readJson(res: Response, limit: number, what: string): Promise<unknown> {
  const text = await readText(res, limit);
  try {
    return JSON.parse(text);
  } catch {
    throw new StorageUnavailable(`${what}: Swift answered ${res.statusCode} with a body that is not JSON`);
  }
}

export async function drain(res: Response): Promise<void> {
  await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
}

/** Exponential backoff with jitter, cut short by the signal. */
export async function backoff(attempt: number, baseMs: number, signal?: AbortSignal): Promise<void> {
  const ms = baseMs * 4 ** attempt * (0.5 + Math.random() / 2);
  await sleep(ms, undefined, { signal });
}

export function header(res: Response, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function unquote(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '').toLowerCase();
}

/** A short single-line excerpt for messages. */
export function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 200 ? `${flat.slice(0, 200)}...` : flat;
}

/**
 * Counts bytes flowing through and fails (IntegrityError) as soon as more than `expected` pass, or
 * at the end when fewer did. Failing before the end keeps a chunked upload from completing.
 */
export class Meter extends Transform {
  bytes = 0;
  private readonly expected: number | undefined;
  private readonly what: string;

  constructor(what: string, expected?: number) {
    super();
    this.what = what;
    this.expected = expected;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.expected !== undefined && this.bytes > this.expected) {
      callback(new IntegrityError(`${this.what}: expected ${this.expected} bytes, got more`));
      return;
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.expected !== undefined && this.bytes !== this.expected) {
      callback(new IntegrityError(`${this.what}: expected ${this.expected} bytes, got ${this.bytes}`));
      return;
    }
    callback();
  }
}

/**
 * A refused upload: 413 "Upload exceeds quota." (container_quotas, account_quotas) or 507 (no
 * disk left) is StorageFull; any other 413 (an object above max_file_size) is OverLimit.
 */
export async function fullOrTooLarge(res: Response, what: string): Promise<Error> {
  const text = await readText(res, 4096).catch(() => '');
  const detail = text ? `: ${oneLine(text)}` : '';
  if (res.statusCode === 507 || /quota/i.test(text)) {
    return new StorageFull(`storage full: Swift refused ${what} (${res.statusCode}${detail})`);
  }
  return new OverLimit(`${what}: too large for Swift (413${detail})`);
}

/** An answer the operation has no meaning for, in Tern's vocabulary. */
export async function unexpected(res: Response, what: string): Promise<Error> {
  if (res.statusCode >= 500) return statusError(res, what);
  const text = await readText(res, 4096).catch(() => '');
  const detail = text ? ` (${oneLine(text)})` : '';
  if (res.statusCode === 403) return new StorageAuthFailed(`${what}: forbidden (403)${detail}`);
  if (res.statusCode === 413) return new OverLimit(`${what}: too large for Swift (413)`);
  return new BadRequest(`${what}: Swift answered ${res.statusCode}${detail}`);
}
