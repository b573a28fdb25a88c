import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { enqueue } from '../../src/jobs/queue.ts';
import { killFixture, LIMITED, OTHER, runFixture, sharedDb, sleep, until } from './helpers.ts';

// A region-wide limit on one job kind (what copy.maxRunning is for 'backup.copy'), enforced by the
// claim across real worker processes sharing one metadata database: never more of the kind running
// than the limit, the limit reached, other kinds not held up behind the waiting ones, every job
// run exactly once.

const LIMIT = 2;
const LIMITED_JOBS = 8;
const OTHER_JOBS = 6;
const WORKERS = 3;
const CONCURRENCY = 3;

interface Event {
  event: 'start' | 'done';
  kind: string;
  jobId: number;
  pid: number;
  at: number;
}

function events(dir: string): Event[] {
  const file = join(dir, 'log');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [event, kind, jobId, pid, at] = line.split(' ');
      return { event: event as Event['event'], kind, jobId: Number(jobId), pid: Number(pid), at: Number(at) };
    });
}

/** Most jobs of the kind between their start and done lines at any moment (a done before a start at the same instant). */
function maxConcurrent(all: Event[], kind: string): number {
  const sorted = all
    .filter((e) => e.kind === kind)
    .sort((a, b) => a.at - b.at || (a.event === 'done' ? -1 : 1) - (b.event === 'done' ? -1 : 1));
  let now = 0;
  let max = 0;
  for (const e of sorted) {
    now += e.event === 'start' ? 1 : -1;
    max = Math.max(max, now);
  }
  return max;
}

for (const name of ['postgres', 'sqlite'] as const) {
  describe(`kind limits across ${WORKERS} worker processes on ${name}`, () => {
    test(`at most ${LIMIT} limited jobs run at once, the limit is reached, others are not held up`, async (t) => {
      const shared = await sharedDb(name);
      const dir = mkdtempSync(join(tmpdir(), 'tern-kind-limits-'));
      const workers: ReturnType<typeof runFixture>[] = [];
      try {
        // All queued before any worker starts: the limited jobs are the oldest, first in line.
        const limitedIds: number[] = [];
        for (let i = 0; i < LIMITED_JOBS; i++) limitedIds.push(await enqueue(shared.db.kysely, { kind: LIMITED, payload: i }));
        for (let i = 0; i < OTHER_JOBS; i++) await enqueue(shared.db.kysely, { kind: OTHER, payload: i });
        for (let i = 0; i < WORKERS; i++) {
          workers.push(runFixture('limited-worker.ts', [shared.url, dir, String(CONCURRENCY), String(LIMIT), '150']));
        }
        const doneOf = (kind: string) => events(dir).filter((e) => e.event === 'done' && e.kind === kind).length;
        const startsOf = (kind: string) => events(dir).filter((e) => e.event === 'start' && e.kind === kind);

        // Phase 1, the gate shut: the limited jobs that got in hold their slots; every other job must still run.
        await until(
          () => doneOf(OTHER) === OTHER_JOBS,
          30_000,
          `the other jobs to finish: ${workers.map((w) => w.out()).join('\n')}`,
        );
        await until(() => startsOf(LIMITED).length >= LIMIT, 30_000, 'the limited jobs to start');
        // Many polls of every worker (20 ms each) meanwhile: none may start a third.
        await sleep(400);
        const held = startsOf(LIMITED);
        assert.equal(held.length, LIMIT, 'no limited job beyond the limit started while the others ran');
        assert.deepEqual(
          held.map((e) => e.jobId).sort((a, b) => a - b),
          limitedIds.slice(0, LIMIT),
          'the oldest limited jobs went first',
        );
        const states = await shared.db.kysely.selectFrom('jobs').select(['kind', 'status']).where('kind', '=', LIMITED).execute();
        assert.equal(states.filter((s) => s.status === 'running').length, LIMIT);
        assert.equal(states.filter((s) => s.status === 'queued').length, LIMITED_JOBS - LIMIT);

        // Phase 2, the gate open: the rest go through LIMIT at a time.
        writeFileSync(join(dir, 'gate'), '');
        await until(
          async () => {
            const rows = await shared.db.kysely.selectFrom('jobs').select('id').where('status', '=', 'succeeded').execute();
            return rows.length === LIMITED_JOBS + OTHER_JOBS;
          },
          30_000,
          'every job to succeed',
        );

        const all = events(dir);
        const jobs = await shared.db.kysely.selectFrom('jobs').select(['id', 'attempts', 'status']).execute();
        for (const job of jobs) {
          assert.equal(job.attempts, 1, `job ${job.id} ran once`);
          assert.equal(all.filter((e) => e.jobId === job.id && e.event === 'start').length, 1, `job ${job.id} started once`);
          assert.equal(all.filter((e) => e.jobId === job.id && e.event === 'done').length, 1, `job ${job.id} finished once`);
        }
        assert.equal(maxConcurrent(all, LIMITED), LIMIT, 'the limit was reached and never passed');
        const pids = new Set(all.filter((e) => e.kind === LIMITED).map((e) => e.pid));
        t.diagnostic(`limited jobs ran in ${pids.size} of ${WORKERS} worker processes`);
      } finally {
        for (const w of workers) w.child.kill('SIGTERM');
        await Promise.race([Promise.all(workers.map((w) => w.exited)), sleep(5000)]);
        for (const w of workers) killFixture(w.child);
        await shared.drop();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
