import { StorageUnavailable } from '../../../errors.ts';
import type { SwiftClient } from './client.ts';
import { drain, readJson, unexpected } from './http.ts';
import type { SwiftListing } from './objects.ts';

const PAGE = 1000;
const MAX_LISTING_BODY = 16 * 1024 * 1024;

/** A container's listing entries whose names start with prefix, in name order, page by page. */
export async function* listContainer(
  client: SwiftClient,
  container: string,
  prefix: string,
  what: string,
  signal?: AbortSignal,
): AsyncIterable<SwiftListing> {
  let marker = '';
  for (;;) {
    const query = `?format=json&limit=${PAGE}&prefix=${encodeURIComponent(prefix)}&marker=${encodeURIComponent(marker)}`;
    const path = `/${encodeURIComponent(container)}${query}`;
    const res = await client.send({ what, method: 'GET', path, replayable: true, signal });
    if (res.statusCode === 404) return drain(res);
    if (res.statusCode === 204) return drain(res);
    if (res.statusCode !== 200) throw await unexpected(res, what);
    const page = (await readJson(res, MAX_LISTING_BODY, what)) as SwiftListing[];
    if (!Array.isArray(page)) throw new StorageUnavailable(`${what}: listing is not a JSON array`);
    yield* page;
    if (page.length < PAGE) return;
    marker = page[page.length - 1].name;
  }
}
