import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SWEEP_JOB } from '../../src/backups/jobs.ts';
import { COPY_JOB } from '../../src/backups/service.ts';
import { copyBackupTask } from '../../src/backups/tasks/copy.ts';
import { enqueueSweep, sweepBackupTask } from '../../src/backups/tasks/sweep.ts';
import type { Db } from '../../src/db/connect.ts';
import { StorageUnavailable } from '../../src/errors.ts';
import { enqueue, findJob, requestCancel } from '../../src/jobs/queue.ts';
import { JobRunner } from '../../src/jobs/runner.ts';
import type { PutOptions, StorageDriver } from '../../src/storage/driver.ts';
import { TEST_DBS } from '../helpers/db.ts';
import {
  CONTAINER,
  filesUnder,
  insertCopyRow,
  makeRegions,
  md5,
  type Regions,
  readAll,
  row,
  seedSegmented,
  spyTarget,
} from './helpers.ts';

// backup.copy driven by the real JobRunner: retries resume from recorded segments, final failures
// and cancellations end FAILED with nothing left in the target.

const KiB = 1024;

for (const testDb of TEST_DBS) {
  describe(`backup.copy through the JobRunner on ${testDb.name}`, () => {
    let db: Db;
    let drop: () => Promise<void>;
    let r: Regions;
    let runner: JobRunner | undefined;

    before(async () => {
      ({ db, drop } = await testDb.open());
    });
    after(async () => {
      await drop();
    });
    beforeEach(async () => {
      r = makeRegions();
      // One queue per test: a job left by an earlier test must not be claimed here.
      await db.kysely.deleteFrom('jobs').execute();
    });
    afterEach(async () => {
      await runner?.stop();
      runner = undefined;
      await r.close();
    });

    function startRunner(target: StorageDriver, options: { heartbeatMs?: number; sweepDelayMs?: number } = {}): JobRunner {
      runner = new JobRunner({
        db,
        handlers: {
          [COPY_JOB]: copyBackupTask({ db, catalog: r.catalog, target, parallelism: 2, sweepDelayMs: options.sweepDelayMs }),
          [SWEEP_JOB]: sweepBackupTask({ db, storage: target }),
        },
        concurrency: 1,
        leaseMs: 5000,
        heartbeatMs: options.heartbeatMs ?? 1000,
        pollMs: 20,
        backoffBaseMs: 10,
        backoffMaxMs: 20,
      });
      return runner;
    }

    async function enqueueCopy(location: string): Promise<{ id: string; jobId: number }> {
      const id = await insertCopyRow(db, location);
      const jobId = await enqueue(db.kysely, { kind: COPY_JOB, payload: { backupId: id }, resourceId: id, maxAttempts: 3 });
      return { id, jobId };
    }

    async function waitFor(id: string, statuses: string[]): Promise<void> {
      for (let i = 0; i < 500; i++) {
        if (statuses.includes((await row(db, id)).status)) return;
        await sleep(20);
      }
      throw new Error(`backup ${id} did not reach ${statuses.join('/')}`);
    }

    it('a transient failure is retried and the retry resumes where the first attempt stopped', async () => {
      const parts = [0, 1, 2, 3, 4].map(() => randomBytes(48 * KiB));
      const seeded = await seedSegmented(r.source, parts);
      let failures = 0;
      const spy = spyTarget(r.target, {
        after: 2,
        fault: () => {
          failures++;
          throw new StorageUnavailable('target answered 503');
        },
      });
      const { id, jobId } = await enqueueCopy(seeded.location);
      const run = startRunner(spy.driver);
      assert.equal(await run.runOnce(), true);
      assert.equal((await findJob(db.kysely, jobId))!.status, 'queued', 'a transient failure goes back to the queue');
      assert.equal(failures, 1);
      const afterFirst = spy.puts.length;
      await sleep(50);
      assert.equal(await run.runOnce(), true);

      const done = await row(db, id);
      assert.equal(done.status, 'COMPLETED', done.fail_reason ?? '');
      assert.equal((await findJob(db.kysely, jobId))!.status, 'succeeded');
      assert.equal(done.checksum, md5(parts.map((p) => md5(p)).join('')));
      assert.ok((await readAll(r.target, `${id}.tar.gz`)).equals(Buffer.concat(parts)));
      // Every segment recorded by the first attempt was left alone by the second.
      const secondRun = spy.puts.slice(afterFirst);
      assert.equal(new Set(spy.puts).size, 5);
      assert.ok(secondRun.length < 5, `the retry re-sent ${secondRun.join(', ')}`);
    });

    it('a corrupted source ends FAILED with the job failed and nothing in the target', async () => {
      const parts = [0, 1, 2].map(() => randomBytes(32 * KiB));
      const seeded = await seedSegmented(r.source, parts);
      const path = join(r.root1, CONTAINER, seeded.segments[1].key);
      const bytes = readFileSync(path);
      bytes[7] ^= 0x01;
      writeFileSync(path, bytes);
      const { id, jobId } = await enqueueCopy(seeded.location);
      assert.equal(await startRunner(r.target).runOnce(), true);
      const failed = await row(db, id);
      assert.equal(failed.status, 'FAILED');
      assert.match(failed.fail_reason!, /checksum.*segment 2 of 3 from region1/);
      assert.equal((await findJob(db.kysely, jobId))!.status, 'failed');
      assert.deepEqual(filesUnder(r.root2), []);
    });

    it('a cancelled copy stops, ends FAILED and leaves nothing in the target', async () => {
      const parts = [0, 1, 2, 3].map(() => randomBytes(32 * KiB));
      const seeded = await seedSegmented(r.source, parts);
      // Stands for a slow store: after the first segment every PUT waits until it is aborted.
      const spy = spyTarget(r.target);
      let calls = 0;
      const stalling: StorageDriver = {
        ...spy.driver,
        async put(key: string, body: Readable, opts?: PutOptions) {
          if (calls++ === 0) return spy.driver.put(key, body, opts);
          const signal = opts!.signal!;
          // The cancel can land between the segment's GET and this PUT: an abort that already
          // happened fires no event, and waiting for one hung the test (and its runner.stop()).
          if (!signal.aborted) await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
          body.destroy();
          throw signal.reason;
        },
      };
      const { id, jobId } = await enqueueCopy(seeded.location);
      startRunner(stalling, { heartbeatMs: 30 }).start();
      for (let i = 0; i < 500 && spy.puts.length === 0; i++) await sleep(10);
      assert.equal(spy.puts.length, 1);
      await requestCancel(db.kysely, id);
      await waitFor(id, ['FAILED', 'COMPLETED']);
      const failed = await row(db, id);
      assert.equal(failed.status, 'FAILED');
      assert.match(failed.fail_reason!, /cancelled/);
      for (let i = 0; i < 100 && (await findJob(db.kysely, jobId))!.status === 'running'; i++) await sleep(20);
      assert.equal((await findJob(db.kysely, jobId))!.status, 'cancelled');
      assert.deepEqual(filesUnder(r.root2), []);
    });

    it('an upload the store commits after a cancel is removed by the sweep that follows', async () => {
      const parts = [0, 1, 2, 3].map(() => randomBytes(32 * KiB));
      const seeded = await seedSegmented(r.source, parts);
      const spy = spyTarget(r.target);
      let calls = 0;
      let lateCommit: Promise<unknown> | undefined;
      // Stands for a store that had every byte of a PUT when the client gave up, and stores it
      // anyway once the copy's own cleanup has run: a race no test can time for real.
      const late: StorageDriver = {
        ...spy.driver,
        async put(key: string, body: Readable, opts?: PutOptions) {
          if (calls++ === 0) return spy.driver.put(key, body, opts);
          const bytes = Buffer.concat(await body.toArray());
          const signal = opts!.signal!;
          if (!signal.aborted) await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
          lateCommit ??= waitFor(id, ['FAILED']).then(() =>
            r.target.put(key, Readable.from([bytes]), { md5: opts?.md5, size: opts?.size }),
          );
          throw signal.reason;
        },
      };
      const { id } = await enqueueCopy(seeded.location);
      startRunner(late, { heartbeatMs: 30, sweepDelayMs: 300 }).start();
      for (let i = 0; i < 500 && spy.puts.length === 0; i++) await sleep(10);
      await requestCancel(db.kysely, id);
      await waitFor(id, ['FAILED', 'COMPLETED']);
      assert.equal((await row(db, id)).status, 'FAILED');
      assert.ok(lateCommit, 'a PUT was in flight when the copy was cancelled');
      await lateCommit;
      assert.notDeepEqual(filesUnder(r.root2), [], 'the late upload is there after the first cleanup');
      const sweep = () =>
        db.kysely
          .selectFrom('jobs')
          .select(['status'])
          .where('kind', '=', SWEEP_JOB)
          .where('resource_id', '=', id)
          .executeTakeFirst();
      for (let i = 0; i < 250 && (await sweep())?.status !== 'succeeded'; i++) await sleep(20);
      assert.equal((await sweep())?.status, 'succeeded');
      assert.deepEqual(filesUnder(r.root2), []);
    });

    it("a sweep leaves a backup that is not FAILED or deleted alone, and removes a FAILED one's objects", async () => {
      const live = await insertCopyRow(db, 'swift://elsewhere/x', { status: 'COMPLETED' });
      const failed = await insertCopyRow(db, 'swift://elsewhere/y', { status: 'FAILED' });
      for (const id of [live, failed]) {
        await r.target.put(`${id}.xbstream.gz.enc`, Readable.from([Buffer.from('manifest')]));
        await r.target.put(`${id}_00000001`, Readable.from([Buffer.from('segment')]));
        await enqueueSweep(db.kysely, id, { delayMs: 0 });
      }
      const run = startRunner(r.target);
      assert.equal(await run.runOnce(), true);
      assert.equal(await run.runOnce(), true);
      const left = filesUnder(r.root2).join('\n');
      assert.match(left, new RegExp(`${live}\\.xbstream\\.gz\\.enc`));
      assert.match(left, new RegExp(`${live}_00000001`));
      assert.doesNotMatch(left, new RegExp(failed));
    });
  });
}
