import { BadRequest, IntegrityError, ObjectNotFound, OverLimit } from '../../../errors.ts';
import type { SegmentInfo } from '../../driver.ts';
import { assertSafeKey } from '../../keys.ts';
import { drain, header, oneLine, type Response, readText, unquote } from './http.ts';

// Static Large Object manifests as Swift stores them. A segment path is "/<container>/<object>"
// relative to the account of the manifest, so a manifest cannot name an object of another account;
// python-swiftclient (and with it Trove's tooling) keeps segments in "<container>_segments", so
// segments in other containers of the account are accepted. Refused: a container that is not a
// plain name ("", ".", "..", anything with "/" or control characters), a byte range of a segment
// and a nested manifest (we copy and check whole plain objects), and malformed entries.

interface SloEntry {
  name?: unknown;
  hash?: unknown;
  bytes?: unknown;
  range?: unknown;
  sub_slo?: unknown;
}

const MD5_HEX = /^[0-9a-f]{32}$/;
const MAX_CONTAINER_BYTES = 256;

/** A container name that stays one path segment of the account and shows cleanly in messages. */
export function isPlainContainer(name: unknown): name is string {
  return (
    typeof name === 'string' &&
    name !== '' &&
    name !== '.' &&
    name !== '..' &&
    !name.includes('/') &&
    Buffer.byteLength(name, 'utf8') <= MAX_CONTAINER_BYTES &&
    ![...name].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)
  );
}

/**
 * The container and name prefix of a Dynamic Large Object's X-Object-Manifest
 * ("<container>/<prefix>", percent-encoded), refused unless both are plain.
 */
export function parseDloManifest(manifest: string, what: string): { container: string; prefix: string } {
  const slash = manifest.indexOf('/');
  const shown = JSON.stringify(manifest.slice(0, 200));
  let container: string;
  let prefix: string;
  try {
    container = decodeURIComponent(manifest.slice(0, slash));
    prefix = decodeURIComponent(manifest.slice(slash + 1));
  } catch {
    throw new BadRequest(`${what}: X-Object-Manifest ${shown} is not valid`);
  }
  if (slash < 1 || !isPlainContainer(container) || prefix === '') {
    throw new BadRequest(`${what}: X-Object-Manifest ${shown} is not "<container>/<prefix>"`);
  }
  assertSafeKey(prefix);
  return { container, prefix };
}

/**
 * The segments of a manifest read with ?multipart-manifest=get. Segments in `container` (the
 * manifest's own) carry no container, so callers see them as the driver's own objects.
 */
export function parseSloManifest(entries: unknown, container: string, what: string): SegmentInfo[] {
  if (!Array.isArray(entries)) throw new BadRequest(`${what}: the manifest is not a JSON array`);
  return entries.map((raw: SloEntry, i) => {
    const bad = (why: string) => new BadRequest(`${what}: segment ${i + 1} (${JSON.stringify(raw?.name)}) ${why}`);
    if (typeof raw?.name !== 'string' || !raw.name.startsWith('/')) throw bad('has no "/<container>/<object>" name');
    if (raw.range !== undefined) throw bad('is a byte range of an object; only whole objects are accepted');
    if (raw.sub_slo) throw bad('is itself a large object; nested manifests are not accepted');
    const slash = raw.name.indexOf('/', 1);
    const segContainer = slash < 0 ? '' : raw.name.slice(1, slash);
    if (!isPlainContainer(segContainer)) throw bad('is not in a container of this account');
    const key = raw.name.slice(slash + 1);
    assertSafeKey(key);
    const etag = unquote(typeof raw.hash === 'string' ? raw.hash : '');
    if (!MD5_HEX.test(etag) || !Number.isSafeInteger(raw.bytes) || (raw.bytes as number) < 0) {
      throw bad('has no MD5 or size');
    }
    const segment: SegmentInfo = { key, size: raw.bytes as number, etag };
    if (segContainer !== container) segment.container = segContainer;
    return segment;
  });
}

/** The body of a ?multipart-manifest=put joining segments (in `container` unless they say otherwise). */
export function sloManifestBody(segments: SegmentInfo[], container: string, what: string): string {
  return JSON.stringify(
    segments.map((s) => {
      assertSafeKey(s.key);
      if (s.container !== undefined && !isPlainContainer(s.container)) {
        throw new BadRequest(`${what}: segment ${JSON.stringify(s.key)} names container ${JSON.stringify(s.container)}`);
      }
      if (!MD5_HEX.test(s.etag) || !Number.isSafeInteger(s.size) || s.size < 0) {
        throw new BadRequest(`${what}: segment ${JSON.stringify(s.key)} needs an md5 hex etag and a size`);
      }
      return { path: `/${s.container ?? container}/${s.key}`, etag: s.etag, size_bytes: s.size };
    }),
  );
}

/**
 * Swift's answer to a manifest PUT, in Tern's vocabulary. Returns null for a status the caller maps
 * itself (anything not listed here); throws for the manifest-specific refusals.
 */
export async function checkManifestPut(res: Response, what: string, etag: string): Promise<'ok' | null> {
  if (res.statusCode === 400) {
    const text = await readText(res, 64 * 1024).catch(() => '');
    if (/Etag Mismatch|Size Mismatch/i.test(text)) throw new IntegrityError(`${what}: ${oneLine(text)}`);
    if (/404 Not Found/i.test(text)) throw new ObjectNotFound(`${what}: a segment is missing (${oneLine(text)})`);
    throw new BadRequest(`${what}: Swift refused the manifest (${oneLine(text)})`);
  }
  if (res.statusCode === 422) {
    await drain(res);
    throw new IntegrityError(`${what}: the segments' etags do not join to ${etag}`);
  }
  if (res.statusCode === 413) {
    await drain(res);
    throw new OverLimit(`${what}: too many segments for Swift`);
  }
  if (res.statusCode !== 201) return null;
  await drain(res);
  const got = unquote(header(res, 'etag'));
  if (got !== etag) throw new IntegrityError(`${what}: Swift reports etag ${got || '(none)'}, expected ${etag}`);
  return 'ok';
}
