import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type FakeTrove, LISTED, startFakeTrove } from './fake-trove.ts';
import { tern, ternOnTty } from './run.ts';

// The `tern` CLI as users run it (bin/tern in a child process) against a real loopback HTTP server
// that answers Trove shapes: parsing, output, paging, faults, exit codes, --wait.

describe('tern CLI against a Trove-shaped server', () => {
  const token = randomBytes(16).toString('hex');
  let trove: FakeTrove;
  let env: Record<string, string>;

  before(async () => {
    trove = await startFakeTrove(token);
    env = { TERN_URL: trove.url, TERN_TOKEN: token, TERN_PROJECT: 'p1' };
  });
  after(() => trove.close());

  const since = (n: number) => trove.requests.slice(n);

  test('backup list follows every page by marker and prints a table', async () => {
    const n = trove.requests.length;
    const r = await tern(['backup', 'list'], { env });
    assert.equal(r.code, 0, r.stderr);
    const reqs = since(n);
    // 5 backups, 2 per page: three requests, the later ones carrying the previous page's last id.
    assert.deepEqual(
      reqs.map((q) => q.url),
      ['/v1.0/p1/backups', '/v1.0/p1/backups?marker=b-2', '/v1.0/p1/backups?marker=b-4'],
    );
    for (const q of reqs) assert.equal(q.token, token);
    const header = r.stdout.split('\n').find((l) => l.includes('ID'))!;
    for (const col of ['ID', 'Name', 'Status', 'Size GB', 'Datastore', 'Created']) assert.match(header, new RegExp(col));
    for (const id of LISTED)
      assert.match(
        r.stdout,
        new RegExp(`│ ${id} +│ name-${id} +│ COMPLETED +│ 1\\.50 +│ mariadb 10\\.11 +│ 2026-01-02T03:04:05`),
      );
    assert.doesNotMatch(r.stdout + r.stderr, new RegExp(token));
    assert.ok(!r.stdout.includes('\u001b['), 'no colour codes when piped');
  });

  test('backup list --limit asks for one page, passes the filters and says where the next page starts', async () => {
    const n = trove.requests.length;
    const r = await tern(
      ['backup', 'list', '--limit', '2', '--marker', 'b-1', '--instance', 'i-9', '--datastore', 'mariadb', '--all-projects'],
      { env },
    );
    assert.equal(r.code, 0, r.stderr);
    const reqs = since(n);
    assert.equal(reqs.length, 1);
    const q = new URL(reqs[0].url, 'http://x').searchParams;
    assert.deepEqual(Object.fromEntries(q), {
      limit: '2',
      marker: 'b-1',
      instance_id: 'i-9',
      datastore: 'mariadb',
      all_projects: '1',
    });
    assert.match(r.stdout, /b-2/);
    assert.match(r.stdout, /b-3/);
    assert.doesNotMatch(r.stdout, /b-4/);
    assert.equal(r.stderr, 'more backups: --marker b-3\n');
  });

  test('backup list --json prints the raw page; without --limit the pages joined', async () => {
    const one = await tern(['backup', 'list', '--limit', '2', '--json'], { env });
    assert.equal(one.code, 0, one.stderr);
    const page = JSON.parse(one.stdout);
    assert.deepEqual(
      page.backups.map((b: any) => b.id),
      ['b-1', 'b-2'],
    );
    assert.equal(page.links[0].rel, 'next');
    assert.equal(one.stderr, '');
    const all = JSON.parse((await tern(['backup', 'list', '--json'], { env })).stdout);
    assert.deepEqual(
      all.backups.map((b: any) => b.id),
      LISTED,
    );
    assert.equal(all.backups[0].datastore.version_id, 'dsv-1');
  });

  test('backup show prints the record; --json the API answer', async () => {
    const r = await tern(['backup', 'show', 'b-3'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /status +│ COMPLETED/);
    assert.match(r.stdout, /checksum +│ c0ffee/);
    assert.match(r.stdout, /locationRef +│ http:\/\/127\.0\.0\.1:8081\/v1\/AUTH_test\/database_backups\/b-3\.xbstream\.gz\.enc/);
    const j = await tern(['backup', 'show', 'b-3', '--json'], { env });
    assert.equal(JSON.parse(j.stdout).backup.id, 'b-3');
  });

  test('a Trove fault is printed as "error: <message> (HTTP N)" with exit 1', async () => {
    const r = await tern(['backup', 'show', 'nope'], { env });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, 'error: Backup nope could not be found. (HTTP 404)\n');
  });

  test('a refused token gives the 401 fault and the token is never echoed', async () => {
    const bad = `wrong-${randomBytes(8).toString('hex')}`;
    const r = await tern(['backup', 'list', '--token', bad], { env });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'error: the X-Auth-Token is not valid (HTTP 401)\n');
    assert.equal(trove.requests.at(-1)!.token, bad, '--token wins over TERN_TOKEN');
    assert.doesNotMatch(r.stdout + r.stderr, new RegExp(bad));
  });

  test('a refused connection names the URL and exits 1', async () => {
    const r = await tern(['backup', 'list', '--url', 'http://127.0.0.1:1'], { env });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: cannot (connect to|reach) Tern at http:\/\/127\.0\.0\.1:1/);
    const closed = await startFakeTrove(token);
    const url = closed.url;
    await closed.close();
    const refused = await tern(['datastore', 'list', '--url', url], { env });
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, `error: cannot connect to Tern at ${url}: connection refused (is \`tern serve\` running?)\n`);
  });

  test('the dev token in ./var/dev-token is used when no token is given, and --project picks the path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tern-cli-'));
    try {
      mkdirSync(join(dir, 'var'));
      writeFileSync(join(dir, 'var', 'dev-token'), `${token}\n`);
      const r = await tern(['backup', 'list', '--limit', '1', '--url', trove.url, '--project', 'other'], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      const q = trove.requests.at(-1)!;
      assert.equal(q.token, token);
      assert.equal(q.url, '/v1.0/other/backups?limit=1');
      // Without TERN_PROJECT or --project the project is 'dev'.
      await tern(['backup', 'list', '--limit', '1'], { cwd: dir, env: { TERN_URL: trove.url } });
      assert.equal(trove.requests.at(-1)!.url, '/v1.0/dev/backups?limit=1');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('backup create sends each form as Trove spells it', async () => {
    const cases: Array<[string[], Record<string, unknown>]> = [
      [
        ['c1', '--location', 'http://127.0.0.1:8081/v1/AUTH_test/database_backups/x.xbstream.gz.enc', '--description', 'd'],
        { name: 'c1', description: 'd', location: 'http://127.0.0.1:8081/v1/AUTH_test/database_backups/x.xbstream.gz.enc' },
      ],
      [
        ['c2', '--instance', 'i-1', '--parent', 'b-1', '--incremental'],
        { name: 'c2', instance: 'i-1', parent_id: 'b-1', incremental: 1 },
      ],
      [
        ['c3', '--restore-from', 'swift://x', '--datastore-version-id', 'dsv-1', '--size', '0.5'],
        { name: 'c3', restore_from: { remote_location: 'swift://x', local_datastore_version_id: 'dsv-1', size: 0.5 } },
      ],
    ];
    for (const [args, expected] of cases) {
      const r = await tern(['backup', 'create', ...args, '--json'], { env });
      assert.equal(r.code, 0, r.stderr);
      const q = trove.requests.at(-1)!;
      assert.equal(q.method, 'POST');
      assert.equal(q.url, '/v1.0/p1/backups');
      assert.deepEqual(q.body, { backup: expected });
      assert.equal(JSON.parse(r.stdout).backup.name, args[0]);
    }
  });

  test('backup create refuses contradictory or incomplete options before calling the API (exit 2)', async () => {
    const n = trove.requests.length;
    const bad = [
      ['x'],
      ['x', '--instance', 'i', '--location', 'http://a/b'],
      ['x', '--location', 'http://a/b', '--incremental'],
      ['x', '--restore-from', 'swift://x'],
      ['x', '--location', 'http://a/b', '--size', '3'],
      ['x', '--restore-from', 'swift://x', '--datastore-version-id', 'v', '--size', 'lots'],
      ['--location', 'http://a/b'],
    ];
    for (const args of bad) {
      const r = await tern(['backup', 'create', ...args], { env });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^error: /);
    }
    assert.equal(trove.requests.length, n, 'no request was sent');
  });

  test('backup create --wait prints progress lines when piped and exits 0 on COMPLETED', async () => {
    const r = await tern(['backup', 'create', 'ok', '--location', 'http://a/b', '--wait'], { env });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.deepEqual(lines, [
      'backup run-ok NEW: ok',
      'run-ok NEW ?% of 1.0 GiB, 50.0 MiB/s, ETA 12s',
      'run-ok BUILDING 0.0% of 1.0 GiB, 50.0 MiB/s, ETA 12s',
      'run-ok SAVING 50.0% of 1.0 GiB, 50.0 MiB/s, ETA 12s',
      'run-ok COMPLETED',
      'backup run-ok COMPLETED (1.50 GB, checksum c0ffee)',
    ]);
  });

  test('backup create --wait exits 1 on FAILED and prints the fail_reason', async () => {
    const r = await tern(['backup', 'create', 'will-fail', '--location', 'http://a/b', '--wait'], { env });
    assert.equal(r.code, 1);
    assert.match(r.stdout, /run-fail SAVING 10\.0%/);
    assert.equal(r.stderr, 'error: backup run-fail FAILED: source checksum mismatch\n');
  });

  test('backup create --wait --json keeps stdout pure JSON (progress on stderr)', async () => {
    const r = await tern(['backup', 'create', 'ok', '--location', 'http://a/b', '--wait', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const body = JSON.parse(r.stdout);
    assert.equal(body.backup.status, 'COMPLETED');
    assert.match(r.stderr, /run-ok COMPLETED/);
  });

  test('on a terminal --wait draws a progress bar', async () => {
    const r = await ternOnTty(['backup', 'create', 'ok', '--location', 'http://a/b', '--wait'], env);
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, /SAVING \[[█░]{30}\] 50% \| 50\.0 MiB\/s \| ETA 12s/);
    assert.match(r.stdout, /COMPLETED \[█{30}\] 100%/);
    assert.match(r.stdout, /backup run-ok COMPLETED/);
  });

  test('backup delete --wait polls until the backup is gone', async () => {
    const r = await tern(['backup', 'delete', 'b-5', '--wait'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'backup b-5 deletion accepted\nb-5 COMPLETED\nbackup b-5 deleted\n');
    const reqs = trove.requests.filter((q) => q.url === '/v1.0/p1/backups/b-5');
    assert.deepEqual(
      reqs.map((q) => q.method),
      ['DELETE', 'GET', 'GET', 'GET'],
    );
    const missing = await tern(['backup', 'delete', 'zzz'], { env });
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'error: Backup zzz could not be found. (HTTP 404)\n');
  });

  test('backup copy posts {name, source: {region, id}} to --to-url', async () => {
    const r = await tern(['backup', 'copy', 'b-1', '--from', 'region1', '--to-url', trove.url, '--url', 'http://127.0.0.1:1'], {
      env,
    });
    assert.equal(r.code, 0, r.stderr);
    const q = trove.requests.at(-1)!;
    assert.equal(q.url, '/v1.0/p1/backups');
    assert.deepEqual(q.body, { backup: { name: 'copy-b-1', source: { region: 'region1', id: 'b-1' } } });
    const named = await tern(['backup', 'copy', 'b-1', '--from', 'region1', '--name', 'mine', '--json'], { env });
    assert.equal(named.code, 0, named.stderr);
    assert.deepEqual(trove.requests.at(-1)!.body, { backup: { name: 'mine', source: { region: 'region1', id: 'b-1' } } });
    const noFrom = await tern(['backup', 'copy', 'b-1'], { env });
    assert.equal(noFrom.code, 2);
    assert.match(noFrom.stderr, /--from/);
  });

  test('backup copy --to <region> takes the API URL from the configuration: catalog or this region', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tern-cli-regions-'));
    try {
      const file = join(dir, 'tern.yaml');
      const storage = { driver: 'fs', root: '/nonexistent' };
      writeFileSync(
        file,
        [
          'region: region2',
          `publicUrl: ${trove.url}/`,
          'catalog:',
          `  - { region: region1, apiUrl: "http://127.0.0.1:1", storage: ${JSON.stringify(storage)} }`,
          `  - { region: region3, apiUrl: "${trove.url}", storage: ${JSON.stringify(storage)} }`,
          `  - { region: region4, storage: ${JSON.stringify(storage)} }`,
        ].join('\n'),
      );
      // --url names a dead server: only the URL from the catalog can have answered.
      const dead = { ...env, TERN_URL: 'http://127.0.0.1:1' };
      const n = trove.requests.length;
      const toCatalog = await tern(['backup', 'copy', 'b-1', '--from', 'region1', '--to', 'region3', '--config', file], {
        env: dead,
      });
      assert.equal(toCatalog.code, 0, toCatalog.stderr);
      const toSelf = await tern(['backup', 'copy', 'b-2', '--from', 'region1', '--to', 'region2'], {
        env: { ...dead, TERN_CONFIG: file },
      });
      assert.equal(toSelf.code, 0, toSelf.stderr);
      // No --to and no --url: the current region is the configuration's own API.
      const { TERN_URL: _, ...noUrl } = env;
      const current = await tern(['backup', 'copy', 'b-3', '--from', 'region1', '--config', file], { env: noUrl });
      assert.equal(current.code, 0, current.stderr);
      assert.deepEqual(
        since(n).map((q) => [q.method, q.url, q.body.backup.source]),
        ['b-1', 'b-2', 'b-3'].map((id) => ['POST', '/v1.0/p1/backups', { region: 'region1', id }]),
      );

      const refusals: Array<[string[], Record<string, string>, RegExp]> = [
        [
          ['--to', 'nowhere', '--config', file],
          env,
          /region nowhere is neither this region nor in the catalog .*known: region2, region1, region3, region4/,
        ],
        [['--to', 'region4', '--config', file], env, /region4 .* has no apiUrl/],
        [['--to', 'region3'], env, /--config <tern.yaml> or set TERN_CONFIG/],
        [['--to', 'region3', '--to-url', trove.url, '--config', file], env, /--to or --to-url, not both/],
        [['--to', 'region1', '--config', file], env, /--to and --from both name region1/],
        [['--to', 'region3', '--config', join(dir, 'missing.yaml')], env, /cannot read regions from/],
      ];
      const before = trove.requests.length;
      for (const [args, e, message] of refusals) {
        const r = await tern(['backup', 'copy', 'b-1', '--from', 'region1', ...args], { env: e });
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, message);
      }
      assert.equal(trove.requests.length, before, 'a refused --to sends nothing');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('datastore list prints datastores with their version ids', async () => {
    const r = await tern(['datastore', 'list'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ds-m +│ mariadb +│ 10\.11 \(dsv-1\)/);
    assert.match(r.stdout, /ds-p +│ postgresql +│ 15 \(dsv-2\)/);
    const j = JSON.parse((await tern(['datastore', 'list', '--json'], { env })).stdout);
    assert.equal(j.datastores.length, 2);
  });

  test('usage errors exit 2; help exits 0', async () => {
    assert.equal((await tern(['backup', 'lst'], { env })).code, 2);
    assert.equal((await tern(['backup', 'list', '--limit', '0'], { env })).code, 2);
    assert.equal((await tern(['--url', 'ftp://x', 'backup', 'list'], { env })).code, 2);
    const help = await tern(['backup', 'create', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--restore-from <url>/);
  });

  test('tern serve reports a bad configuration and exits 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tern-cli-'));
    try {
      writeFileSync(join(dir, 'tern.json'), JSON.stringify({ listen: { port: 'eighty' }, bogus: 1 }));
      const r = await tern(['serve', '--config', join(dir, 'tern.json')], { env: { TERN_DATA_DIR: dir } });
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^error: invalid configuration:/);
      assert.match(r.stderr, /bogus/);
      const missing = await tern(['serve', '--config', join(dir, 'nope.yaml')]);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /cannot read config file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
