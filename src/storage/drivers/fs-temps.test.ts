import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { removeStaleTemps, tempBeside } from './fs-temps.ts';

test('temp files of dead writers and abandoned ones go; live writes, objects and other names stay', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tern-temps-'));
  try {
    mkdirSync(join(dir, 'a', 'b'), { recursive: true });
    // A pid that certainly ended: a child that already exited.
    const dead = spawnSync('true').pid!;
    const files = {
      dead: join(dir, 'a', `.tmp-${dead}-00ff`),
      mine: tempBeside(join(dir, 'a', 'b', 'object')),
      recentNoPid: join(dir, '.tmp-0123abcd'),
      oldNoPid: join(dir, 'a', 'b', '.tmp-89abcdef'),
      object: join(dir, 'a', 'object.xbstream.gz'),
      lookalike: join(dir, '.tmp-notours'),
    };
    for (const f of Object.values(files)) writeFileSync(f, 'x');
    const twoHoursAgo = (Date.now() - 2 * 3600_000) / 1000;
    utimesSync(files.oldNoPid, twoHoursAgo, twoHoursAgo);
    assert.equal(await removeStaleTemps([dir, join(dir, 'missing')]), 2);
    assert.ok(!existsSync(files.dead) && !existsSync(files.oldNoPid));
    for (const f of [files.mine, files.recentNoPid, files.object, files.lookalike]) assert.ok(existsSync(f), f);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
