import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { text } from 'node:stream/consumers';
import { describe, it } from 'node:test';
import { StorageUnavailable } from '../errors.ts';
import { guardBody } from './length-guard.ts';

const mapError = (err: unknown) => new StorageUnavailable(`mapped: ${(err as Error).message}`);

describe('guardBody', () => {
  it('passes a body of the announced length through unchanged', async () => {
    const body = new PassThrough();
    body.end('hello');
    assert.equal(await text(guardBody(body, 5, 'get x', mapError)), 'hello');
  });

  it('fails when the body ends short of the announced length', async () => {
    const body = new PassThrough();
    body.end('hel');
    await assert.rejects(text(guardBody(body, 5, 'get x', mapError)), (err: Error) => {
      assert.ok(err instanceof StorageUnavailable);
      assert.match(err.message, /^get x: the connection ended after 3 of 5 bytes$/);
      return true;
    });
  });

  it('reports a failure of the body as the mapped error', async () => {
    const body = new PassThrough();
    const guarded = guardBody(body, 5, 'get x', mapError);
    body.write('he');
    body.destroy(new Error('socket hang up'));
    await assert.rejects(text(guarded), /^StorageUnavailable: mapped: socket hang up$/);
  });

  it('an abort ends the read with the abort reason and destroys the body', async () => {
    const body = new PassThrough();
    const controller = new AbortController();
    const guarded = guardBody(body, 5, 'get x', mapError, controller.signal);
    body.write('he');
    const reason = new Error('cancelled by DELETE');
    controller.abort(reason);
    await assert.rejects(text(guarded), (err) => err === reason);
    assert.equal(body.destroyed, true);
  });

  it('destroying the guarded stream destroys the body', () => {
    const body = new PassThrough();
    guardBody(body, 5, 'get x', mapError).destroy();
    return new Promise<void>((done) => setImmediate(() => done(assert.equal(body.destroyed, true))));
  });
});
