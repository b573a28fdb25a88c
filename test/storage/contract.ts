import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { IntegrityError, InvalidKey, isTransient, ObjectNotFound, StorageUnavailable } from '../../src/errors.ts';
import type { ByteRange, SegmentInfo, StorageDriver } from '../../src/storage/driver.ts';
import { assertSafeKey, segmentKey } from '../../src/storage/keys.ts';
import { manifestEtag } from '../../src/streams/swift-etag.ts';

// The behaviour every StorageDriver must share, run against each driver by its own test file:
//   storageContract('fs', async () => ({ driver, teardown }))
// Only the StorageDriver interface is used. Every key lives under a random prefix and is deleted
// at the end, so the suite can run against a shared, long-lived store.

/** Optional hooks for faults only the driver's own test harness can cause (proxies, fake servers). */
export interface ContractFaults {
  /** Makes the driver's next put fail part way through the body (e.g. a proxy cutting the connection). */
  breakNextPut?(): void | Promise<void>;
  /** Makes the store unreachable (e.g. 503s or refused connections); the returned function ends it. */
  outage?(): Promise<() => Promise<void>>;
}

export interface ContractSetup {
  driver: StorageDriver;
  /** Releases what setup made; when absent the suite calls driver.close(). */
  teardown?(): Promise<void>;
  faults?: ContractFaults;
}

const MiB = 1024 * 1024;
const EMPTY_MD5 = 'd41d8cd98f00b204e9800998ecf8427e';
const UNSAFE_KEYS = ['../x', 'a/../../b', '\x00', 'a\x00b', '/abs', '', 'a\\b', 'x/./y', 'tab\there', 'del\x7f'];

export function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** A body of unknown length, in chunks, the way a datastore's backup stream arrives. */
export function chunked(data: Buffer, chunkSize = 256 * 1024): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < data.length; i += chunkSize) yield data.subarray(i, i + chunkSize);
    })(),
  );
}

export async function readAll(driver: StorageDriver, key: string, range?: ByteRange, ifMatch?: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await driver.get(key, { range, ifMatch })) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function listKeys(driver: StorageDriver, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of driver.list(prefix)) keys.push(info.key);
  return keys;
}

function isAbort(err: unknown, reason: unknown): boolean {
  return err === reason || (err as Error)?.name === 'AbortError';
}

export function storageContract(name: string, setup: () => Promise<ContractSetup | StorageDriver>): void {
  describe(`storage contract: ${name}`, () => {
    let ctx: ContractSetup;
    let driver: StorageDriver;
    const prefix = `tern-contract-${randomBytes(6).toString('hex')}/`;
    const written = new Set<string>();
    /** A key under this run's prefix, remembered for the cleanup. */
    const key = (name: string): string => {
      written.add(prefix + name);
      return prefix + name;
    };
    const put = (name: string, data: Buffer, metadata?: Record<string, string>) =>
      driver.put(key(name), chunked(data), { metadata, md5: md5(data), size: data.length });

    async function cleanUp(): Promise<void> {
      for (const k of written) await driver.delete(k);
      for (const k of await listKeys(driver, prefix)) await driver.delete(k);
    }

    before(async () => {
      const made = await setup();
      ctx = 'driver' in made ? made : { driver: made };
      driver = ctx.driver;
    });

    after(async () => {
      if (!driver) return;
      try {
        await cleanUp();
      } finally {
        await (ctx.teardown ? ctx.teardown() : driver.close());
      }
    });

    it('round trips a small object with its md5 and size', async () => {
      const data = Buffer.from('hello, tern\n');
      assert.deepEqual(await put('small', data), { etag: md5(data), size: data.length });
      const info = await driver.head(`${prefix}small`);
      assert.equal(info?.key, `${prefix}small`);
      assert.equal(info?.size, data.length);
      assert.equal(info?.etag, md5(data));
      assert.equal(info?.segmented, false);
      assert.deepEqual(await readAll(driver, `${prefix}small`), data);
    });

    it('round trips an empty object', async () => {
      assert.deepEqual(await driver.put(key('empty'), Readable.from([])), { etag: EMPTY_MD5, size: 0 });
      const info = await driver.head(`${prefix}empty`);
      assert.equal(info?.size, 0);
      assert.equal(info?.etag, EMPTY_MD5);
      assert.equal((await readAll(driver, `${prefix}empty`)).length, 0);
    });

    it('round trips a multi-MB object of unknown length, streamed both ways', async () => {
      const data = randomBytes(6 * MiB + 12345);
      assert.deepEqual(await driver.put(key('big'), chunked(data, 100_000)), { etag: md5(data), size: data.length });
      const hash = createHash('md5');
      let size = 0;
      for await (const chunk of await driver.get(`${prefix}big`)) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      assert.equal(size, data.length);
      assert.equal(hash.digest('hex'), md5(data));
      assert.equal((await driver.head(`${prefix}big`))?.etag, md5(data));
    });

    it('replaces an object on a second put', async () => {
      await put('twice', Buffer.from('first version'));
      const second = Buffer.from('second');
      await put('twice', second);
      assert.deepEqual(await readAll(driver, `${prefix}twice`), second);
      assert.equal((await driver.head(`${prefix}twice`))?.etag, md5(second));
    });

    it('keeps metadata, with lower-case keys', async () => {
      await put('meta', Buffer.from('m'), { Datastore: 'mariadb', 'datastore-version': '10.11', lsn: '1234567' });
      const info = await driver.head(`${prefix}meta`);
      assert.deepEqual(info?.metadata, { datastore: 'mariadb', 'datastore-version': '10.11', lsn: '1234567' });
    });

    it('answers head of a missing object with null and get with ObjectNotFound', async () => {
      assert.equal(await driver.head(`${prefix}missing`), null);
      await assert.rejects(driver.get(`${prefix}missing`), ObjectNotFound);
      await assert.rejects(driver.get(`${prefix}missing`, { range: { start: 0, end: 1 } }), ObjectNotFound);
      await assert.rejects(driver.segments(`${prefix}missing`), ObjectNotFound);
    });

    it('reads byte ranges (inclusive ends)', async () => {
      const data = randomBytes(1000);
      await put('ranged', data);
      for (const [start, end] of [
        [0, 0],
        [0, 99],
        [450, 549],
        [900, 999],
        [999, 999],
      ]) {
        const got = await readAll(driver, `${prefix}ranged`, { start, end });
        assert.deepEqual(got, data.subarray(start, end + 1), `range ${start}-${end}`);
      }
    });

    it('reads with ifMatch only the version it names; a replaced object fails with IntegrityError', async () => {
      const first = randomBytes(1000);
      await put('versioned', first);
      const k = `${prefix}versioned`;
      const etag = (await driver.head(k))!.etag;
      assert.equal(etag, md5(first));
      assert.deepEqual(await readAll(driver, k, { start: 10, end: 19 }, etag), first.subarray(10, 20));
      assert.deepEqual(await readAll(driver, k, undefined, etag), first);
      // Replaced by other bytes of the same size, as a re-uploaded backup would be.
      const second = randomBytes(1000);
      await put('versioned', second);
      await assert.rejects(readAll(driver, k, { start: 10, end: 19 }, etag), IntegrityError);
      await assert.rejects(readAll(driver, k, undefined, etag), IntegrityError);
      assert.deepEqual(await readAll(driver, k, { start: 10, end: 19 }, md5(second)), second.subarray(10, 20));
      await assert.rejects(readAll(driver, `${prefix}missing`, { start: 0, end: 1 }, etag), ObjectNotFound);
    });

    it('refuses a put with the wrong md5 or size and leaves nothing visible', async () => {
      const data = randomBytes(300 * 1024);
      await assert.rejects(driver.put(key('bad-md5'), chunked(data), { md5: md5(Buffer.from('other')) }), IntegrityError);
      await assert.rejects(driver.put(key('bad-size'), chunked(data), { size: data.length + 1 }), IntegrityError);
      // With the size known too, the store itself checks the MD5 (Swift's ETag, S3's Content-MD5).
      const sized = { md5: md5(Buffer.from('other')), size: data.length };
      await assert.rejects(driver.put(key('bad-md5-sized'), chunked(data), sized), IntegrityError);
      const names = ['bad-md5', 'bad-size', 'bad-md5-sized'];
      for (const name of names) {
        assert.equal(await driver.head(prefix + name), null, name);
        await assert.rejects(driver.get(prefix + name), ObjectNotFound);
      }
      const listed = await listKeys(driver, prefix);
      assert.ok(!names.some((name) => listed.includes(prefix + name)), listed.join());
    });

    it('leaves nothing visible when a put is aborted, before or during the body', async () => {
      const early = new AbortController();
      early.abort(new Error('stop before'));
      const err1 = await driver.put(key('aborted-early'), chunked(Buffer.from('x')), { signal: early.signal }).catch((e) => e);
      assert.ok(isAbort(err1, early.signal.reason), `unexpected ${err1}`);

      const late = new AbortController();
      const body = Readable.from(
        (async function* () {
          yield randomBytes(256 * 1024);
          late.abort(new Error('stop during'));
          for (let i = 0; i < 12; i++) {
            await sleep(5);
            yield randomBytes(256 * 1024);
          }
        })(),
      );
      const err2 = await driver.put(key('aborted-late'), body, { signal: late.signal }).catch((e) => e);
      assert.ok(isAbort(err2, late.signal.reason), `unexpected ${err2}`);
      for (const name of ['aborted-early', 'aborted-late']) assert.equal(await driver.head(prefix + name), null, name);
      assert.ok(!(await listKeys(driver, prefix)).some((k) => k.includes('aborted')));
    });

    it('rejects unsafe keys with InvalidKey on every operation', async () => {
      for (const bad of UNSAFE_KEYS) {
        const shown = JSON.stringify(bad);
        const body = Readable.from([Buffer.from('x')]);
        await assert.rejects(driver.put(bad, body), InvalidKey, `put ${shown}`);
        body.destroy();
        await assert.rejects(driver.head(bad), InvalidKey, `head ${shown}`);
        await assert.rejects(driver.get(bad), InvalidKey, `get ${shown}`);
        await assert.rejects(driver.delete(bad), InvalidKey, `delete ${shown}`);
        await assert.rejects(driver.putManifest(bad, []), InvalidKey, `putManifest ${shown}`);
        assert.throws(() => driver.locationOf(bad), InvalidKey, `locationOf ${shown}`);
      }
    });

    it('handles keys with spaces, percent signs, # ? + and non-ASCII', async () => {
      const odd = 'odd/a b%20#?+&=é.xbstream.gz';
      await put(odd, Buffer.from('odd'));
      assert.equal((await driver.head(prefix + odd))?.size, 3);
      assert.deepEqual(await listKeys(driver, `${prefix}odd/`), [prefix + odd]);
      assert.equal(driver.keyOf(driver.locationOf(prefix + odd)), prefix + odd);
    });

    it('lists by prefix in key (byte) order', async () => {
      const names = ['pa', 'b', 'p/b/c', 'p0', 'p-a', 'p/a'];
      for (const n of names) await put(`list/${n}`, Buffer.from(n));
      const sorted = ['b', 'p-a', 'p/a', 'p/b/c', 'p0', 'pa'].map((n) => `${prefix}list/${n}`);
      assert.deepEqual(await listKeys(driver, `${prefix}list/`), sorted);
      assert.deepEqual(await listKeys(driver, `${prefix}list/p`), sorted.slice(1));
      assert.deepEqual(await listKeys(driver, `${prefix}list/p/`), sorted.slice(2, 4));
      assert.deepEqual(await listKeys(driver, `${prefix}list/zzz`), []);
      const infos: { key: string; size: number; etag: string }[] = [];
      for await (const i of driver.list(`${prefix}list/p/`)) infos.push({ key: i.key, size: i.size, etag: i.etag });
      assert.deepEqual(infos, [
        { key: `${prefix}list/p/a`, size: 3, etag: md5(Buffer.from('p/a')) },
        { key: `${prefix}list/p/b/c`, size: 5, etag: md5(Buffer.from('p/b/c')) },
      ]);
    });

    describe('segmented objects', () => {
      const id = 'seg-backup';
      const parts = [randomBytes(64 * 1024 + 7), randomBytes(1), randomBytes(100 * 1024)];
      const whole = Buffer.concat(parts);
      const manifest = () => `${prefix}${id}.tar.gz`;
      let segments: SegmentInfo[];

      before(async () => {
        segments = [];
        for (const [i, part] of parts.entries()) {
          const k = key(segmentKey(id, i + 1));
          const res = await driver.put(k, chunked(part), { md5: md5(part) });
          segments.push({ key: k, size: res.size, etag: res.etag });
        }
      });

      it('names segments the Trove way', () => {
        assert.deepEqual(
          segments.map((s) => s.key),
          [1, 2, 3].map((n) => `${prefix}${id}_0000000${n}`),
        );
      });

      it('publishes a manifest whose bytes are the segments joined and whose etag is the SLO etag', async () => {
        written.add(manifest());
        const etag = manifestEtag(parts.map(md5));
        const res = await driver.putManifest(manifest(), segments, { metadata: { datastore: 'postgresql' } });
        assert.deepEqual(res, { etag, size: whole.length });
        const info = await driver.head(manifest());
        assert.equal(info?.segmented, true);
        assert.equal(info?.etag, etag);
        assert.equal(info?.size, whole.length);
        assert.deepEqual(info?.metadata, { datastore: 'postgresql' });
        assert.deepEqual(await driver.segments(manifest()), segments);
        assert.equal(await driver.segments(segments[0].key), null);
        assert.deepEqual(await readAll(driver, manifest()), whole);
        const listed = [];
        for await (const i of driver.list(manifest())) listed.push(i);
        assert.equal(listed.length, 1);
        assert.equal(listed[0].size, whole.length);
        assert.equal(listed[0].etag, etag);
      });

      it('reads ranges of a manifest, across segment boundaries', async () => {
        const b1 = parts[0].length;
        const last = whole.length - 1;
        for (const [start, end] of [
          [0, 0],
          [5, b1 - 1],
          [b1 - 10, b1 + 10],
          [b1, b1],
          [b1 + 1, b1 + 1],
          [1000, last],
          [last, last],
        ]) {
          const got = await readAll(driver, manifest(), { start, end });
          assert.deepEqual(got, whole.subarray(start, end + 1), `range ${start}-${end}`);
        }
      });

      it('reads a manifest with ifMatch: its checksum passes, another fails with IntegrityError', async () => {
        const etag = manifestEtag(segments.map((seg) => seg.etag));
        assert.deepEqual(await readAll(driver, manifest(), { start: 5, end: 50 }, etag), whole.subarray(5, 51));
        const other = md5(Buffer.from('another version'));
        await assert.rejects(readAll(driver, manifest(), { start: 5, end: 50 }, other), IntegrityError);
        await assert.rejects(readAll(driver, manifest(), undefined, other), IntegrityError);
      });

      it('refuses a manifest naming a segment with the wrong etag or size, or a missing one', async () => {
        const wrongEtag = segments.map((s, i) => (i === 1 ? { ...s, etag: md5(Buffer.from('not it')) } : s));
        await assert.rejects(driver.putManifest(key('bad-manifest'), wrongEtag), IntegrityError);
        const wrongSize = segments.map((s, i) => (i === 2 ? { ...s, size: s.size + 1 } : s));
        await assert.rejects(driver.putManifest(key('bad-manifest'), wrongSize), IntegrityError);
        const missing = [...segments, { key: `${prefix}${id}_00000099`, size: 1, etag: md5(Buffer.from('?')) }];
        await assert.rejects(driver.putManifest(key('bad-manifest'), missing), ObjectNotFound);
        assert.equal(await driver.head(`${prefix}bad-manifest`), null);
      });

      it('deletes a manifest together with its segments', async () => {
        await driver.delete(manifest());
        assert.equal(await driver.head(manifest()), null);
        for (const s of segments) assert.equal(await driver.head(s.key), null, s.key);
      });
    });

    it('treats deleting a missing object as done', async () => {
      await driver.delete(`${prefix}never-written`);
      await driver.delete(`${prefix}never/written/either`);
    });

    it('maps keys to locations and back, and disowns foreign locations', () => {
      for (const k of [`${prefix}plain.xbstream.gz.enc`, `${prefix}${segmentKey('abc', 1)}`, `${prefix}dir/x y.tar.gz`]) {
        const location = driver.locationOf(k);
        assert.ok(location.startsWith(driver.endpoint), location);
        assert.equal(driver.keyOf(location), k);
      }
      const sibling = `${driver.endpoint.replace(/\/$/, '')}-other/x`;
      for (const foreign of [
        'file:///elsewhere/x',
        'http://127.0.0.1:1/v1/AUTH_other/database_backups/x',
        's3://some-other-bucket/x',
        sibling,
        driver.endpoint,
        `${driver.endpoint}../x`,
        `${driver.endpoint}a/../../x`,
        'not a url',
        '',
      ]) {
        assert.equal(driver.keyOf(foreign), null, foreign);
      }
      // Encoded dots may be a literal key on stores that do not decode, but never a way out.
      for (const tricky of [`${driver.endpoint}%2e%2e/x`, `${driver.endpoint}a/%2E%2E/%2e%2e/x`, `${driver.endpoint}..%2Fx`]) {
        const k = driver.keyOf(tricky);
        if (k !== null) assert.doesNotThrow(() => assertSafeKey(k), tricky);
      }
    });

    it('reports limits', async () => {
      const limits = await driver.limits();
      assert.ok(limits.maxSegmentSize >= 5 * MiB, String(limits.maxSegmentSize));
      assert.ok(limits.maxManifestSegments >= 2, String(limits.maxManifestSegments));
    });

    it('leaves nothing behind with an interrupted put (fault hook)', async (t) => {
      if (!ctx.faults?.breakNextPut) return t.skip('no breakNextPut hook for this driver');
      await ctx.faults.breakNextPut();
      await assert.rejects(driver.put(key('broken'), chunked(randomBytes(3 * MiB))));
      assert.equal(await driver.head(`${prefix}broken`), null);
      assert.ok(!(await listKeys(driver, prefix)).includes(`${prefix}broken`));
    });

    it('reports an outage as transient StorageUnavailable (fault hook)', async (t) => {
      if (!ctx.faults?.outage) return t.skip('no outage hook for this driver');
      const restore = await ctx.faults.outage();
      try {
        const err = await driver.head(`${prefix}small`).catch((e) => e);
        assert.ok(err instanceof StorageUnavailable && isTransient(err), `unexpected ${err}`);
      } finally {
        await restore();
      }
      assert.equal((await driver.head(`${prefix}small`))?.size, 12);
    });

    it('deletes everything it wrote', async () => {
      await cleanUp();
      assert.deepEqual(await listKeys(driver, prefix), []);
      for (const k of written) assert.equal(await driver.head(k), null, k);
    });
  });
}
