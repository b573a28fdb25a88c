import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { connectDb, type Db } from '../../src/db/connect.ts';
import {
  activeJobFor,
  claim,
  complete,
  enqueue,
  fail,
  findJob,
  heartbeat,
  markCancelled,
  release,
  requestCancel,
} from '../../src/jobs/queue.ts';
import { TEST_DBS } from '../helpers/db.ts';
import { runFixture, sharedDb, sleep } from './helpers.ts';

for (const tdb of TEST_DBS) {
  describe(`job queue on ${tdb.name}`, () => {
    let db: Db;
    let drop: () => Promise<void>;
    before(async () => {
      ({ db, drop } = await tdb.open());
    });
    after(() => drop());

    // Each test starts from an empty queue, so claims see only its own jobs.
    async function clean() {
      await db.kysely.deleteFrom('jobs').execute();
    }

    /** The lease runs out now: a short real lease raced the next statement on a loaded machine. */
    async function expireLease(id: number) {
      await db.kysely
        .updateTable('jobs')
        .set({ lease_expires_at: Date.now() - 1 })
        .where('id', '=', id)
        .execute();
    }

    test('enqueue inside a rolled-back transaction leaves no job; a committed one is queued', async () => {
      await clean();
      await assert.rejects(
        db.kysely.transaction().execute(async (trx) => {
          await enqueue(trx, { kind: 'k', payload: { a: 1 }, resourceId: 'r1' });
          throw new Error('roll back');
        }),
        /roll back/,
      );
      assert.equal((await db.kysely.selectFrom('jobs').selectAll().execute()).length, 0);

      const before = Date.now();
      const id = await db.kysely
        .transaction()
        .execute((trx) => enqueue(trx, { kind: 'k', payload: { a: 1 }, resourceId: 'r1' }, 7));
      const job = await findJob(db.kysely, id);
      assert.equal(typeof id, 'number');
      assert.equal(job?.status, 'queued');
      assert.equal(job?.attempts, 0);
      assert.equal(job?.max_attempts, 7);
      assert.deepEqual(JSON.parse(job!.payload), { a: 1 });
      assert.ok(job!.run_after >= before && job!.run_after <= Date.now());
      assert.equal((await findJob(db.kysely, await enqueue(db.kysely, { kind: 'k', payload: null })))?.max_attempts, 5);
      await assert.rejects(enqueue(db.kysely, { kind: 'k', payload: null, maxAttempts: 0 }), RangeError);
    });

    test('claim takes due jobs in run_after order, skips future ones, filters by kind', async () => {
      await clean();
      const now = Date.now();
      const late = await enqueue(db.kysely, { kind: 'a', payload: 1, runAfter: now - 1000 });
      const early = await enqueue(db.kysely, { kind: 'a', payload: 2, runAfter: now - 5000 });
      const future = await enqueue(db.kysely, { kind: 'a', payload: 3, runAfter: now + 60_000 });
      const other = await enqueue(db.kysely, { kind: 'b', payload: 4, runAfter: now - 9000 });

      assert.equal((await claim(db, 'w', 10_000, ['a']))?.id, early);
      const second = await claim(db, 'w', 10_000, ['a']);
      assert.equal(second?.id, late);
      assert.equal(second?.status, 'running');
      assert.equal(second?.lease_owner, 'w');
      assert.equal(second?.attempts, 1);
      assert.ok(second!.lease_expires_at! >= now + 10_000);
      assert.equal(await claim(db, 'w', 10_000, ['a']), undefined, 'future job must wait');
      assert.equal(await claim(db, 'w', 10_000, []), undefined);
      assert.equal((await claim(db, 'w', 10_000))?.id, other);
      assert.equal(await claim(db, 'w', 10_000), undefined);
      assert.equal((await findJob(db.kysely, future))?.status, 'queued');
    });

    test('an expired lease is reclaimed; the old owner can no longer write', async () => {
      await clean();
      const id = await enqueue(db.kysely, { kind: 'k', payload: null });
      assert.equal((await claim(db, 'dead', 10_000))?.id, id);
      assert.equal(await claim(db, 'other', 10_000), undefined, 'lease still valid');
      await expireLease(id);
      const again = await claim(db, 'new', 10_000);
      assert.equal(again?.id, id);
      assert.equal(again?.attempts, 2);
      assert.deepEqual(await heartbeat(db, id, 'dead', 10_000), { owned: false, cancelRequested: false });
      assert.equal(await complete(db, id, 'dead'), false);
      assert.equal(await fail(db, id, 'dead', new Error('x')), false);
      assert.equal(await release(db, id, 'dead'), false);
      assert.equal(await markCancelled(db, id, 'dead'), false);
      const row = await findJob(db.kysely, id);
      assert.equal(row?.status, 'running');
      assert.equal(row?.lease_owner, 'new');
      assert.equal(await complete(db, id, 'new'), true);
      assert.equal((await findJob(db.kysely, id))?.status, 'succeeded');
    });

    test('heartbeat extends the lease and reports a cancel request', async () => {
      await clean();
      const id = await enqueue(db.kysely, { kind: 'k', payload: null, resourceId: 'res-hb' });
      const job = await claim(db, 'w', 100);
      const t = Date.now();
      assert.deepEqual(await heartbeat(db, id, 'w', 60_000), { owned: true, cancelRequested: false });
      assert.ok((await findJob(db.kysely, id))!.lease_expires_at! >= t + 60_000);
      assert.ok(job);
      await sleep(150);
      assert.equal(await claim(db, 'x', 100), undefined, 'extended lease must not be reclaimed');
      assert.equal(await requestCancel(db.kysely, 'res-hb'), 1);
      assert.deepEqual(await heartbeat(db, id, 'w', 60_000), { owned: true, cancelRequested: true });
    });

    test('fail retries at retryAt or fails for good; release does not count the attempt', async () => {
      await clean();
      const id = await enqueue(db.kysely, { kind: 'k', payload: null });
      await claim(db, 'w', 10_000);
      const retryAt = Date.now() + 60_000;
      assert.equal(await fail(db, id, 'w', new Error('blip'), { retryAt }), true);
      let row = await findJob(db.kysely, id);
      assert.equal(row?.status, 'queued');
      assert.equal(row?.run_after, retryAt);
      assert.equal(row?.last_error, 'blip');
      assert.equal(row?.lease_owner, null);
      assert.equal(await claim(db, 'w', 10_000), undefined);

      await db.kysely.updateTable('jobs').set({ run_after: 0 }).where('id', '=', id).execute();
      assert.equal((await claim(db, 'w', 10_000))?.attempts, 2);
      assert.equal(await release(db, id, 'w'), true);
      row = await findJob(db.kysely, id);
      assert.equal(row?.status, 'queued');
      assert.equal(row?.attempts, 1);
      assert.equal((await claim(db, 'w', 10_000))?.attempts, 2);
      assert.equal(await fail(db, id, 'w', new TypeError('bad input')), true);
      row = await findJob(db.kysely, id);
      assert.equal(row?.status, 'failed');
      assert.equal(row?.last_error, 'TypeError: bad input');
    });

    test('requestCancel cancels unstarted jobs, flags started ones, and activeJobFor finds them', async () => {
      await clean();
      const fresh = await enqueue(db.kysely, { kind: 'k', payload: null, resourceId: 'res-a' });
      assert.equal((await activeJobFor(db.kysely, 'res-a'))?.id, fresh);
      assert.equal(await requestCancel(db.kysely, 'res-a'), 1);
      assert.equal((await findJob(db.kysely, fresh))?.status, 'cancelled');
      assert.equal(await activeJobFor(db.kysely, 'res-a'), undefined);
      assert.equal(await claim(db, 'w', 10_000), undefined);

      const running = await enqueue(db.kysely, { kind: 'k', payload: null, resourceId: 'res-b' });
      await claim(db, 'w', 10_000);
      // A job waiting out a retry may have written something: a worker must give it up properly.
      const waiting = await enqueue(db.kysely, { kind: 'k', payload: null, resourceId: 'res-b' });
      await claim(db, 'w', 10_000);
      await fail(db, waiting, 'w', new Error('blip'), { retryAt: Date.now() + 3_600_000 });
      assert.equal(await requestCancel(db.kysely, 'res-b'), 2);
      assert.equal(await requestCancel(db.kysely, 'res-b'), 0, 'asking twice touches nothing new');
      assert.equal((await findJob(db.kysely, running))?.cancel_requested, 1);
      assert.equal((await findJob(db.kysely, running))?.status, 'running');
      const due = await claim(db, 'w', 10_000);
      assert.equal(due?.id, waiting, 'the cancelled retry is due at once');
      assert.equal(due?.cancel_requested, 1);
      assert.equal(await requestCancel(db.kysely, 'nothing-here'), 0);
    });

    test('many parallel claims never hand out a job twice', async () => {
      await clean();
      const shared = await sharedDb(tdb.name);
      // Two handles on one database: two pools on PostgreSQL, the same file opened twice on SQLite.
      const second = await connectDb(shared.url);
      try {
        const ids = new Set<number>();
        for (let i = 0; i < 60; i++) ids.add(await enqueue(shared.db.kysely, { kind: 'k', payload: i }));
        const claimers = Array.from({ length: 80 }, (_, i) => claim(i % 2 ? second : shared.db, `w${i}`, 60_000));
        const got = (await Promise.all(claimers)).filter((j) => j !== undefined).map((j) => j.id);
        assert.equal(got.length, 60);
        assert.deepEqual(new Set(got), ids);
      } finally {
        await second.close();
        await shared.drop();
      }
    });

    test('a kind limit passes over that kind while its live jobs are at the limit; others still run; oldest first', async () => {
      await clean();
      const limits = { copy: 2 };
      const copies: number[] = [];
      for (let i = 0; i < 4; i++) copies.push(await enqueue(db.kysely, { kind: 'copy', payload: i }));
      const other = await enqueue(db.kysely, { kind: 'other', payload: null });
      assert.equal((await claim(db, 'w1', 10_000, undefined, limits))?.id, copies[0]);
      assert.equal((await claim(db, 'w2', 10_000, undefined, limits))?.id, copies[1], 'a lease that will expire');
      assert.equal((await claim(db, 'w1', 10_000, undefined, limits))?.id, other, 'copies at the limit: the other kind runs');
      assert.equal(await claim(db, 'w1', 10_000, undefined, limits), undefined, 'two copies run: the third waits');
      assert.equal((await claim(db, 'w1', 10_000))?.id, copies[2], 'a claimer without limits is not bound by them');
      await complete(db, copies[2], 'w1');

      await expireLease(copies[1]);
      // The expired copy no longer counts as running; taking it over is starting one again.
      const reclaimed = await claim(db, 'w3', 10_000, undefined, limits);
      assert.equal(reclaimed?.id, copies[1]);
      assert.equal(reclaimed?.attempts, 2);
      assert.equal(await claim(db, 'w3', 10_000, undefined, limits), undefined);
      assert.equal(await claim(db, 'w3', 10_000, ['copy', 'other'], limits), undefined, 'the limit holds with a kind filter');

      assert.ok(await complete(db, copies[0], 'w1'));
      assert.equal(
        (await claim(db, 'w1', 10_000, undefined, limits))?.id,
        copies[3],
        'a freed slot goes to the oldest waiting copy',
      );
      await assert.rejects(claim(db, 'w1', 10_000, undefined, { copy: 0 }), RangeError);
    });

    test('many parallel claims with a kind limit never start more of that kind than the limit', async () => {
      const shared = await sharedDb(tdb.name);
      const second = await connectDb(shared.url);
      try {
        const limits = { copy: 3 };
        // Copies first, so every claimer goes for one at the same moment.
        for (let i = 0; i < 20; i++) await enqueue(shared.db.kysely, { kind: 'copy', payload: i });
        for (let i = 0; i < 20; i++) await enqueue(shared.db.kysely, { kind: 'other', payload: i });
        // Open every pooled connection beforehand, so the claims really run side by side.
        await Promise.all(Array.from({ length: 20 }, (_, i) => sql`SELECT 1`.execute((i % 2 ? second : shared.db).kysely)));
        const claimers = Array.from({ length: 60 }, (_, i) =>
          claim(i % 2 ? second : shared.db, `w${i}`, 60_000, undefined, limits),
        );
        const got = (await Promise.all(claimers)).filter((j) => j !== undefined);
        assert.equal(got.filter((j) => j.kind === 'copy').length, 3, 'exactly the limit of copies started');
        assert.equal(got.filter((j) => j.kind === 'other').length, 20, 'every other job started');
        assert.equal(new Set(got.map((j) => j.id)).size, got.length, 'no job handed out twice');
        const running = await shared.db.kysely.selectFrom('jobs').select('kind').where('status', '=', 'running').execute();
        assert.equal(running.filter((r) => r.kind === 'copy').length, 3);
      } finally {
        await second.close();
        await shared.drop();
      }
    });

    test('claimers in separate processes never run a job twice', async () => {
      const shared = await sharedDb(tdb.name);
      const dir = mkdtempSync(join(tmpdir(), 'tern-claimers-'));
      try {
        const ids = new Set<number>();
        for (let i = 0; i < 150; i++) ids.add(await enqueue(shared.db.kysely, { kind: 'k', payload: i }));
        const barrier = join(dir, 'go');
        const procs = [0, 1, 2].map((i) => runFixture('claimer.ts', [shared.url, `p${i}`, barrier]));
        // Started together once all are connected: a fixed start time lost the race on a busy machine.
        for (let waited = 0; ![0, 1, 2].every((i) => existsSync(`${barrier}.p${i}`)); waited += 10) {
          if (waited > 60_000 || procs.some((p) => p.child.exitCode !== null)) {
            assert.fail(`claimers did not all get ready:\n${procs.map((p) => p.out()).join('\n')}`);
          }
          await new Promise((r) => setTimeout(r, 10));
        }
        writeFileSync(barrier, '');
        const codes = await Promise.all(procs.map((p) => p.exited));
        assert.deepEqual(codes, [0, 0, 0], procs.map((p) => p.out()).join('\n'));
        const perProcess: number[][] = procs.map((p) => JSON.parse(p.out()));
        const all = perProcess.flat();
        assert.equal(all.length, 150, 'each job claimed exactly once');
        assert.deepEqual(new Set(all), ids);
        assert.ok(
          perProcess.filter((l) => l.length > 0).length >= 2,
          `claims were not concurrent: ${perProcess.map((l) => l.length)}`,
        );
        const done = await shared.db.kysely.selectFrom('jobs').select('status').where('status', '=', 'succeeded').execute();
        assert.equal(done.length, 150);
      } finally {
        await shared.drop();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
