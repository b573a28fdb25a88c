import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isBackupObject } from './backup-objects.ts';

// What a cleanup or a sweep may delete: the objects named after one backup, and nothing else.

const id = '3f716873-a8a1-4fde-bbf6-feeef9106dae';

describe('isBackupObject', () => {
  it("takes the backup's manifest, plain object and segments", () => {
    for (const key of [id, `${id}.xbstream.gz.enc`, `${id}.tar.gz`, `${id}_00000001`, `${id}_00000123`]) {
      assert.equal(isBackupObject(id, key), true, key);
    }
  });

  it("leaves other backups' objects and look-alikes alone", () => {
    for (const key of [
      '27c23c25-1a03-45a9-b3e0-76b092d886eb.xbstream.gz.enc',
      `${id}x.xbstream.gz.enc`,
      `${id}-copy`,
      `old-${id}.xbstream.gz.enc`,
      `${id.slice(0, -1)}.xbstream.gz.enc`,
    ]) {
      assert.equal(isBackupObject(id, key), false, key);
    }
  });
});
