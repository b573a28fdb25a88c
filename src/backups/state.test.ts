import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Conflict } from '../errors.ts';
import { assertMove, canMove, isRunning, sourcesOf } from './state.ts';

describe('backup states', () => {
  it('allows the moves of a backup that is copied and then completes or fails', () => {
    for (const [from, to] of [
      ['NEW', 'BUILDING'],
      ['BUILDING', 'COMPLETED'],
      ['BUILDING', 'FAILED'],
      ['NEW', 'FAILED'],
      ['COMPLETED', 'DELETE_FAILED'],
    ] as const) {
      assert.ok(canMove(from, to), `${from} -> ${to}`);
    }
  });
  it('refuses moves out of a final state', () => {
    assert.equal(canMove('COMPLETED', 'BUILDING'), false);
    assert.equal(canMove('FAILED', 'COMPLETED'), false);
    assert.throws(() => assertMove('COMPLETED', 'NEW'), Conflict);
  });
  it('lists the statuses a target can be reached from, for compare-and-set updates', () => {
    assert.deepEqual(sourcesOf('COMPLETED').sort(), ['BUILDING', 'SAVING']);
    assert.deepEqual(sourcesOf('FAILED').sort(), ['BUILDING', 'NEW', 'SAVING']);
  });
  it('knows which statuses are running', () => {
    assert.deepEqual(['NEW', 'BUILDING', 'SAVING', 'COMPLETED', 'FAILED'].map(isRunning), [true, true, true, false, false]);
  });
});
