import { BadRequest, Forbidden, NotFound, RegionUnavailable } from '../errors.ts';
import type { Catalog } from './catalog.ts';

// Client of another region's Tern API, for the {"source": {"region", "id"}} form of create: asks
// region A (catalog entry apiUrl, nothing else) for one backup record on the caller's behalf.
//
// The caller's token goes only to the catalog's apiUrl and never into a message or log. Redirects
// are not followed (a 3xx is an error), so the token cannot be steered to another host.

export interface RemoteBackup {
  id: string;
  projectId: string;
  status: string;
  /** Where region A keeps the bytes; still trust-checked by the catalog before use. */
  location: string | null;
  checksum: string | null;
  size: number | null;
  parentId: string | null;
  datastore: { type: string; version: string } | null;
  /** The passphrase envelope; region A shows it only to callers of the backup's own project. */
  encryption: { keyId: string; wrapped: string } | null;
}

const TIMEOUT_MS = 15_000;
const MAX_BODY = 256 * 1024;
const ID = /^[A-Za-z0-9_-]{1,64}$/;

export class SourceRegionApi {
  private readonly catalog: Catalog;
  private readonly timeoutMs: number;

  constructor(catalog: Catalog, options: { timeoutMs?: number } = {}) {
    this.catalog = catalog;
    this.timeoutMs = options.timeoutMs ?? TIMEOUT_MS;
  }

  async getBackup(region: string, projectId: string, id: string, token: string, signal?: AbortSignal): Promise<RemoteBackup> {
    const entry = this.catalog.region(region);
    if (!entry) {
      const names = this.catalog
        .regions()
        .map((r) => r.region)
        .join(', ');
      throw new BadRequest(`region ${region} is not in this region's catalog (known: ${names})`);
    }
    if (!entry.apiUrl) throw new BadRequest(`region ${region} has no API URL in this region's catalog; use "location"`);
    if (!ID.test(id)) throw new BadRequest(`source id ${JSON.stringify(id.slice(0, 70))} is not a backup id`);
    const url = `${entry.apiUrl.replace(/\/+$/, '')}/v1.0/${encodeURIComponent(projectId)}/backups/${encodeURIComponent(id)}`;
    const timeout = AbortSignal.timeout(this.timeoutMs);
    let res: Response;
    try {
      res = await fetch(url, {
        headers: { 'x-auth-token': token, accept: 'application/json' },
        redirect: 'manual',
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (err) {
      signal?.throwIfAborted();
      throw new RegionUnavailable(`the API of region ${region} did not answer: ${networkReason(err, this.timeoutMs)}`);
    }
    const text = await readCapped(res);
    if (res.status === 404) throw new NotFound(`backup ${id} was not found in region ${region}`);
    if (res.status === 401 || res.status === 403) {
      throw new Forbidden(`region ${region} refused to show backup ${id} to this token (${res.status})`);
    }
    if (res.status !== 200) throw new RegionUnavailable(`the API of region ${region} answered ${res.status} for backup ${id}`);
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      throw new RegionUnavailable(`the API of region ${region} did not answer JSON for backup ${id}`);
    }
    return parseBackup(body?.backup, region, id);
  }
}

function parseBackup(b: any, region: string, id: string): RemoteBackup {
  const str = (v: unknown) => (typeof v === 'string' && v.length > 0 ? v : null);
  if (!b || typeof b !== 'object' || b.id !== id || typeof b.status !== 'string' || typeof b.project_id !== 'string') {
    throw new RegionUnavailable(`the API of region ${region} answered an unexpected record for backup ${id}`);
  }
  const ds = b.datastore;
  const keyId = str(b.encryption_key_id);
  const wrapped = str(b.wrapped_passphrase);
  return {
    id: b.id,
    projectId: b.project_id,
    status: b.status,
    location: str(b.locationRef),
    checksum: str(b.checksum),
    size: typeof b.size_bytes === 'number' ? b.size_bytes : null,
    parentId: str(b.parent_id),
    datastore:
      ds && typeof ds.type === 'string' && typeof ds.version === 'string' ? { type: ds.type, version: ds.version } : null,
    encryption: keyId && wrapped ? { keyId, wrapped } : null,
  };
}

async function readCapped(res: Response): Promise<string> {
  if (!res.body) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.length;
    if (size > MAX_BODY) {
      await res.body.cancel().catch(() => {});
      throw new RegionUnavailable('the source region answered an oversized body');
    }
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks).toString('utf8');
}

function networkReason(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; cause?: { code?: string } };
  if (e.name === 'TimeoutError') return `no answer within ${timeoutMs / 1000} s`;
  return e.cause?.code ?? 'connection failed';
}
