import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, it } from 'node:test';
import { privateTempDir, processesUsing, removeDeadTempDirs, removeQuietly, terminate } from './process.ts';

describe('private temp folders', () => {
  it('carry the pid of their process, and a start removes only those of dead processes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tern-sweep-'));
    try {
      // A pid that surely ended: a child that has exited and been reaped.
      const dead = spawnSync('true').pid;
      const mine = await privateTempDir();
      assert.match(basename(mine), new RegExp(`^tern-secret-pid${process.pid}-[A-Za-z0-9]{6}$`));
      await removeQuietly(mine);
      const deadDir = join(dir, `tern-mariabackup-pid${dead}-AbC123`);
      const liveDir = join(dir, `tern-mariabackup-pid${process.pid}-AbC123`);
      const notOurs = join(dir, `tern-region2-${dead}-abcdef`);
      for (const d of [deadDir, liveDir, notOurs]) mkdirSync(d);
      writeFileSync(join(deadDir, 'client.cnf'), '[client]\npassword=secret\n', { mode: 0o600 });

      assert.deepEqual(await removeDeadTempDirs(dir), [deadDir]);
      assert.equal(existsSync(deadDir), false);
      assert.equal(existsSync(liveDir), true, "a live process's folder stays");
      assert.equal(existsSync(notOurs), true, 'folders named otherwise are not touched');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('processesUsing', () => {
  it('finds processes whose arguments name a folder or a path inside it, not a sibling', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tern-using-'));
    // Idle Node processes with the path as an extra (ignored) argument, as a tool would carry it.
    const idle = (arg: string) => spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', '--', arg], { stdio: 'ignore' });
    const inside = idle(join(dir, 'db'));
    const option = idle(`--target-dir=${dir}`);
    const sibling = idle(`${dir}-other/db`);
    try {
      await new Promise((r) => setTimeout(r, 200));
      const found = processesUsing(dir);
      assert.ok(found.includes(inside.pid!), 'a process on a path inside the folder');
      assert.ok(found.includes(option.pid!), 'an option naming the folder');
      assert.ok(!found.includes(sibling.pid!), 'a folder that merely starts with the same name');
      assert.ok(!found.includes(process.pid));
    } finally {
      for (const c of [inside, option, sibling]) await terminate(c.pid!, 'SIGKILL', 5000);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
