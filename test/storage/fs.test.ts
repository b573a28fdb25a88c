import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { ConfigError, IntegrityError, InvalidKey, ObjectNotFound } from '../../src/errors.ts';
import { FsDriver } from '../../src/storage/drivers/fs.ts';
import { chunked, md5, readAll, storageContract } from './contract.ts';

const CONTAINER = 'database_backups';

storageContract('fs', async () => {
  const root = mkdtempSync(join(tmpdir(), 'tern-fs-contract-'));
  return {
    driver: new FsDriver({ root, container: CONTAINER }),
    teardown: async () => rmSync(root, { recursive: true, force: true }),
  };
});

/** Every file under dir (not folders), relative: shows temp files and sidecars the driver hides. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

describe('FsDriver on a real folder', () => {
  let root: string;
  let driver: FsDriver;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'tern-fs-'));
    driver = new FsDriver({ root, container: CONTAINER });
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('stores objects as plain files with a sidecar, under a file:// endpoint', async () => {
    const data = Buffer.from('bytes on disk');
    await driver.put('b1.xbstream.gz', Readable.from([data]), { metadata: { datastore: 'mariadb' } });
    assert.equal(driver.endpoint, `${pathToFileURL(join(root, CONTAINER)).href}/`);
    assert.deepEqual(readFileSync(join(root, CONTAINER, 'b1.xbstream.gz')), data);
    const sidecar = JSON.parse(readFileSync(join(root, '.meta', CONTAINER, 'b1.xbstream.gz'), 'utf8'));
    assert.deepEqual(sidecar.metadata, { datastore: 'mariadb' });
    assert.equal(sidecar.etag, md5(data));
    assert.equal(driver.locationOf('dir/a b.gz'), `${driver.endpoint}dir/a%20b.gz`);
  });

  it('leaves no file behind when the body fails mid-stream', async () => {
    const before = filesUnder(root);
    const body = Readable.from(
      (async function* () {
        yield randomBytes(1024 * 1024);
        throw new Error('source went away');
      })(),
    );
    await assert.rejects(driver.put('half.tar.gz', body), /source went away/);
    await assert.rejects(driver.put('bad-sum', chunked(randomBytes(100_000)), { md5: md5(Buffer.from('x')) }), IntegrityError);
    assert.deepEqual(filesUnder(root), before);
  });

  it('does not list temp files or folders, and hides sidecars from keys', async () => {
    writeFileSync(join(root, CONTAINER, '.tmp-0123456789abcdef'), 'partial');
    mkdirSync(join(root, CONTAINER, 'empty-folder'), { recursive: true });
    const keys: string[] = [];
    for await (const info of driver.list('')) keys.push(info.key);
    assert.ok(!keys.some((k) => k.includes('.tmp-') || k.includes('.meta') || k.startsWith('empty-folder')), keys.join());
    await assert.rejects(driver.head('.tmp-0123456789abcdef'), InvalidKey);
  });

  it('reads a file dropped in by hand as a plain object, and ignores a stale sidecar', async () => {
    const dropped = randomBytes(300 * 1024);
    writeFileSync(join(root, CONTAINER, 'by-hand'), dropped);
    const plain = await driver.head('by-hand');
    assert.equal(plain?.size, dropped.length);
    assert.equal(plain?.etag, md5(dropped));
    assert.deepEqual(plain?.metadata, {});
    assert.deepEqual(await readAll(driver, 'by-hand'), dropped);
    await driver.put('replaced', Readable.from([Buffer.from('original')]), { metadata: { lsn: '1' } });
    const other = Buffer.from('overwritten outside tern');
    writeFileSync(join(root, CONTAINER, 'replaced'), other);
    const info = await driver.head('replaced');
    assert.equal(info?.etag, md5(other));
    assert.deepEqual(info?.metadata, {});
  });

  it('keeps the recorded etag when bytes rot in place, so a verifying reader notices', async () => {
    const data = randomBytes(100_000);
    await driver.put('rotten', Readable.from([data]), { metadata: { lsn: '7' } });
    const path = join(root, CONTAINER, 'rotten');
    const bytes = readFileSync(path);
    bytes[500] ^= 0xff;
    writeFileSync(path, bytes);
    const info = await driver.head('rotten');
    assert.equal(info?.etag, md5(data));
    assert.deepEqual(info?.metadata, { lsn: '7' });
    assert.notEqual(md5(await readAll(driver, 'rotten')), info?.etag);
  });

  it('refuses keys a file system cannot hold distinctly', async () => {
    for (const bad of ['a//b', 'a/', 'x/.tmp-1']) {
      await assert.rejects(driver.put(bad, Readable.from([Buffer.from('x')])), InvalidKey, bad);
    }
    await driver.put('clash', Readable.from([Buffer.from('file')]));
    await assert.rejects(driver.put('clash/inner', Readable.from([Buffer.from('x')])), InvalidKey);
    assert.equal(await driver.head('clash/inner'), null);
    assert.throws(() => new FsDriver({ root, container: '..' }), ConfigError);
    assert.throws(() => new FsDriver({ root, container: '.meta' }), ConfigError);
  });

  it('refuses container names that could escape the root or meet the sidecar tree', () => {
    for (const bad of ['.', '..', '.meta', '.tmp-x', '.hidden', '', 'a/b', '../x', 'a\\b', 'x'.repeat(256)]) {
      assert.throws(() => new FsDriver({ root, container: bad }), ConfigError, JSON.stringify(bad));
    }
    for (const good of ['database_backups', 'c', '_x', 'a.b-c', 'x'.repeat(255)]) new FsDriver({ root, container: good });
  });

  it('keyOf refuses other folders, encoded dots and slashes, queries and fragments', () => {
    const e = driver.endpoint;
    for (const location of [
      'file:///other/database_backups/x',
      `file://${root}/other/x`,
      `${e}%2e%2e/x`,
      `${e}a/%2E%2E/x`,
      `${e}%2e/x`,
      `${e}a%2F..%2Fb`,
      `${e}x?y`,
      `${e}x#y`,
      `${e}%zz`,
      `${e}a%00b`,
      `FILE://${e.slice('file://'.length)}x`,
    ]) {
      assert.equal(driver.keyOf(location), null, location);
    }
    assert.equal(driver.keyOf(`${e}a%20b`), 'a b');
  });

  it('does not follow a symlink planted in the container', async () => {
    writeFileSync(join(root, 'secret'), 'outside the container');
    symlinkSync(join(root, 'secret'), join(root, CONTAINER, 'link'));
    assert.equal(await driver.head('link'), null);
    await assert.rejects(driver.get('link'), ObjectNotFound);
  });

  it('fails a read whose segment vanished from disk', async () => {
    const part = Buffer.from('segment one');
    await driver.put('m_00000001', Readable.from([part]));
    await driver.put('m_00000002', Readable.from([part]));
    await driver.putManifest('m.tar.gz', [
      { key: 'm_00000001', size: part.length, etag: md5(part) },
      { key: 'm_00000002', size: part.length, etag: md5(part) },
    ]);
    rmSync(join(root, CONTAINER, 'm_00000002'));
    await assert.rejects(readAll(driver, 'm.tar.gz'), ObjectNotFound);
  });
});

// A real ENOSPC: a 1 MiB tmpfs in a private mount namespace (unprivileged, via a user namespace),
// with the driver running in a child process inside it. Skipped where namespaces are not allowed.
describe('FsDriver on a full disk', () => {
  const canUnshare = spawnSync('unshare', ['--user', '--map-root-user', '--mount', 'true']).status === 0;

  it('maps ENOSPC to StorageFull and frees the space it took', { skip: !canUnshare && 'unshare not permitted' }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'tern-fs-full-'));
    const driverUrl = pathToFileURL(join(import.meta.dirname, '../../src/storage/drivers/fs.ts')).href;
    const script = `
      import { Readable } from 'node:stream';
      import { readdirSync } from 'node:fs';
      const { FsDriver } = await import(${JSON.stringify(driverUrl)});
      const driver = new FsDriver({ root: process.argv[1], container: 'c' });
      const chunks = function* () { for (let i = 0; i < 32; i++) yield Buffer.alloc(64 * 1024, i); };
      const err = await driver.put('big', Readable.from(chunks())).catch((e) => e);
      const left = readdirSync(process.argv[1], { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length;
      const small = await driver.put('small', Readable.from([Buffer.alloc(512 * 1024)]));
      console.log(JSON.stringify({ name: err?.name, message: err?.message, left, small: small.size }));
    `;
    try {
      const run = spawnSync(
        'unshare',
        [
          '--user',
          '--map-root-user',
          '--mount',
          'sh',
          '-c',
          'mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" --input-type=module -e "$3" "$1"',
          'sh',
          dir,
          process.execPath,
          script,
        ],
        { encoding: 'utf8' },
      );
      assert.equal(run.status, 0, run.stderr);
      const out = JSON.parse(run.stdout);
      assert.equal(out.name, 'StorageFull', out.message);
      assert.equal(out.left, 0);
      assert.equal(out.small, 512 * 1024);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
