import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import { S3Client } from '@aws-sdk/client-s3';
import {
  BadRequest,
  IntegrityError,
  ObjectNotFound,
  OverLimit,
  StorageAuthFailed,
  StorageUnavailable,
  TernError,
} from '../../errors.ts';
import { guardBody } from '../../streams/length-guard.ts';
import type { ObjectInfo, ObjectMetadata } from '../driver.ts';

// Pieces of the S3 driver that hold no driver state: the client settings, our metadata names, the
// mapping of S3 failures to Tern errors, and checks on response bodies.

/**
 * Everything explicit: AWS_* variables and ~/.aws files must not change where or how we connect
 * (AWS_CA_BUNDLE in particular breaks plain-HTTP loopback endpoints in some clients).
 */
export function createS3Client(
  config: {
    endpoint: string;
    region: string;
    accessKeyId: string;
    secretAccessKey: string;
    forcePathStyle: boolean;
    connectTimeoutMs?: number;
    idleTimeoutMs?: number;
    maxAttempts?: number;
  },
  [httpAgent, httpsAgent]: [HttpAgent, HttpsAgent],
): S3Client {
  return new S3Client({
    endpoint: config.endpoint,
    region: config.region,
    credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
    forcePathStyle: config.forcePathStyle,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: config.maxAttempts ?? 3,
    retryMode: 'standard',
    defaultsMode: 'standard',
    useDualstackEndpoint: false,
    useFipsEndpoint: false,
    useArnRegion: false,
    disableS3ExpressSessionAuth: true,
    ignoreConfiguredEndpointUrls: true,
    requestHandler: {
      connectionTimeout: config.connectTimeoutMs ?? 10_000,
      socketTimeout: config.idleTimeoutMs ?? 120_000,
      httpAgent,
      httpsAgent,
    },
  });
}

export const META = 'tern-'; // our reserved metadata prefix, hidden from ObjectInfo.metadata
export const MANIFEST = 'tern-manifest';
export const TOTAL_SIZE = 'tern-size';
export const TOTAL_ETAG = 'tern-etag';
export const MD5 = 'tern-md5'; // the MD5 of a multipart-uploaded object, when known at CreateMultipartUpload
export const MAX_MANIFEST_BYTES = 2 * 1024 * 1024;
export const MAX_SEGMENTS = 10_000;
export const MAX_PUT = 5 * 1024 ** 3;
export const PARALLEL = 8;
export const MD5_HEX = /^[0-9a-f]{32}$/;

const AUTH_ERRORS = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'Forbidden', 'InvalidToken']);
const NET_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/** Maps an SDK or socket error to Tern's vocabulary. Messages never carry credentials. */
export function s3Error(err: unknown, what: string, bucket: string, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason ?? err;
  if (err instanceof TernError || !(err instanceof Error)) return err;
  const e = err as Error & { code?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  const name = e.name;
  if (AUTH_ERRORS.has(name) || status === 401 || status === 403) {
    return new StorageAuthFailed(`${what}: S3 refused the credentials (${name}, ${status ?? 'no status'})`);
  }
  if (name === 'NoSuchBucket') return new ObjectNotFound(`${what}: bucket "${bucket}" does not exist`);
  if (name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchUpload' || status === 404) {
    return new ObjectNotFound(`${what}: not found (${name})`);
  }
  if (name === 'BadDigest' || name === 'InvalidDigest') return new IntegrityError(`${what}: S3 rejected the bytes (${name})`);
  if (name === 'PreconditionFailed' || status === 412) return new IntegrityError(`${what}: the object changed (${name})`);
  if (name === 'EntityTooLarge') return new OverLimit(`${what}: object too large for S3 (${name})`);
  if (name === 'InvalidRange' || status === 416) return new BadRequest(`${what}: range not satisfiable`);
  if (
    (status !== undefined && status >= 500) ||
    NET_CODES.has(e.code ?? '') ||
    ['TimeoutError', 'RequestTimeout', 'SlowDown', 'AbortError'].includes(name)
  ) {
    return new StorageUnavailable(`${what}: S3 unavailable (${status ?? e.code ?? name})`, { cause: err });
  }
  if (status !== undefined) return new TernError(`${what}: S3 answered ${status} ${name}`);
  return err;
}

/** A response body passed on as a stream that turns resets into Tern errors and fails when short. */
export function checkedBody(
  body: Readable,
  expected: number | undefined,
  what: string,
  bucket: string,
  signal?: AbortSignal,
): Readable {
  return guardBody(body, expected, what, (err) => s3Error(err, what, bucket, signal) as Error, signal);
}

export function infoOf(
  key: string,
  res: { ContentLength?: number; ETag?: string; Metadata?: Record<string, string>; LastModified?: Date },
): ObjectInfo {
  const meta = lower(res.Metadata);
  const metadata = Object.fromEntries(Object.entries(meta).filter(([k]) => !k.startsWith(META)));
  if (meta[MANIFEST]) {
    return {
      key,
      size: Number(meta[TOTAL_SIZE]),
      etag: meta[TOTAL_ETAG],
      metadata,
      segmented: true,
      lastModified: res.LastModified,
    };
  }
  // A multipart object's ETag is not an MD5 of its bytes; we keep the real MD5 when it was known.
  const etag = meta[MD5] ?? unquote(res.ETag);
  return { key, size: res.ContentLength ?? 0, etag, metadata, segmented: false, lastModified: res.LastModified };
}

export function lower(metadata: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(metadata ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
}

/** User metadata as sent: lower-case keys, our reserved tern-* keys dropped. */
export function metaOut(metadata: ObjectMetadata | undefined): Record<string, string> {
  const entries = Object.entries(metadata ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]);
  return Object.fromEntries(entries.filter(([k]) => !k.startsWith(META)));
}

export function unquote(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '').toLowerCase();
}

export async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
