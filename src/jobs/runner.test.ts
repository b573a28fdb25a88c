import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffMs, JobRunner } from './runner.ts';

test('backoff doubles per attempt from the base, between half and all of the nominal delay', () => {
  const low = () => 0;
  const high = () => 1;
  assert.deepEqual(
    [1, 2, 3, 4].map((a) => backoffMs(a, 1000, 60_000, high)),
    [1000, 2000, 4000, 8000],
  );
  assert.deepEqual(
    [1, 2, 3, 4].map((a) => backoffMs(a, 1000, 60_000, low)),
    [500, 1000, 2000, 4000],
  );
  assert.equal(
    backoffMs(2, 1000, 60_000, () => 0.5),
    1500,
  );
});

test('backoff is capped at the maximum, even for huge attempt numbers', () => {
  assert.equal(
    backoffMs(7, 1000, 60_000, () => 1),
    60_000,
  );
  assert.equal(
    backoffMs(7, 1000, 60_000, () => 0),
    30_000,
  );
  assert.equal(
    backoffMs(5000, 1000, 60_000, () => 1),
    60_000,
  );
});

test('backoff jitter spreads retries of jobs that failed together', () => {
  const delays = new Set(Array.from({ length: 50 }, () => backoffMs(3, 1000, 60_000)));
  assert.ok(delays.size > 10, `expected spread, got ${[...delays]}`);
  for (const d of delays) assert.ok(d >= 2000 && d <= 4000, `${d} outside [2000, 4000]`);
});

test('a runner refuses a heartbeat that is not shorter than the lease', () => {
  const base = { db: {} as any, handlers: {}, concurrency: 1, pollMs: 100, backoffBaseMs: 1, backoffMaxMs: 2 };
  assert.throws(() => new JobRunner({ ...base, leaseMs: 1000, heartbeatMs: 1000 }), /heartbeatMs/);
  assert.throws(() => new JobRunner({ ...base, leaseMs: 1000, heartbeatMs: 100, concurrency: 0 }), /concurrency/);
  assert.ok(new JobRunner({ ...base, leaseMs: 1000, heartbeatMs: 300 }).owner.includes(String(process.pid)));
});
