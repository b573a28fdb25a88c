import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cancelled, IntegrityError, isTransient, StorageUnavailable } from '../../errors.ts';
import { runBounded, withContext } from './copy-segments.ts';

describe('runBounded', () => {
  it('never runs more than the limit at once, and runs everything', async () => {
    let running = 0;
    let peak = 0;
    const seen: number[] = [];
    await runBounded([1, 2, 3, 4, 5, 6, 7], 3, new AbortController().signal, async (n) => {
      running++;
      peak = Math.max(peak, running);
      await sleep(5 + (n % 3) * 3);
      seen.push(n);
      running--;
    });
    assert.equal(peak, 3);
    assert.deepEqual(
      seen.sort((a, b) => a - b),
      [1, 2, 3, 4, 5, 6, 7],
    );
  });

  it('stops on the first failure, lets the work in flight end (stopped, not aborted), and settles after it', async () => {
    const started: number[] = [];
    const ended: number[] = [];
    let stillRunning = 0;
    let inFlight: { signal: AbortSignal; stopped: AbortSignal } | undefined;
    const failure = new IntegrityError('segment 2 is bad');
    const work = async (n: number, signal: AbortSignal, stopped: AbortSignal) => {
      started.push(n);
      stillRunning++;
      try {
        if (n === 2) {
          await sleep(5);
          throw failure;
        }
        inFlight = { signal, stopped };
        await sleep(40); // an upload that has sent its bytes: it must be let finish
        ended.push(n);
      } finally {
        stillRunning--;
      }
    };
    await assert.rejects(runBounded([1, 2, 3, 4, 5], 2, new AbortController().signal, work), (err) => err === failure);
    assert.deepEqual(started, [1, 2], 'nothing new starts after the failure');
    assert.deepEqual(ended, [1], 'the work in flight ran to its end before the call settled');
    assert.equal(stillRunning, 0);
    assert.equal(inFlight?.signal.aborted, false, 'its I/O was not cut');
    assert.equal(inFlight?.stopped.aborted, true, 'but it was told to stop retrying');
  });

  it('reports an outside abort by its reason', async () => {
    const outside = new AbortController();
    const reason = new Cancelled('job cancelled');
    const run = runBounded([1, 2, 3], 2, outside.signal, async (_n, signal) => {
      await new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('AbortError')), { once: true }));
    });
    outside.abort(reason);
    await assert.rejects(run, (err) => err === reason);
  });

  it('does nothing for no items', async () => {
    await runBounded([], 4, new AbortController().signal, async () => {
      throw new Error('must not run');
    });
  });
});

describe('withContext', () => {
  it('keeps the kind (and so the retry rule) and puts where it happened first', () => {
    const transient = withContext(new StorageUnavailable('503'), 'copying segment 2 of 4 from region1') as Error;
    assert.ok(transient instanceof StorageUnavailable);
    assert.ok(isTransient(transient));
    assert.equal(transient.message, 'copying segment 2 of 4 from region1: 503');
    const integrity = withContext(new IntegrityError('md5 abc != def'), 'copying segment 3 of 8 from region1') as Error;
    assert.ok(integrity instanceof IntegrityError);
    assert.equal(integrity.message, 'checksum or size mismatch copying segment 3 of 8 from region1: md5 abc != def');
  });
  it('leaves foreign errors alone', () => {
    const err = new Error('boom');
    assert.equal(withContext(err, 'x'), err);
  });
});
