import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { BIN } from '../../src/instances/binaries.ts';
import { privateTempDir, removeQuietly, writeSecretFile } from '../../src/instances/process.ts';
import { type ManagedServer, mariadbClientConfig, startMariadb } from '../../src/instances/provisioner.ts';
import { SwiftDriver } from '../../src/storage/drivers/swift.ts';
import { manifestEtag } from '../../src/streams/swift-etag.ts';
import { Cleanup, ensureDatastorePackages, makeTestDir, mariadbSql } from '../datastores/helpers.ts';
import {
  containerKeys,
  dropContainer,
  emptiedContainer,
  ensureSwiftRegions,
  swiftConfig,
  swiftProxyUrl,
  tempAuth,
} from '../helpers/swift.ts';
import { restoreAndSnapshot, type ServedApi, snapshot, startServed, swiftStorage } from './served.ts';

// Backups made by Trove's own pipeline, not by Tern: `mariabackup --backup --stream=xbstream | gzip
// | openssl enc -aes-256-cbc -md sha512 -pbkdf2 -iter 10000 -salt` under the deployment-wide key,
// streamed into region1's Swift by python-swiftclient as a Static Large Object (segments in
// "<container>_segments", as swiftclient puts them) with the metadata Trove writes (Datastore,
// Datastore-Version, Lsn; Parent-Location and Parent-Checksum on the incremental). A `tern serve`
// region2 with that key as encryption.legacyPassphrase copies them by `location` and by
// `restore_from` and restores every copy with the data of the source at backup time. A backup Trove
// stored as one plain object (smaller than its segment size) is copied in ranged parts; one stored
// as a Dynamic Large Object, as older Trove releases wrote them (segments "<object>_%08d" beside a
// zero-byte manifest with X-Object-Manifest), is copied segment by segment.

const MiB = 1024 * 1024;
const KEY = `trove-backup-aes-cbc-key-${randomBytes(8).toString('hex')}`;
const PASSWORD = `r00t-${randomBytes(8).toString('hex')}`;
const TABLES = ['shop.customers', 'shop.orders', 'shop.audit', 'shop.added'];
const LOAD = `
CREATE DATABASE shop;
USE shop;
CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(64), email VARCHAR(128)) ENGINE=InnoDB;
INSERT INTO shop.customers SELECT seq, CONCAT('name-', seq), CONCAT('c', seq, '@example.org') FROM seq_1_to_8000;
CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT, amount DECIMAL(10,2), note TEXT) ENGINE=InnoDB;
INSERT INTO shop.orders (customer_id, amount, note) SELECT 1 + seq % 8000, seq * 1.25, REPEAT(MD5(seq), 4) FROM seq_1_to_30000;
CREATE TABLE shop.audit (id INT PRIMARY KEY, event VARCHAR(64)) ENGINE=Aria;
INSERT INTO shop.audit SELECT seq, CONCAT('event-', seq) FROM seq_1_to_3000;
`;
const CHANGE = `
USE shop;
INSERT INTO shop.orders (customer_id, amount, note) SELECT 1 + seq % 8000, seq, 'after the full backup' FROM seq_1_to_5000;
UPDATE shop.customers SET email = CONCAT('new-', id, '@example.org') WHERE id % 5 = 0;
DELETE FROM shop.customers WHERE id > 7500;
CREATE TABLE shop.added (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO shop.added SELECT seq, HEX(seq) FROM seq_1_to_500;
`;

/** region2's copy part size: a plain source object larger than this is copied in ranged parts. */
const PART = 512 * 1024;
const SWIFT_ENV = { ST_AUTH: `${swiftProxyUrl(1)}/auth/v1.0`, ST_USER: 'test:tester', ST_KEY: 'testing' };

interface TroveBackup {
  location: string;
  checksum: string;
  lsn: string;
  size: number;
}

/** Exit code and stderr of a child; the promise settles when it closed. */
async function finished(child: ChildProcess, name: string): Promise<string> {
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const [code] = await once(child, 'close');
  if (code !== 0) throw new Error(`${name} exited with ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  return stderr;
}

/**
 * Trove's backup of `server`, streamed into region1's Swift: four processes joined by pipes
 * (argument arrays, no shell). The key goes to openssl as env:, the same KDF and cipher as
 * Trove's `-pass pass:KEY` without putting it on a command line.
 */
async function troveBackup(
  server: ManagedServer,
  container: string,
  options: { parent?: TroveBackup; form?: 'slo' | 'dlo' | 'plain' } = {},
): Promise<TroveBackup> {
  const { parent, form = 'slo' } = options;
  const object = `${randomUUID()}.xbstream.gz.enc`;
  const tmp = await privateTempDir('tern-trove-');
  // A stage that stalls is killed rather than holding the test until its timeout.
  const signal = AbortSignal.timeout(300_000);
  try {
    const defaults = join(tmp, 'client.cnf');
    await writeSecretFile(defaults, mariadbClientConfig(server, 'root', PASSWORD));
    const mariabackup = spawn(
      BIN.mariabackup,
      [
        `--defaults-file=${defaults}`,
        '--backup',
        '--stream=xbstream',
        `--target-dir=${tmp}`,
        ...(parent ? [`--incremental-lsn=${parent.lsn}`] : []),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], signal },
    );
    const gzip = spawn('gzip', ['-c'], { stdio: [mariabackup.stdout!, 'pipe', 'pipe'], signal });
    const openssl = spawn(
      'openssl',
      ['enc', '-aes-256-cbc', '-md', 'sha512', '-pbkdf2', '-iter', '10000', '-salt', '-pass', 'env:TROVE_KEY'],
      { stdio: [gzip.stdout!, 'pipe', 'pipe'], env: { PATH: process.env.PATH, TROVE_KEY: KEY }, signal },
    );
    // swiftclient streams stdin only as an SLO (or one object); a DLO is written as older Trove did.
    const segmentArgs = form === 'slo' ? ['--use-slo', '--segment-size', String(MiB)] : [];
    const upload =
      form === 'dlo'
        ? putDloSegments(openssl.stdout!, container, object)
        : finished(
            spawn('swift', ['upload', ...segmentArgs, '--object-name', object, container, '-'], {
              stdio: [openssl.stdout!, 'ignore', 'pipe'],
              env: { PATH: process.env.PATH, ...SWIFT_ENV },
              signal,
            }),
            'swift upload',
          );
    // Each stdout now belongs to the next process; the parent's copy would keep 'close' from firing.
    for (const producer of form === 'dlo' ? [mariabackup, gzip] : [mariabackup, gzip, openssl]) producer.stdout!.destroy();
    const [log] = await Promise.all([
      finished(mariabackup, 'mariabackup'),
      finished(gzip, 'gzip'),
      finished(openssl, 'openssl'),
      upload,
    ]);
    assert.match(log, /completed OK!/);
    const lsn = /The latest check point \(for incremental\): '(\d+)'/.exec(log)?.[1];
    assert.ok(lsn, 'mariabackup printed the checkpoint LSN');
    const location = `${swiftProxyUrl(1)}/v1/AUTH_test/${container}/${object}`;
    // Trove writes its metadata on the manifest once the tool finished (the LSN is known only then).
    const meta = { Datastore: 'mariadb', 'Datastore-Version': '10.11', Lsn: lsn };
    if (parent) Object.assign(meta, { 'Parent-Location': parent.location, 'Parent-Checksum': parent.checksum });
    if (form === 'dlo') {
      await putDloManifest(container, object, meta);
    } else {
      const headers = Object.entries(meta).flatMap(([k, v]) => ['-H', `X-Object-Meta-${k}: ${v}`]);
      await finished(
        spawn('swift', ['post', ...headers, container, object], { env: { PATH: process.env.PATH, ...SWIFT_ENV } }),
        'swift post',
      );
    }
    const driver = new SwiftDriver(swiftConfig(1, container));
    try {
      const head = await driver.head(object);
      assert.equal(head?.segmented, form !== 'plain');
      assert.equal(head.metadata.lsn, lsn);
      const segments = await driver.segments(object);
      if (form === 'dlo') {
        assert.ok(
          segments!.length > 1 && segments!.every((s) => s.container === undefined && s.key.startsWith(`${object}_`)),
          'segments "<object>_%08d" beside the manifest',
        );
      } else if (form === 'slo') {
        assert.ok(
          segments!.length > 1 && segments!.every((s) => s.container === `${container}_segments`),
          'segments in <container>_segments',
        );
      } else {
        assert.equal(segments, null, 'one plain object');
      }
      return { location, checksum: head.etag, lsn, size: head.size };
    } finally {
      await driver.close();
    }
  } finally {
    await removeQuietly(tmp);
  }
}

/** Older Trove's layout of a large backup: segments "<object>_%08d" of 1 MiB in the same container. */
async function putDloSegments(body: Readable, container: string, object: string): Promise<void> {
  const driver = new SwiftDriver(swiftConfig(1, container));
  try {
    let n = 0;
    let pending: Buffer[] = [];
    let filled = 0;
    const flush = async () => {
      n++;
      await driver.put(`${object}_${String(n).padStart(8, '0')}`, Readable.from([Buffer.concat(pending, filled)]));
      pending = [];
      filled = 0;
    };
    for await (const chunk of body as AsyncIterable<Buffer>) {
      for (let rest = chunk; rest.length > 0; ) {
        const piece = rest.subarray(0, MiB - filled);
        pending.push(piece);
        filled += piece.length;
        rest = rest.subarray(piece.length);
        if (filled === MiB) await flush();
      }
    }
    if (filled > 0) await flush();
  } finally {
    await driver.close();
  }
}

/** The zero-byte manifest with X-Object-Manifest (and Trove's metadata), written once the tool finished. */
async function putDloManifest(container: string, object: string, meta: Record<string, string>): Promise<void> {
  const { token, storageUrl } = await tempAuth(1);
  const headers: Record<string, string> = {
    'x-auth-token': token,
    'x-object-manifest': `${encodeURIComponent(container)}/${encodeURIComponent(`${object}_`)}`,
  };
  for (const [k, v] of Object.entries(meta)) headers[`x-object-meta-${k}`] = v;
  const res = await fetch(`${storageUrl}/${container}/${object}`, { method: 'PUT', headers, body: '' });
  assert.equal(res.status, 201, await res.text());
}

describe("Trove's own backups (mariabackup | gzip | openssl, swift upload as SLO, DLO or one object) copied and restored by Tern", {
  timeout: 900_000,
}, () => {
  const run = randomBytes(4).toString('hex');
  const troveContainer = `tern_trove_${run}`;
  const c2 = `tern_trove_${run}_r2`;
  const token = randomBytes(16).toString('hex');
  const cleanup = new Cleanup();
  let source: ManagedServer;
  let r2: ServedApi;
  let full: TroveBackup;
  let inc: TroveBackup;
  let atFull: string;
  let atInc: string;
  let plain: TroveBackup;
  let dlo: TroveBackup;
  /** Trove's objects (manifests, the plain object, the DLO's segments) before any copy ran. */
  let troveKeys: string[];
  const copies: string[] = [];

  before(async () => {
    ensureDatastorePackages();
    await ensureSwiftRegions();
    const dir = cleanup.dir(makeTestDir('trove'));
    source = cleanup.server(await startMariadb({ dataDir: join(dir, 'source'), rootPassword: PASSWORD }));
    // Project "test" owns the Swift account AUTH_test where Trove stored them (Trove writes no project-id).
    r2 = await startServed(
      'region2',
      {
        storage: swiftStorage(2, c2, MiB),
        encryption: { keys: [{ secret: randomBytes(32).toString('base64') }], legacyPassphrase: KEY },
        catalog: [{ region: 'region1', storage: swiftStorage(1, troveContainer, MiB) }],
        copy: { parallelism: 2, partSize: PART },
      },
      { token, project: 'test' },
    );
  });

  after(async () => {
    if (r2) {
      for (const i of (await r2.call('GET', '/instances').catch(() => null))?.body?.instances ?? []) {
        await r2.remove(`/instances/${i.id}`).catch(() => {});
      }
      for (const id of [...copies].reverse()) await r2.remove(`/backups/${id}`).catch(() => {});
      await r2.stop();
    }
    await cleanup.run();
    await Promise.all([dropContainer(1, troveContainer), dropContainer(1, `${troveContainer}_segments`), dropContainer(2, c2)]);
  });

  it('Trove backs up a MariaDB server, full and then incremental, into region1 Swift', async () => {
    await mariadbSql(source, PASSWORD, LOAD);
    atFull = await snapshot(source, PASSWORD, TABLES);
    full = await troveBackup(source, troveContainer);
    await mariadbSql(source, PASSWORD, CHANGE);
    atInc = await snapshot(source, PASSWORD, TABLES);
    assert.notEqual(atInc, atFull);
    inc = await troveBackup(source, troveContainer, { parent: full });
    // Trove stores a backup smaller than its segment size as one plain object.
    plain = await troveBackup(source, troveContainer, { form: 'plain' });
    dlo = await troveBackup(source, troveContainer, { form: 'dlo' });
    troveKeys = await containerKeys(1, troveContainer);
    assert.ok(plain.size > 2 * PART, `${plain.size} bytes: several copy parts`);
  });

  async function copied(id: string, original: TroveBackup): Promise<any> {
    copies.push(id);
    const done = await r2.waitBackup(id);
    assert.equal(done.status, 'COMPLETED', done.fail_reason);
    assert.equal(done.checksum, original.checksum, "same bytes: the checksum of Trove's manifest");
    assert.ok(done.locationRef.endsWith('.xbstream.gz.enc'));
    // Copied into region2's own container, segments beside the manifest as Tern names them.
    const storage = new SwiftDriver(swiftConfig(2, c2));
    try {
      const segments = await storage.segments(storage.keyOf(done.locationRef)!);
      assert.ok(segments!.every((s) => s.container === undefined && s.key.startsWith(`${id}_`)));
    } finally {
      await storage.close();
    }
    return done;
  }

  it('location form: the incremental and, through its Parent-Location, the full; both restore with the legacy key', async () => {
    const res = await r2.call('POST', '/backups', { backup: { name: 'trove-inc', location: inc.location, instance: null } });
    assert.equal(res.status, 202, res.text);
    const parentId = res.body.backup.parent_id;
    assert.ok(parentId);
    const parent = await copied(parentId, full);
    const child = await copied(res.body.backup.id, inc);
    assert.equal(child.parent_id, parent.id);
    assert.equal(await restoreAndSnapshot(r2, parent.id, PASSWORD, TABLES), atFull);
    assert.equal(await restoreAndSnapshot(r2, child.id, PASSWORD, TABLES), atInc);
  });

  it("restore_from form (Trove's own request): the full, then the incremental onto the parent region2 has", async () => {
    const ds = await r2.call('GET', '/datastores');
    const versionId = ds.body.datastores.find((d: any) => d.name === 'mariadb').versions[0].id;
    const body = (b: TroveBackup, name: string) => ({
      backup: { name, restore_from: { remote_location: b.location, local_datastore_version_id: versionId, size: 0.01 } },
    });
    const f = await r2.call('POST', '/backups', body(full, 'trove-full'));
    assert.equal(f.status, 202, f.text);
    const fullCopy = await copied(f.body.backup.id, full);
    assert.equal(await restoreAndSnapshot(r2, fullCopy.id, PASSWORD, TABLES), atFull);
    const i = await r2.call('POST', '/backups', body(inc, 'trove-inc-2'));
    assert.equal(i.status, 202, i.text);
    assert.ok(copies.includes(i.body.backup.parent_id), 'the parent is a copy region2 already has');
    const incCopy = await copied(i.body.backup.id, inc);
    assert.equal(await restoreAndSnapshot(r2, incCopy.id, PASSWORD, TABLES), atInc);
  });

  it('a single-object Trove backup larger than the part size: copied in ranged parts, checked by its MD5, restored', async () => {
    const res = await r2.call('POST', '/backups', { backup: { name: 'trove-plain', location: plain.location } });
    assert.equal(res.status, 202, res.text);
    assert.equal(res.body.backup.parent_id, null);
    copies.push(res.body.backup.id);
    const done = await r2.waitBackup(res.body.backup.id);
    assert.equal(done.status, 'COMPLETED', done.fail_reason);
    assert.equal(done.size_bytes, plain.size);
    const storage = new SwiftDriver(swiftConfig(2, c2));
    try {
      // Stored as parts joined by a manifest: the copy's checksum is the manifest's, and the
      // source's MD5 (its Swift ETag) is what the joined parts were checked against.
      const segments = (await storage.segments(storage.keyOf(done.locationRef)!))!;
      assert.equal(segments.length, Math.ceil(plain.size / PART));
      assert.equal(done.checksum, manifestEtag(segments.map((s) => s.etag)));
      const row = await r2.call('GET', `/backups/${done.id}`);
      assert.equal(row.body.backup.source.location, plain.location);
    } finally {
      await storage.close();
    }
    assert.equal(await restoreAndSnapshot(r2, done.id, PASSWORD, TABLES), atInc);
  });

  it('a Dynamic Large Object (X-Object-Manifest, older Trove) is copied segment by segment and restored', async () => {
    const res = await r2.call('POST', '/backups', { backup: { name: 'trove-dlo', location: dlo.location } });
    assert.equal(res.status, 202, res.text);
    const done = await copied(res.body.backup.id, dlo);
    assert.ok(done.size_bytes > MiB, 'several segments');
    assert.equal(await restoreAndSnapshot(r2, done.id, PASSWORD, TABLES), atInc);
  });

  it("deleting the copies empties region2's container; Trove's objects stay Trove's", async () => {
    for (const id of copies.splice(0).reverse()) await r2.remove(`/backups/${id}`);
    assert.deepEqual(await emptiedContainer(2, c2), []);
    // Every one of them, the DLO's segments too: a copy never touches its source.
    assert.deepEqual(await containerKeys(1, troveContainer), troveKeys);
    assert.equal(troveKeys.filter((k) => !k.includes('.xbstream.gz.enc_')).length, 4, 'full, incremental, plain, DLO manifest');
  });
});
