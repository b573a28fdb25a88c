import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { insertBackup, newBackupRow } from '../../src/db/repos/backups.ts';
import { findDatastoreVersionByName } from '../../src/db/repos/datastores.ts';
import { Keyring } from '../../src/keys/keyring.ts';
import type { ObjectMetadata, SegmentInfo, StorageDriver } from '../../src/storage/driver.ts';
import { segmentKey } from '../../src/storage/keys.ts';
import type { TestRegion } from '../helpers/tern.ts';

// Backups made "by region A" for copy tests: objects in region A's real storage, a COMPLETED row
// in region A's real metadata DB (as its own backup runner would leave them).

export const KEY_A = `region-a-key-${'a'.repeat(32)}`;
export const KEY_B = `region-b-key-${'b'.repeat(32)}`;

export function md5(data: Buffer | string): string {
  return createHash('md5').update(data).digest('hex');
}

export interface SeededBackup {
  id: string;
  key: string;
  location: string;
  checksum: string;
  bytes: Buffer;
  passphrase?: string;
}

export async function seedBackup(
  region: TestRegion,
  options: { segments?: number; segmentSize?: number; parent?: SeededBackup; encrypted?: boolean; project?: string } = {},
): Promise<SeededBackup> {
  const { db, storage, keyring } = region.tern.container;
  const id = randomUUID();
  const project = options.project ?? 'p1';
  const chunks = Array.from({ length: options.segments ?? 3 }, () => randomBytes(options.segmentSize ?? 40 * 1024));
  const key = `${id}.xbstream.gz${options.encrypted ? '.enc' : ''}`;
  const metadata: ObjectMetadata = { datastore: 'mariadb', 'datastore-version': '10.11', 'project-id': project };
  if (options.parent) {
    metadata['parent-location'] = options.parent.location;
    metadata['parent-checksum'] = options.parent.checksum;
  }
  const segments: SegmentInfo[] = [];
  for (const [i, chunk] of chunks.entries()) {
    const put = await storage.put(segmentKey(id, i + 1), Readable.from([chunk]), { md5: md5(chunk) });
    segments.push({ key: segmentKey(id, i + 1), size: put.size, etag: put.etag });
  }
  const manifest = await storage.putManifest(key, segments, { metadata });
  const version = await findDatastoreVersionByName(db.kysely, 'mariadb', '10.11');
  const passphrase = options.encrypted ? Keyring.newPassphrase() : undefined;
  const wrapped = passphrase ? keyring.wrap(passphrase) : undefined;
  await insertBackup(
    db.kysely,
    newBackupRow({
      id,
      project_id: project,
      name: `seed-${id.slice(0, 8)}`,
      status: 'COMPLETED',
      datastore_version_id: version!.id,
      location: storage.locationOf(key),
      size_bytes: manifest.size,
      checksum: manifest.etag,
      parent_id: options.parent?.id ?? null,
      incremental: options.parent ? 1 : 0,
      metadata: JSON.stringify(metadata),
      encryption_key_id: wrapped?.keyId ?? null,
      wrapped_passphrase: wrapped?.wrapped ?? null,
    }),
  );
  return { id, key, location: storage.locationOf(key), checksum: manifest.etag, bytes: Buffer.concat(chunks), passphrase };
}

export async function waitForStatus(region: TestRegion, id: string, statuses: string[], timeoutMs = 30_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await region.call('GET', `/v1.0/p1/backups/${id}`);
    if (statuses.includes(res.body?.backup?.status)) return res.body.backup;
    if (Date.now() > deadline) throw new Error(`backup ${id} still ${res.body?.backup?.status ?? res.status}`);
    await sleep(50);
  }
}

export async function readAll(driver: StorageDriver, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await driver.get(key)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function keysWith(driver: StorageDriver, text: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const obj of driver.list('')) if (obj.key.includes(text)) keys.push(obj.key);
  return keys;
}

export async function rowCount(region: TestRegion): Promise<number> {
  const rows = await region.tern.container.db.kysely.selectFrom('backups').select('id').execute();
  return rows.length;
}
