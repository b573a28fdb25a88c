import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Conflict } from '../errors.ts';
import { assertMove, canMove, sourcesOf } from './state.ts';

describe('instance states', () => {
  it('allows build, backup and delete moves', () => {
    for (const [from, to] of [
      ['BUILD', 'ACTIVE'],
      ['BUILD', 'ERROR'],
      ['ACTIVE', 'BACKUP'],
      ['BACKUP', 'ACTIVE'],
      ['ACTIVE', 'SHUTDOWN'],
      ['ERROR', 'SHUTDOWN'],
    ] as const) {
      assert.ok(canMove(from, to), `${from} -> ${to}`);
    }
  });
  it('refuses a backup of a building or failed instance and a delete during a backup', () => {
    assert.equal(canMove('BUILD', 'BACKUP'), false);
    assert.equal(canMove('ERROR', 'BACKUP'), false);
    assert.equal(canMove('BACKUP', 'SHUTDOWN'), false);
    assert.throws(() => assertMove('SHUTDOWN', 'ACTIVE'), Conflict);
  });
  it('lists the sources of a move for compare-and-set', () => {
    assert.deepEqual(sourcesOf('BACKUP'), ['ACTIVE']);
    assert.deepEqual(sourcesOf('SHUTDOWN').sort(), ['ACTIVE', 'ERROR', 'SHUTDOWN']);
  });
});
