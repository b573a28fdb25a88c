import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { enqueue, findJob } from '../../src/jobs/queue.ts';
import { JobRunner } from '../../src/jobs/runner.ts';
import { blockingHandler, KIND } from './fixtures/blocking-handler.ts';
import { killFixture, runFixture, sharedDb, until } from './helpers.ts';

// A real worker process is killed (-9) or stopped (SIGTERM) in the middle of a job; a second
// runner in this process must then take the job over and finish it exactly once.

const LEASE_MS = 500;

function logLines(dir: string): string[] {
  const file = join(dir, 'log');
  // appendFileSync creates the file before it writes: a read in between sees it empty.
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

for (const name of ['sqlite', 'postgres'] as const) {
  describe(`worker crash on ${name}`, () => {
    async function scenario(t: TestContext, stopWith: 'SIGKILL' | 'SIGTERM') {
      const shared = await sharedDb(name);
      const dir = mkdtempSync(join(tmpdir(), 'tern-jobs-crash-'));
      const worker = runFixture('worker.ts', [shared.url, dir, String(LEASE_MS)]);
      let rescuer: JobRunner | undefined;
      try {
        const id = await enqueue(shared.db.kysely, { kind: KIND, payload: { name: 'backup-1' } });
        await until(() => logLines(dir).length === 1, 20_000, `the worker to start the job: ${worker.out()}`);
        assert.match(logLines(dir)[0], new RegExp(`^start ${worker.child.pid} attempt=1 `));
        assert.equal(readFileSync(join(dir, 'progress'), 'utf8'), 'half way');

        process.kill(worker.child.pid!, stopWith);
        assert.equal(await worker.exited, stopWith === 'SIGKILL' ? 'SIGKILL' : 0, worker.out());
        const afterStop = (await findJob(shared.db.kysely, id))!;
        if (stopWith === 'SIGKILL') {
          // Nobody gave the job back: it stays running under the dead worker's lease until that expires.
          assert.equal(afterStop.status, 'running');
          assert.equal(afterStop.attempts, 1);
        } else {
          assert.equal(afterStop.status, 'queued', 'a stopped worker releases its job');
          assert.equal(afterStop.attempts, 0, 'the released attempt is not counted');
        }

        rescuer = new JobRunner({
          db: shared.db,
          handlers: { [KIND]: blockingHandler(dir, false) },
          concurrency: 1,
          leaseMs: LEASE_MS,
          heartbeatMs: 100,
          pollMs: 50,
          backoffBaseMs: 10,
          backoffMaxMs: 100,
        });
        rescuer.start();
        await until(async () => (await findJob(shared.db.kysely, id))?.status === 'succeeded', 20_000, 'the job to succeed');
        await rescuer.stop({ graceMs: 1000 });

        const job = (await findJob(shared.db.kysely, id))!;
        const lines = logLines(dir);
        assert.equal(lines.length, 3, lines.join('\n'));
        const expectedAttempt = stopWith === 'SIGKILL' ? 2 : 1;
        assert.equal(job.attempts, expectedAttempt);
        assert.match(lines[1], new RegExp(`^start ${process.pid} attempt=${expectedAttempt} at=\\d+$`));
        assert.equal(lines[2], `done ${process.pid} attempt=${expectedAttempt}`);
        assert.equal(lines.filter((l) => l.startsWith('done')).length, 1, 'finished exactly once');
        assert.equal(readFileSync(join(dir, `effect-${id}`), 'utf8'), 'made backup-1');
        if (stopWith === 'SIGKILL') {
          const restartedAt = Number(lines[1].split('at=')[1]);
          assert.ok(restartedAt >= afterStop.lease_expires_at!, 'not reclaimed before the dead lease expired');
          assert.ok(restartedAt - afterStop.lease_expires_at! < 2000, 'reclaimed soon after the lease expired');
          t.diagnostic(`reclaimed ${restartedAt - afterStop.lease_expires_at!} ms after the dead lease expired`);
        }
      } finally {
        killFixture(worker.child);
        await rescuer?.stop({ graceMs: 0 });
        await shared.drop();
        rmSync(dir, { recursive: true, force: true });
      }
    }

    test('a worker killed mid-job is reclaimed after its lease and the job finishes once (attempts 2)', (t) =>
      scenario(t, 'SIGKILL'));
    test('a worker stopped by SIGTERM mid-job releases it and another finishes it (attempts 1)', (t) => scenario(t, 'SIGTERM'));
  });
}
