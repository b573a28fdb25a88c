import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { CliExit, type CliIo } from './context.ts';

// Where each region's API is, as the CLI learns it from the Tern configuration of the region it
// runs next to (--config or TERN_CONFIG, the file `tern serve` reads): this region is `region` at
// `publicUrl` (else http://listen.host:listen.port), the others are the catalog's `apiUrl`s. Only
// those fields are read: the file's secrets are never used, and nothing is written (loading it as
// `tern serve` does would create a data dir and a development token).

export interface RegionUrls {
  file: string;
  /** This region's name and API URL. */
  current: { region: string; url: string };
  /** Catalog regions by name; url is null when the entry has no apiUrl. */
  others: Map<string, string | null>;
}

const HTTP_URL = /^https?:\/\/[^/]/;

/** The config file to read regions from, if one was given. */
export function regionsFile(option: string | undefined, io: CliIo): string | undefined {
  return option ?? (io.env.TERN_CONFIG || undefined);
}

export function readRegionUrls(file: string): RegionUrls {
  let raw: any;
  try {
    raw = YAML.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new CliExit(`cannot read regions from ${file}: ${(err as Error).message}`, 2);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new CliExit(`${file} does not hold a configuration object`, 2);
  const region = typeof raw.region === 'string' ? raw.region : 'local';
  const host = typeof raw.listen?.host === 'string' ? raw.listen.host : '127.0.0.1';
  const port = Number.isInteger(raw.listen?.port) ? raw.listen.port : 8779;
  const url = typeof raw.publicUrl === 'string' ? raw.publicUrl : `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const others = new Map<string, string | null>();
  for (const entry of Array.isArray(raw.catalog) ? raw.catalog : []) {
    if (typeof entry?.region === 'string') others.set(entry.region, typeof entry.apiUrl === 'string' ? entry.apiUrl : null);
  }
  return { file, current: { region, url: url.replace(/\/+$/, '') }, others };
}

/** The API URL of a named region: this region's own, or a catalog entry's. */
export function regionUrl(regions: RegionUrls, name: string): string {
  const url = name === regions.current.region ? regions.current.url : regions.others.get(name);
  if (url === undefined) {
    const known = [regions.current.region, ...regions.others.keys()].join(', ');
    throw new CliExit(`region ${name} is neither this region nor in the catalog of ${regions.file} (known: ${known})`, 2);
  }
  if (url === null) throw new CliExit(`the catalog entry of region ${name} in ${regions.file} has no apiUrl`, 2);
  if (!HTTP_URL.test(url)) throw new CliExit(`the API URL of region ${name} in ${regions.file} is not an http(s) URL`, 2);
  return url;
}
