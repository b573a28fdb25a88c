import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { InstanceServers } from '../../src/instances/registry.ts';
import { FsDriver } from '../../src/storage/drivers/fs.ts';
import { ensureDatastorePackages, mariadbSql, pgQuery } from '../datastores/helpers.ts';
import { type ServedRegion, serveRegion } from '../helpers/serve.ts';
import { filesUnder, killAndWait, orphanKeys, pidsMentioning, regionApi, reportFault, storedBytesMatch } from './helpers.ts';

// kill -9 of a real `tern serve` process at a random point of (a) a backup of an instance (MariaDB,
// then PostgreSQL) and (b) a restore into a new instance, then a restart. The backup must end
// COMPLETED with bytes that verify (and restore), or FAILED with a reason; the restore ACTIVE with
// the source's data (CHECKSUM TABLE; row counts and an md5 of every row), or ERROR with a reason.
// No job may run to completion twice, and nothing may be left behind: no object outside a
// COMPLETED backup, no temp file, no private temp folder of the killed process (its TMPDIR is
// private to this test), no tool still running on a folder of ours.

const token = randomBytes(16).toString('hex');
const LOAD = `
CREATE DATABASE shop;
USE shop;
CREATE TABLE shop.orders (id INT PRIMARY KEY, customer INT, amount DECIMAL(10,2), note VARCHAR(200)) ENGINE=InnoDB;
INSERT INTO shop.orders SELECT seq, seq % 977, seq * 1.5, REPEAT(MD5(seq), 3) FROM seq_1_to_150000;
CREATE TABLE shop.audit (id INT PRIMARY KEY, event VARCHAR(64)) ENGINE=Aria;
INSERT INTO shop.audit SELECT seq, CONCAT('event-', seq) FROM seq_1_to_2000;
`;

const PG_LOAD = `
CREATE TABLE orders (id int PRIMARY KEY, customer int, amount numeric(10,2), note text);
INSERT INTO orders SELECT g, g % 977, g * 1.5, repeat(md5(g::text), 3) FROM generate_series(1, 150000) g;
`;

type Server = { host: string; port: number };
const serverOf = (instance: any): Server => ({ host: instance.ip[0], port: instance.port });

/** What differs between the datastores: their data, how to compare it, their tools and server. */
const DATASTORES = [
  {
    name: 'mariadb',
    datastore: { type: 'mariadb', version: '10.11' },
    load: (server: Server, password: string) => mariadbSql(server, password, LOAD),
    snapshot: (server: Server, password: string) =>
      mariadbSql(
        server,
        password,
        'CHECKSUM TABLE shop.orders, shop.audit EXTENDED; SELECT COUNT(*), SUM(amount) FROM shop.orders;',
      ),
    /** Backup and restore tools still running on a folder of ours or on the source server. */
    tools: (dir: string) => [...pidsMentioning(dir, 'mariabackup'), ...pidsMentioning(dir, 'mbstream')],
    server: 'mariadbd',
    fault: '',
  },
  {
    name: 'postgresql',
    datastore: { type: 'postgresql', version: '15' },
    load: async (server: Server, password: string) => {
      await pgQuery(server, password, 'CREATE DATABASE shop');
      await pgQuery(server, password, PG_LOAD, 'shop');
    },
    snapshot: async (server: Server, password: string) => {
      const { rows } = await pgQuery(
        server,
        password,
        `SELECT count(*)::text AS n, sum(amount)::text AS total,
                md5(string_agg(id || ':' || customer || ':' || amount || ':' || note, ',' ORDER BY id)) AS rows_md5 FROM orders`,
        'shop',
      );
      return JSON.stringify(rows[0]);
    },
    tools: (dir: string, sourcePort?: number) => [
      ...pidsMentioning(dir, 'tar'),
      ...(sourcePort ? pidsMentioning(String(sourcePort), 'pg_basebackup') : []),
    ],
    server: 'postgres',
    fault: '-postgresql',
  },
];

for (const ds of DATASTORES) {
  describe(`fault: the Tern process is killed (-9) during a ${ds.name} backup and during a restore`, () => {
    let dir: string;
    let regionDir: string;
    let privateTmp: string;
    let region: ServedRegion | undefined;
    let config: Record<string, unknown>;
    /** stdout (JSON log lines) of every process of the region so far, the killed ones included. */
    const logs: string[] = [];
    let sourcePort: number | undefined;

    const start = async () => {
      region = await serveRegion(regionDir, config, { env: { TMPDIR: privateTmp }, captureStdout: true });
    };
    const api = regionApi(() => region!.url, token);
    const until = async (path: string, key: 'backup' | 'instance', done: string[], timeoutMs = 120_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const item = (await api('GET', path)).body?.[key];
        if (done.includes(item?.status)) return item;
        if (Date.now() > deadline) assert.fail(`${path} still ${item?.status} after ${timeoutMs} ms`);
        await sleep(100);
      }
    };
    /** Polls (every 20 ms) until `started` holds; ms since the call, or fails after 60 s. */
    const waitUntil = async (started: () => Promise<boolean> | boolean) => {
      const t0 = Date.now();
      while (!(await started())) {
        if (Date.now() - t0 > 60_000) assert.fail('the work never started');
        await sleep(20);
      }
      return Date.now() - t0;
    };
    const statusOf = async (path: string, key: 'backup' | 'instance') => (await api('GET', path)).body?.[key]?.status as string;
    /** kill -9 of the region `ms` after its work started, then a restart; returns the status just before. */
    const killAfter = async (ms: number, path: string, key: 'backup' | 'instance') => {
      await sleep(ms);
      const before = await statusOf(path, key);
      const child = region!.child;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
      logs.push(region!.stdout());
      await start();
      return before;
    };
    const logCount = (msg: string, field: string, id: string) =>
      [...logs, region!.stdout()]
        .flatMap((text) => text.split('\n'))
        .filter((line) => {
          try {
            const entry = JSON.parse(line);
            return entry.msg === msg && entry[field] === id;
          } catch {
            return false;
          }
        }).length;
    const jobsOf = (resource: string) => {
      const db = new DatabaseSync(join(regionDir, 'tern.db'), { readOnly: true });
      try {
        // The sweep a failed backup enqueues for a minute later is not the backup's own job.
        return db
          .prepare("SELECT status, attempts FROM jobs WHERE resource_id = ? AND kind != 'backup.sweep'")
          .all(resource) as any[];
      } finally {
        db.close();
      }
    };

    /** What a run left: objects outside COMPLETED backups, temp files, private temp folders, running tools. */
    const leftovers = async (storage: FsDriver) => {
      const backups = (await api('GET', '/backups')).body.backups;
      return {
        orphans: await orphanKeys(storage, backups),
        temps: filesUnder(join(regionDir, 'objects')).filter((f) => f.split('/').some((p) => p.startsWith('.tmp-'))),
        tmpLeft: readdirSync(privateTmp),
        tools: ds.tools(dir, sourcePort),
      };
    };
    const count = (l: Record<string, unknown[]>) => Object.values(l).reduce((n, v) => n + v.length, 0);

    before(async () => {
      ensureDatastorePackages();
      dir = mkdtempSync(join(tmpdir(), 'tern-fault-instance-'));
      chmodSync(dir, 0o711); // mysql must pass through to the instance folders
      regionDir = join(dir, 'region');
      privateTmp = join(dir, 'tmp');
      mkdirSync(regionDir, { mode: 0o711 });
      mkdirSync(privateTmp, { mode: 0o700 });
      config = {
        region: 'region1',
        logLevel: 'info',
        storage: { driver: 'fs', root: join(regionDir, 'objects') },
        auth: { tokens: [{ token, project: 'p1', roles: ['member'] }] },
        // A short lease: the killed process's job is reclaimed soon after the restart.
        worker: { pollMs: 50, leaseSeconds: 2, heartbeatSeconds: 0.5, backoffBaseMs: 100, backoffMaxMs: 1000 },
      };
      await start();
    });

    after(async () => {
      await region?.stop();
      // Database servers outlive Tern by design: stop the ones this test made, as Tern deletes an
      // instance (which also removes the short socket folder a long path gave it under /tmp).
      const instances = join(regionDir, 'instances');
      for (const id of existsSync(instances) ? readdirSync(instances) : []) {
        await new InstanceServers().destroy(id, join(instances, id));
      }
      for (const pid of pidsMentioning(dir)) await killAndWait(pid, 'SIGTERM', 60_000);
      rmSync(dir, { recursive: true, force: true });
    });

    test('each run ends truthful, verified, once, with nothing left behind', { timeout: 300_000 }, async (t) => {
      const storage = new FsDriver({ root: join(regionDir, 'objects'), container: 'database_backups' });
      const created = await api('POST', '/instances', {
        instance: { name: 'source', datastore: ds.datastore, volume: { size: 1 } },
      });
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const source = await until(`/instances/${created.body.instance.id}`, 'instance', ['ACTIVE', 'ERROR']);
      assert.equal(source.status, 'ACTIVE', JSON.stringify(source.fault));
      const password = created.body.instance.credential.password;
      sourcePort = serverOf(source).port;
      await ds.load(serverOf(source), password);
      const expected = await ds.snapshot(serverOf(source), password);

      // A backup and a restore nobody kills: they measure how long the work takes once its job runs
      // (BUILDING; the instance folder exists), so the kills below land inside that time.
      const baseline = await api('POST', '/backups', { backup: { name: 'baseline', instance: source.id } });
      assert.equal(baseline.status, 202, JSON.stringify(baseline.body));
      const aPath = `/backups/${baseline.body.backup.id}`;
      await waitUntil(async () => (await statusOf(aPath, 'backup')) !== 'NEW');
      const backupMs = await waitUntil(async () => ['COMPLETED', 'FAILED'].includes(await statusOf(aPath, 'backup')));
      const a = await until(aPath, 'backup', ['COMPLETED', 'FAILED']);
      assert.equal(a.status, 'COMPLETED', a.fail_reason);
      const plain = await api('POST', '/instances', {
        instance: { name: 'plain', volume: { size: 1 }, restorePoint: { backupRef: a.id } },
      });
      const plainPath = `/instances/${plain.body.instance.id}`;
      await waitUntil(() => existsSync(join(regionDir, 'instances', plain.body.instance.id)));
      const restoreMs = await waitUntil(async () => ['ACTIVE', 'ERROR'].includes(await statusOf(plainPath, 'instance')));
      const plainRestore = await until(plainPath, 'instance', ['ACTIVE', 'ERROR']);
      assert.equal(plainRestore.status, 'ACTIVE', JSON.stringify(plainRestore.fault));
      assert.equal(await ds.snapshot(serverOf(plainRestore), password), expected, 'an undisturbed restore has the data');
      assert.equal((await api('DELETE', plainPath)).status, 202);

      // (a) the backup
      const posted = await api('POST', '/backups', { backup: { name: 'killed', instance: source.id } });
      assert.equal(posted.status, 202, JSON.stringify(posted.body));
      const b0 = posted.body.backup;
      await waitUntil(async () => (await statusOf(`/backups/${b0.id}`, 'backup')) !== 'NEW');
      const backupKillMs = Math.round(backupMs * 0.7 * Math.random());
      const backupAtKill = await killAfter(backupKillMs, `/backups/${b0.id}`, 'backup');
      const b = await until(`/backups/${b0.id}`, 'backup', ['COMPLETED', 'FAILED']);
      const sourceAfter = await until(`/instances/${source.id}`, 'instance', ['ACTIVE', 'ERROR']);
      const backupVerified =
        b.status === 'COMPLETED' && (await storedBytesMatch(storage, storage.keyOf(b.locationRef)!, b.checksum));
      const backupTruthful = backupVerified || (b.status === 'FAILED' && !!b.fail_reason);
      const backupLeft = await leftovers(storage);

      // (b) a restore of that backup (of the baseline when it failed) into a new instance
      const restorePoint = b.status === 'COMPLETED' ? b : a;
      const asked = await api('POST', '/instances', {
        instance: { name: 'restored', volume: { size: 1 }, restorePoint: { backupRef: restorePoint.id } },
      });
      assert.equal(asked.status, 200, JSON.stringify(asked.body));
      await waitUntil(() => existsSync(join(regionDir, 'instances', asked.body.instance.id)));
      const restoreKillMs = Math.round(restoreMs * 0.9 * Math.random());
      const restoreAtKill = await killAfter(restoreKillMs, `/instances/${asked.body.instance.id}`, 'instance');
      const r = await until(`/instances/${asked.body.instance.id}`, 'instance', ['ACTIVE', 'ERROR']);
      const restoredData = r.status === 'ACTIVE' ? await ds.snapshot(serverOf(r), password) : null;
      const restoreTruthful = restoredData === expected || (r.status === 'ERROR' && !!r.fault?.message);
      // A restore that ended in ERROR proves nothing about the backup: restore it again, undisturbed.
      let restorable = restoredData === expected;
      if (r.status === 'ERROR') {
        const again = await api('POST', '/instances', {
          instance: { name: 'again', volume: { size: 1 }, restorePoint: { backupRef: restorePoint.id } },
        });
        const r2 = await until(`/instances/${again.body.instance.id}`, 'instance', ['ACTIVE', 'ERROR']);
        restorable = r2.status === 'ACTIVE' && (await ds.snapshot(serverOf(r2), password)) === expected;
      }
      // What the restore left: what was not already there after the backup.
      const after = await leftovers(storage);
      const fresh = <T>(now: T[], before: T[]) => now.filter((x) => !before.includes(x));
      const restoreLeft = {
        orphans: fresh(after.orphans, backupLeft.orphans),
        temps: fresh(after.temps, backupLeft.temps),
        tmpLeft: fresh(after.tmpLeft, backupLeft.tmpLeft),
        tools: fresh(after.tools, backupLeft.tools),
        instanceDir: [] as string[],
      };
      const restoredDir = join(regionDir, 'instances', r.id);
      if (r.status === 'ERROR' && existsSync(restoredDir)) restoreLeft.instanceDir.push(restoredDir);
      const servers = pidsMentioning(restoredDir, ds.server).length;

      const completions = {
        backup: logCount('backup completed', 'backupId', b.id),
        restore: logCount('instance active', 'instanceId', r.id),
      };
      const jobs = { backup: jobsOf(b.id), restore: jobsOf(r.id) };
      const detail =
        `backup killed ${backupKillMs} ms into ~${backupMs} (${backupAtKill}) -> ${b.status}${b.fail_reason ? ` (${b.fail_reason})` : ''}; ` +
        `restore of ${restorePoint === b ? 'it' : 'the baseline'} killed ${restoreKillMs} ms into ~${restoreMs} (${restoreAtKill}) -> ${r.status}` +
        `${r.fault?.message ? ` (${r.fault.message})` : ''}; completions ${JSON.stringify(completions)}, ` +
        `attempts ${jobs.backup.map((j) => j.attempts)}/${jobs.restore.map((j) => j.attempts)}; ` +
        `left after the backup: ${JSON.stringify(backupLeft)}; after the restore: ${JSON.stringify(restoreLeft)}`;
      const backupLost = Number(b.status === 'COMPLETED' && !backupVerified);
      const restoreLost = Number(r.status === 'ACTIVE' && restoredData !== expected);
      const backupOrphans = count(backupLeft);
      const restoreOrphans = count(restoreLeft);
      reportFault(t, {
        name: `kill-9-during-backup${ds.fault}`,
        injected: 1,
        survived: Number(backupTruthful),
        lost: backupLost,
        orphans: backupOrphans,
      });
      reportFault(
        t,
        {
          name: `kill-9-during-restore${ds.fault}`,
          injected: 1,
          survived: Number(restoreTruthful),
          lost: restoreLost,
          orphans: restoreOrphans,
        },
        detail,
      );

      assert.equal(backupLost + restoreLost, 0, detail);
      assert.ok(backupTruthful, `backup: ${detail}`);
      assert.ok(restoreTruthful, `restore: ${detail}`);
      assert.ok(restorable, `the backup restores undisturbed: ${detail}`);
      assert.equal(sourceAfter.status, 'ACTIVE', 'the source instance is ACTIVE again after its backup');
      // At most once: a log line of the killed process may not have reached the pipe.
      assert.ok(completions.backup <= Number(b.status === 'COMPLETED'), `the backup job completed at most once: ${detail}`);
      assert.ok(completions.restore <= Number(r.status === 'ACTIVE'), `the restore job completed at most once: ${detail}`);
      for (const [what, rows] of Object.entries(jobs)) {
        assert.equal(rows.length, 1, `one ${what} job`);
        assert.ok(['succeeded', 'failed'].includes(rows[0].status), `${what} job finished: ${rows[0].status}`);
      }
      assert.equal(
        servers,
        Number(r.status === 'ACTIVE'),
        `one server for the restored instance, none for one in ERROR: ${detail}`,
      );
      assert.equal(backupOrphans + restoreOrphans, 0, `nothing left behind: ${detail}`);
    });
  });
}
