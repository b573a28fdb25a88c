import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createProgressStream } from './progress.ts';

const devNull = () =>
  new Writable({
    write(_chunk, _enc, cb) {
      cb();
    },
  });

describe('createProgressStream', () => {
  it('reports at most once per interval while bytes flow, then the exact total', async () => {
    const reports: number[] = [];
    const progress = createProgressStream({ intervalMs: 60_000, onProgress: (n) => reports.push(n) });
    const body = Readable.from(Array.from({ length: 100 }, () => Buffer.alloc(1000)));
    await pipeline(body, progress, devNull());
    assert.deepEqual(reports, [1000, 100_000]);
    assert.equal(progress.bytes, 100_000);
  });

  it('reports again once the interval has passed', async () => {
    const reports: number[] = [];
    const progress = createProgressStream({ intervalMs: 20, onProgress: (n) => reports.push(n) });
    const body = Readable.from(
      (async function* () {
        for (let i = 0; i < 4; i++) {
          yield Buffer.alloc(10);
          await sleep(30);
        }
      })(),
    );
    await pipeline(body, progress, devNull());
    assert.deepEqual(reports, [10, 20, 30, 40]);
  });

  it('fails the pipeline when the callback throws', async () => {
    const progress = createProgressStream({
      onProgress: () => {
        throw new Error('db is down');
      },
    });
    await assert.rejects(pipeline(Readable.from([Buffer.from('x')]), progress, devNull()), /db is down/);
  });
});
