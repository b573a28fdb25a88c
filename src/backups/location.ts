import { BadRequest, Forbidden, NotFound } from '../errors.ts';
import type { Catalog } from '../regions/catalog.ts';
import type { ObjectInfo, SegmentInfo, StorageDriver } from '../storage/driver.ts';
import { PROJECT_META } from './object-names.ts';

// Trust and ownership of a copy source, decided before any byte moves:
//  1. the catalog's trust check (src/regions/catalog.ts): under a trusted storage endpoint, no
//     user-info, parsed without contacting anything;
//  2. the object exists and is complete: HEAD, and for a large object a readable manifest whose
//     segments are all there with the sizes and checksums it lists;
//  3. it belongs to the caller's project: the project-id metadata Tern writes on every object, or
//     the Swift account of the project (AUTH_<project>), or the source region's API vouched for it.

export interface InspectedSource {
  location: string;
  region: string;
  driver: StorageDriver;
  key: string;
  head: ObjectInfo;
  segments: SegmentInfo[] | null;
}

const SEGMENT_CHECKS_AT_ONCE = 8;

/** Catalog check only (no connection); the error names no credentials. */
export function trustedLocation(catalog: Catalog, location: string) {
  return catalog.resolve(location);
}

/**
 * HEADs a trusted location and checks it is complete and the project's. `vouched` is set when the
 * source region's API answered for this caller's project, which is proof of ownership by itself.
 */
export async function inspectSource(
  catalog: Catalog,
  location: string,
  projectId: string,
  options: { vouched?: boolean; signal?: AbortSignal } = {},
): Promise<InspectedSource> {
  const { region, driver, key } = trustedLocation(catalog, location);
  const head = await driver.head(key, options.signal);
  if (!head) throw new NotFound(`no backup object at ${location}: it may have been deleted, or the location is mistyped`);
  if (!options.vouched) checkOwner(location, head, projectId);
  const segments = await driver.segments(key, options.signal);
  if (segments) await checkComplete(driver, location, head, segments, options.signal);
  return { location, region, driver, key, head, segments };
}

function checkOwner(location: string, head: ObjectInfo, projectId: string): void {
  const owner = head.metadata[PROJECT_META];
  if (owner !== undefined) {
    if (owner !== projectId) throw new Forbidden(`the backup at ${location} belongs to another project`);
    return;
  }
  const account = /\/v1\/AUTH_([^/]+)\//.exec(new URL(location).pathname)?.[1];
  if (account !== undefined && decodeURIComponent(account) === projectId) return;
  throw new Forbidden(
    `cannot tell that the backup at ${location} belongs to project ${projectId} (no project-id metadata, not in the project's account); copy it with {"source": {"region", "id"}}`,
  );
}

/** Every segment the manifest names must be there, whole: a copy of a broken object is refused up front. */
async function checkComplete(
  driver: StorageDriver,
  location: string,
  head: ObjectInfo,
  segments: SegmentInfo[],
  signal?: AbortSignal,
): Promise<void> {
  if (segments.length === 0) throw new BadRequest(`the backup at ${location} is a manifest with no segments`);
  const total = segments.reduce((n, s) => n + s.size, 0);
  if (total !== head.size) {
    throw new BadRequest(`the backup at ${location} is incomplete: its segments hold ${total} of ${head.size} bytes`);
  }
  let next = 0;
  const problems: string[] = [];
  const worker = async () => {
    while (next < segments.length && problems.length === 0) {
      const n = next++;
      const seg = segments[n];
      const there = await driver.headSegment(seg, signal);
      if (!there) problems.push(`segment ${n + 1} of ${segments.length} is missing`);
      else if (there.size !== seg.size || there.etag !== seg.etag) {
        problems.push(`segment ${n + 1} of ${segments.length} does not match its manifest entry`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(SEGMENT_CHECKS_AT_ONCE, segments.length) }, worker));
  if (problems.length > 0) throw new BadRequest(`the backup at ${location} is incomplete: ${problems[0]}`);
}
