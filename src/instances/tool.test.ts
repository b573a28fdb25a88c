import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { Cancelled } from '../errors.ts';
import { lastErrorLine, runTool, ToolError } from './tool.ts';

describe('tool runner', () => {
  it('finds the line that explains a failure', () => {
    const mariabackup = `[00] 2026-11-25 06:20:49 Connecting to MariaDB server host: 127.0.0.1, user: root, password: set, port: 1
[00] 2026-11-25 06:20:49 Failed to connect to MariaDB server: Can't connect to server on '127.0.0.1' (111 "Connection refused").
`;
    assert.equal(
      lastErrorLine(mariabackup),
      `Failed to connect to MariaDB server: Can't connect to server on '127.0.0.1' (111 "Connection refused").`,
    );
    const mariadbd = `2026-11-25  6:20:36 0 [ERROR] Can't start server: Bind on TCP/IP port. Got error: 98: Address already in use
2026-11-25  6:20:36 0 [ERROR] Do you already have another server running on port: 3306 ?
2026-11-25  6:20:36 0 [ERROR] Aborting
`;
    assert.equal(
      lastErrorLine(mariadbd),
      "[ERROR] Can't start server: Bind on TCP/IP port. Got error: 98: Address already in use",
    );
    const postgres = `2026-11-25 06:21:16.419 UTC [23940] LOG:  could not bind IPv4 address "127.0.0.1": Address already in use
2026-11-25 06:21:16.419 UTC [23940] FATAL:  could not create any TCP/IP sockets
2026-11-25 06:21:16.420 UTC [23940] LOG:  database system is shut down
`;
    assert.equal(lastErrorLine(postgres), 'FATAL:  could not create any TCP/IP sockets');
    assert.equal(lastErrorLine('just one line\n\n'), 'just one line');
    const installDb = `Installing MariaDB/MySQL system tables in '/srv/i/db' ...
2026-12-07  1:52:19 0 [ERROR] InnoDB: syntax error in file path or size specified is less than 1 megabyte
2026-12-07  1:52:19 0 [ERROR] InnoDB: Unable to parse innodb_data_file_path=bogus
2026-12-07  1:52:19 0 [ERROR] Plugin 'InnoDB' registration as a STORAGE ENGINE failed.
2026-12-07  1:52:19 0 [ERROR] Unknown/unsupported storage engine: InnoDB
2026-12-07  1:52:19 0 [ERROR] Aborting

Installation of system tables failed!  Examine the logs in
/srv/i/db for more information.

The problem could be conflicting information in an external
my.cnf files. You can ignore these by doing:
`;
    assert.equal(lastErrorLine(installDb), '[ERROR] InnoDB: Unable to parse innodb_data_file_path=bogus');
  });

  it('feeds stdin and returns what the tool printed', async () => {
    const exit = await runTool('cat', [], { input: Readable.from(['hello ', 'world']) });
    assert.equal(exit.code, 0);
    assert.equal(exit.log, 'hello world');
  });

  it('rejects with ToolError carrying the last error line and exit code', async () => {
    await assert.rejects(runTool('ls', ['/does/not/exist']), (err: Error) => {
      assert.ok(err instanceof ToolError);
      assert.equal(err.exitCode, 2);
      assert.match(err.message, /^ls failed: .*No such file or directory \(exit code 2\)$/);
      return true;
    });
  });

  it('rejects when the success line is missing even with exit code 0', async () => {
    await assert.rejects(
      runTool('echo', ['all fine?'], { okPattern: /completed OK!/ }),
      /echo failed: all fine\? \(did not report success\)/,
    );
  });

  it('stops the tool when aborted', async () => {
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(runTool('sleep', ['30'], { signal: controller.signal }), Cancelled);
    assert.ok(Date.now() - started < 5000);
  });

  it('passes a minimal environment without Tern secrets', async () => {
    process.env.TERN_TEST_SECRET = 'do-not-leak';
    try {
      const exit = await runTool('env', []);
      assert.ok(!exit.log.includes('do-not-leak'));
      assert.match(exit.log, /^PATH=/m);
    } finally {
      delete process.env.TERN_TEST_SECRET;
    }
  });
});
