import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import type { Db } from '../../src/db/connect.ts';
import { type BackupRow, findBackup, insertBackup, newBackupRow } from '../../src/db/repos/backups.ts';
import type { JobContext } from '../../src/jobs/types.ts';
import { Catalog } from '../../src/regions/catalog.ts';
import type { ObjectMetadata, PutOptions, SegmentInfo, StorageDriver } from '../../src/storage/driver.ts';
import { FsDriver } from '../../src/storage/drivers/fs.ts';
import { segmentKey } from '../../src/storage/keys.ts';

// Two fs "regions" on real folders: region1 holds source backups, region2 is where copies go.

export const CONTAINER = 'database_backups';
export const MARIADB: ObjectMetadata = { datastore: 'mariadb', 'datastore-version': '10.11', lsn: '1234567' };

export interface Regions {
  dir: string;
  root1: string;
  root2: string;
  source: FsDriver;
  target: FsDriver;
  catalog: Catalog;
  close(): Promise<void>;
}

export function makeRegions(): Regions {
  const dir = mkdtempSync(join(tmpdir(), 'tern-copy-'));
  const root1 = join(dir, 'region1');
  const root2 = join(dir, 'region2');
  const source = new FsDriver({ root: root1, container: CONTAINER });
  const target = new FsDriver({ root: root2, container: CONTAINER });
  const catalog = new Catalog([
    { region: 'region2', driver: target },
    { region: 'region1', driver: source },
  ]);
  return {
    dir,
    root1,
    root2,
    source,
    target,
    catalog,
    async close() {
      await Promise.all([source.close(), target.close()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function md5(data: Buffer | string): string {
  return createHash('md5').update(data).digest('hex');
}

export async function seedPlain(driver: StorageDriver, bytes: Buffer, metadata: ObjectMetadata = MARIADB): Promise<string> {
  const key = `${randomUUID()}.xbstream.gz.enc`;
  await driver.put(key, Readable.from([bytes]), { metadata });
  return driver.locationOf(key);
}

/** A large object: each chunk a segment "<id>_%08d", joined by a manifest "<id>.tar.gz". */
export async function seedSegmented(
  driver: StorageDriver,
  chunks: Buffer[],
  metadata: ObjectMetadata = { datastore: 'postgresql', 'datastore-version': '15' },
): Promise<{ location: string; key: string; segments: SegmentInfo[] }> {
  const id = randomUUID();
  const segments: SegmentInfo[] = [];
  for (const [i, chunk] of chunks.entries()) {
    const key = segmentKey(id, i + 1);
    const put = await driver.put(key, Readable.from([chunk]), { md5: md5(chunk) });
    segments.push({ key, size: put.size, etag: put.etag });
  }
  const key = `${id}.tar.gz`;
  await driver.putManifest(key, segments, { metadata });
  return { location: driver.locationOf(key), key, segments };
}

export async function insertCopyRow(db: Db, location: string, fields: Partial<BackupRow> = {}): Promise<string> {
  const id = randomUUID();
  await insertBackup(db.kysely, newBackupRow({ id, project_id: 'p1', name: 'copy', source_location: location, ...fields }));
  return id;
}

export async function row(db: Db, id: string): Promise<BackupRow> {
  const r = await findBackup(db.kysely, id);
  if (!r) throw new Error(`backup ${id} is gone`);
  return r;
}

export function jobContext(signal: AbortSignal = new AbortController().signal): JobContext {
  return { jobId: 1, attempt: 1, finalAttempt: true, signal };
}

export async function readAll(driver: StorageDriver, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await driver.get(key)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function listKeys(driver: StorageDriver, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  for await (const obj of driver.list(prefix)) keys.push(obj.key);
  return keys;
}

/** Every file under a folder, as relative paths: catches temp files the driver's list would hide. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

/**
 * The real target driver with its PUTs counted, and an optional fault after the n-th PUT (the only
 * faults here that cannot be caused for real: a lost lease / shutdown, or a storage blip).
 */
export function spyTarget(
  real: StorageDriver,
  options: { after?: number; fault?: (key: string) => unknown } = {},
): { driver: StorageDriver; puts: string[]; heads: string[] } {
  const puts: string[] = [];
  const heads: string[] = [];
  const driver: StorageDriver = {
    kind: real.kind,
    endpoint: real.endpoint,
    locationOf: (key) => real.locationOf(key),
    keyOf: (location) => real.keyOf(location),
    head: (key, signal) => {
      heads.push(key);
      return real.head(key, signal);
    },
    get: (key, opts) => real.get(key, opts),
    async put(key: string, body: Readable, opts?: PutOptions) {
      const result = await real.put(key, body, opts);
      puts.push(key);
      // A fault that returns a promise (a replacement upload, say) is over before the copy goes on.
      if (options.after !== undefined && puts.length === options.after) await options.fault?.(key);
      return result;
    },
    delete: (key, signal) => real.delete(key, signal),
    list: (prefix, signal) => real.list(prefix, signal),
    segments: (key, signal) => real.segments(key, signal),
    headSegment: (segment, signal) => real.headSegment(segment, signal),
    getSegment: (segment, opts) => real.getSegment(segment, opts),
    putManifest: (key, segments, opts) => real.putManifest(key, segments, opts),
    limits: () => real.limits(),
    close: () => real.close(),
  };
  return { driver, puts, heads };
}
