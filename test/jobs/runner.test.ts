import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { Db } from '../../src/db/connect.ts';
import { Cancelled, StorageUnavailable } from '../../src/errors.ts';
import { enqueue, findJob, requestCancel } from '../../src/jobs/queue.ts';
import { JobRunner, type JobRunnerOptions, LeaseLost, ShuttingDown } from '../../src/jobs/runner.ts';
import type { JobContext, JobHandler, JobHandlers } from '../../src/jobs/types.ts';
import { TEST_DBS } from '../helpers/db.ts';
import { sleep, until } from './helpers.ts';

const unhandled: unknown[] = [];
process.on('unhandledRejection', (err) => unhandled.push(err));

/** Resolves when the signal aborts, by rejecting with its reason (as a well-behaved handler does). */
function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** A handler that records its calls; `run` is the behaviour under test. */
function recorder(run: (payload: any, ctx: JobContext) => Promise<void>) {
  const calls: JobContext[] = [];
  const gaveUp: Error[] = [];
  const handler: JobHandler = {
    run: (payload, ctx) => {
      calls.push(ctx);
      return run(payload, ctx);
    },
    onGiveUp: async (_payload, error) => {
      gaveUp.push(error);
    },
  };
  return { handler, calls, gaveUp };
}

for (const tdb of TEST_DBS) {
  describe(`job runner on ${tdb.name}`, () => {
    let db: Db;
    let drop: () => Promise<void>;
    const runners: JobRunner[] = [];
    before(async () => {
      ({ db, drop } = await tdb.open());
    });
    // Each test sees only its own jobs.
    beforeEach(() => db.kysely.deleteFrom('jobs').execute());
    after(async () => {
      await Promise.all(runners.map((r) => r.stop({ graceMs: 0 })));
      await drop();
      assert.deepEqual(unhandled, [], 'no unhandled rejections');
    });

    function runner(handlers: JobHandlers, options: Partial<JobRunnerOptions> = {}): JobRunner {
      const r = new JobRunner({
        db,
        handlers,
        concurrency: 2,
        leaseMs: 1000,
        heartbeatMs: 50,
        pollMs: 60_000, // only wake() makes these runners poll promptly
        backoffBaseMs: 1,
        backoffMaxMs: 10,
        ...options,
      });
      runners.push(r);
      return r;
    }
    const status = async (id: number) => (await findJob(db.kysely, id))!;

    test('start + wake runs enqueued jobs, at most `concurrency` at a time', async () => {
      let running = 0;
      let peak = 0;
      const seen: unknown[] = [];
      const r = runner({
        slow: {
          async run(payload, ctx) {
            assert.equal(ctx.attempt, 1);
            assert.equal(ctx.finalAttempt, false);
            seen.push(payload);
            peak = Math.max(peak, ++running);
            await sleep(150);
            running--;
          },
        },
      });
      r.start();
      const ids = await Promise.all([1, 2, 3].map((n) => enqueue(db.kysely, { kind: 'slow', payload: { n } })));
      const t = Date.now();
      r.wake();
      await until(async () => (await Promise.all(ids.map(status))).every((j) => j.status === 'succeeded'), 5000, 'jobs');
      assert.ok(Date.now() - t < 2000, 'woken, not waiting for the 60 s poll');
      assert.equal(peak, 2);
      assert.deepEqual(seen.map((p: any) => p.n).sort(), [1, 2, 3]);
      await r.stop({ graceMs: 1000 });
    });

    test('a transient error is retried after the backoff, then succeeds', async () => {
      const { handler, calls } = recorder(async (_p, ctx) => {
        if (ctx.attempt < 3) throw new StorageUnavailable(`blip ${ctx.attempt}`);
      });
      const r = runner({ flaky: handler }, { backoffBaseMs: 200, backoffMaxMs: 10_000 });
      const id = await enqueue(db.kysely, { kind: 'flaky', payload: null });
      for (const nominal of [200, 400]) {
        const t = Date.now();
        assert.equal(await r.runOnce(), true);
        const job = await status(id);
        assert.equal(job.status, 'queued');
        assert.match(job.last_error!, /blip/);
        const delay = job.run_after - t;
        assert.ok(delay >= nominal / 2 && delay <= nominal + 100, `delay ${delay} for nominal ${nominal}`);
        assert.equal(await r.runOnce(), false, 'not due before its backoff');
        await sleep(job.run_after - Date.now() + 5);
      }
      assert.equal(await r.runOnce(), true);
      const job = await status(id);
      assert.equal(job.status, 'succeeded');
      assert.equal(job.attempts, 3);
      assert.equal(job.last_error, null);
      assert.deepEqual(
        calls.map((c) => c.attempt),
        [1, 2, 3],
      );
    });

    test('a non-transient error fails at once and calls onGiveUp once', async () => {
      const { handler, calls, gaveUp } = recorder(async () => {
        throw new TypeError('bad payload');
      });
      const r = runner({ broken: handler });
      const id = await enqueue(db.kysely, { kind: 'broken', payload: null });
      assert.equal(await r.runOnce(), true);
      const job = await status(id);
      assert.equal(job.status, 'failed');
      assert.equal(job.attempts, 1);
      assert.equal(job.last_error, 'TypeError: bad payload');
      assert.equal(calls.length, 1);
      assert.equal(gaveUp.length, 1);
      assert.equal(gaveUp[0].message, 'bad payload');
      assert.equal(await r.runOnce(), false);
    });

    test('reaching max attempts fails the job and calls onGiveUp once; finalAttempt is set on the last', async () => {
      const { handler, calls, gaveUp } = recorder(async () => {
        throw new StorageUnavailable('still down');
      });
      const r = runner({ down: handler });
      const id = await enqueue(db.kysely, { kind: 'down', payload: null, maxAttempts: 3 });
      await until(
        async () => {
          await r.runOnce();
          return (await status(id)).status === 'failed';
        },
        5000,
        'final failure',
      );
      const job = await status(id);
      assert.equal(job.attempts, 3);
      assert.match(job.last_error!, /still down/);
      assert.deepEqual(
        calls.map((c) => c.finalAttempt),
        [false, false, true],
      );
      assert.equal(gaveUp.length, 1);
      assert.ok(gaveUp[0] instanceof StorageUnavailable);
    });

    test('an unknown kind fails with a clear error', async () => {
      const id = await enqueue(db.kysely, { kind: 'no.such.kind', payload: null });
      assert.equal(await runner({}).runOnce(), true);
      const job = await status(id);
      assert.equal(job.status, 'failed');
      assert.match(job.last_error!, /no handler for job kind "no.such.kind"/);
    });

    test('a cancelled queued job never runs', async () => {
      const { handler, calls } = recorder(async () => {});
      const id = await enqueue(db.kysely, { kind: 'c', payload: null, resourceId: 'res-cq' });
      assert.equal(await requestCancel(db.kysely, 'res-cq'), 1);
      assert.equal(await runner({ c: handler }).runOnce(), false);
      assert.equal(calls.length, 0);
      assert.equal((await status(id)).status, 'cancelled');
    });

    test('cancelling a running job aborts its signal with Cancelled, calls onGiveUp, ends cancelled', async () => {
      const { handler, calls, gaveUp } = recorder((_p, ctx) => aborted(ctx.signal));
      const id = await enqueue(db.kysely, { kind: 'c', payload: null, resourceId: 'res-cr' });
      const done = runner({ c: handler }).runOnce();
      await until(() => calls.length === 1, 5000, 'job start');
      assert.equal(await requestCancel(db.kysely, 'res-cr'), 1);
      assert.equal(await done, true);
      assert.ok(calls[0].signal.reason instanceof Cancelled);
      assert.equal(gaveUp.length, 1);
      assert.ok(gaveUp[0] instanceof Cancelled);
      const job = await status(id);
      assert.equal(job.status, 'cancelled');
      assert.equal(job.lease_owner, null);
    });

    test('cancelling a job that waits to retry gives it up without running it again', async () => {
      const { handler, calls, gaveUp } = recorder(async () => {
        throw new StorageUnavailable('blip');
      });
      const r = runner({ c: handler }, { backoffBaseMs: 3_600_000, backoffMaxMs: 3_600_000 });
      const id = await enqueue(db.kysely, { kind: 'c', payload: null, resourceId: 'res-cw' });
      assert.equal(await r.runOnce(), true);
      assert.equal((await status(id)).status, 'queued');
      assert.equal(await requestCancel(db.kysely, 'res-cw'), 1);
      assert.equal(await r.runOnce(), true);
      assert.equal(calls.length, 1);
      assert.equal(gaveUp.length, 1);
      assert.ok(gaveUp[0] instanceof Cancelled);
      assert.equal((await status(id)).status, 'cancelled');
    });

    test('losing the lease aborts the handler and writes nothing over the new owner', async () => {
      const { handler, calls, gaveUp } = recorder((_p, ctx) => aborted(ctx.signal));
      const id = await enqueue(db.kysely, { kind: 'l', payload: null });
      const done = runner({ l: handler }).runOnce();
      await until(() => calls.length === 1, 5000, 'job start');
      await db.kysely.updateTable('jobs').set({ lease_owner: 'thief' }).where('id', '=', id).execute();
      await done;
      assert.ok(calls[0].signal.reason instanceof LeaseLost);
      assert.equal(gaveUp.length, 0);
      const job = await status(id);
      assert.equal(job.status, 'running');
      assert.equal(job.lease_owner, 'thief');
      await db.kysely.updateTable('jobs').set({ status: 'succeeded' }).where('id', '=', id).execute();
    });

    test('stop lets a job finish within the grace period', async () => {
      const r = runner({ quick: { run: () => sleep(200) } });
      r.start();
      const id = await enqueue(db.kysely, { kind: 'quick', payload: null });
      r.wake();
      await until(async () => (await status(id)).status === 'running', 5000, 'job start');
      await r.stop({ graceMs: 5000 });
      assert.equal((await status(id)).status, 'succeeded');
    });

    test('stop after the grace period releases a running job, and another runner finishes it', async () => {
      const first = recorder((_p, ctx) => aborted(ctx.signal));
      const a = runner({ long: first.handler });
      a.start();
      const id = await enqueue(db.kysely, { kind: 'long', payload: null });
      a.wake();
      await until(() => first.calls.length === 1, 5000, 'job start');
      await a.stop({ graceMs: 100 });
      assert.ok(first.calls[0].signal.reason instanceof ShuttingDown);
      assert.equal(first.gaveUp.length, 0);
      let job = await status(id);
      assert.equal(job.status, 'queued');
      assert.equal(job.attempts, 0, 'a released attempt is not counted');
      assert.equal(job.lease_owner, null);
      assert.equal(await a.runOnce(), false, 'a stopped runner claims nothing');

      const second = recorder(async () => {});
      assert.equal(await runner({ long: second.handler }).runOnce(), true);
      job = await status(id);
      assert.equal(job.status, 'succeeded');
      assert.equal(job.attempts, 1);
      assert.equal(second.calls[0].attempt, 1);
    });

    test('stop releases the job even if its handler ignores the abort', async () => {
      let finish!: () => void;
      const stubborn = new Promise<void>((r) => {
        finish = r;
      });
      const a = runner({ stubborn: { run: () => stubborn } });
      a.start();
      const id = await enqueue(db.kysely, { kind: 'stubborn', payload: null });
      a.wake();
      await until(async () => (await status(id)).status === 'running', 5000, 'job start');
      const t = Date.now();
      await a.stop({ graceMs: 50 });
      assert.ok(Date.now() - t < 5000);
      assert.equal((await status(id)).status, 'queued');
      finish();
      await sleep(50);
      assert.equal((await status(id)).status, 'queued', 'the late finish writes nothing');
      await db.kysely.updateTable('jobs').set({ status: 'cancelled' }).where('id', '=', id).execute();
    });

    test('handlers that throw non-errors or whose onGiveUp throws do not crash the runner', async () => {
      const r = runner({
        weird: {
          run: () => Promise.reject('a plain string'),
          onGiveUp: async () => {
            throw new Error('cleanup broke');
          },
        },
        sync: {
          run: () => {
            throw new Error('thrown synchronously');
          },
        },
      });
      const weird = await enqueue(db.kysely, { kind: 'weird', payload: null });
      const sync = await enqueue(db.kysely, { kind: 'sync', payload: null });
      r.start();
      r.wake();
      await until(
        async () => (await status(weird)).status === 'failed' && (await status(sync)).status === 'failed',
        5000,
        'fails',
      );
      assert.equal((await status(weird)).last_error, 'a plain string');
      assert.equal((await status(sync)).last_error, 'thrown synchronously');
      await r.stop({ graceMs: 1000 });
    });

    test('a job that keeps losing its worker is given up once past max attempts', async () => {
      const { handler, calls, gaveUp } = recorder(async () => {});
      const id = await enqueue(db.kysely, { kind: 'poison', payload: null, maxAttempts: 2 });
      // As if two workers had died holding it.
      await db.kysely
        .updateTable('jobs')
        .set({ status: 'running', attempts: 2, lease_owner: 'dead', lease_expires_at: Date.now() - 1 })
        .where('id', '=', id)
        .execute();
      assert.equal(await runner({ poison: handler }).runOnce(), true);
      assert.equal(calls.length, 0);
      assert.equal(gaveUp.length, 1);
      const job = await status(id);
      assert.equal(job.status, 'failed');
      assert.match(job.last_error!, /lost with their worker/);
    });
  });
}
