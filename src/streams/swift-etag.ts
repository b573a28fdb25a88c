import { createHash } from 'node:crypto';

/**
 * The ETag Swift gives a Static Large Object: the MD5 hex of the segments' MD5 hex strings joined
 * together (not of the bytes). Tern uses it as the checksum of every segmented backup, whatever
 * the store, so checksums compare across regions and drivers.
 */
export function manifestEtag(segmentEtags: string[]): string {
  const hash = createHash('md5');
  for (const etag of segmentEtags) hash.update(etag);
  return hash.digest('hex');
}
