import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfig, stableId } from './config.ts';
import { ConfigError } from './errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'tern-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('loadConfig', () => {
  it('with nothing given: region local on 127.0.0.1:8779, SQLite and fs under the data dir, a dev token', () => {
    const data = join(dir, 'var1');
    const c = loadConfig({ env: { TERN_DATA_DIR: data } });
    assert.equal(c.region, 'local');
    assert.equal(c.listen.host, '127.0.0.1');
    assert.equal(c.listen.port, 8779);
    assert.equal(c.publicUrl, 'http://127.0.0.1:8779');
    assert.equal(c.database.url, `sqlite:${data}/tern.db`);
    assert.deepEqual(c.storage, { driver: 'fs', root: `${data}/objects`, container: 'database_backups' });
    assert.equal(c.worker.enabled, true);
    assert.match(c.generatedDevToken!, /^[0-9a-f]{48}$/);
    assert.equal(readFileSync(join(data, 'dev-token'), 'utf8').trim(), c.generatedDevToken);
    assert.deepEqual(c.auth.tokens[0].roles, ['admin', 'member']);
    // The token survives a restart.
    assert.equal(loadConfig({ env: { TERN_DATA_DIR: data } }).generatedDevToken, c.generatedDevToken);
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.listen));
  });

  it('reads YAML, resolves relative paths against the file, and applies env overrides', () => {
    const path = file(
      'a.yaml',
      'region: region2\nlisten: { port: 9000 }\ndataDir: ./data\nauth:\n  tokens:\n    - { token: abcdefgh12, project: p1, roles: [member] }\n',
    );
    const c = loadConfig({ file: path, env: { TERN_PORT: '9100', TERN_WORKER: 'off' } });
    assert.equal(c.region, 'region2');
    assert.equal(c.listen.port, 9100);
    assert.equal(c.worker.enabled, false);
    assert.equal(c.dataDir, join(dir, 'data'));
    assert.equal(c.generatedDevToken, undefined);
  });

  it('reports every mistake with its path', () => {
    const path = file('bad.json', JSON.stringify({ listen: { port: 'x' }, colour: 'blue', worker: { concurrency: 0 } }));
    assert.throws(
      () => loadConfig({ file: path }),
      (err: Error) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /\/listen\/port/);
        assert.match(err.message, /colour/);
        assert.match(err.message, /\/worker\/concurrency/);
        return true;
      },
    );
  });

  it('refuses unreadable files, bad YAML, a bad database URL and duplicate catalog regions', () => {
    assert.throws(() => loadConfig({ file: join(dir, 'missing.yaml') }), /cannot read config file/);
    assert.throws(() => loadConfig({ file: file('b.yaml', 'region: [') }), /not valid YAML/);
    assert.throws(() => loadConfig({ env: { TERN_DATABASE_URL: 'mysql://x' } }), /\/database\/url/);
    const dup = file(
      'dup.json',
      JSON.stringify({ region: 'r1', catalog: [{ region: 'r1', storage: { driver: 'fs', root: '/x' } }] }),
    );
    assert.throws(() => loadConfig({ file: dup }), /listed twice/);
  });

  it('refuses fs container names that could escape the root or meet the sidecar tree', () => {
    for (const container of ['.', '..', '.meta', '.tmp-1', 'a/b']) {
      const path = file(`c${Math.random()}.json`, JSON.stringify({ storage: { driver: 'fs', root: '/x', container } }));
      assert.throws(() => loadConfig({ file: path }), /\/storage/, container);
    }
    const ok = file('ok.json', JSON.stringify({ storage: { driver: 'fs', root: '/x', container: 'a.b_c-1' } }));
    assert.equal((loadConfig({ file: ok }).storage as { container: string }).container, 'a.b_c-1');
  });

  it('defaults quotas.backupsPerProject to 50 and copy.maxRunning to 8, and accepts only positive integers', () => {
    const c = loadConfig({ env: { TERN_DATA_DIR: join(dir, 'q') } });
    assert.equal(c.quotas.backupsPerProject, 50);
    assert.equal(c.copy.maxRunning, 8);
    const set = file('q.json', JSON.stringify({ quotas: { backupsPerProject: 3 }, copy: { maxRunning: 2 } }));
    assert.equal(loadConfig({ file: set }).quotas.backupsPerProject, 3);
    assert.equal(loadConfig({ file: set }).copy.maxRunning, 2);
    for (const bad of [0, -1, 2.5, '10']) {
      const q = file(`q${Math.random()}.json`, JSON.stringify({ quotas: { backupsPerProject: bad } }));
      assert.throws(() => loadConfig({ file: q }), /\/quotas\/backupsPerProject/, String(bad));
      const m = file(`m${Math.random()}.json`, JSON.stringify({ copy: { maxRunning: bad } }));
      assert.throws(() => loadConfig({ file: m }), /\/copy\/maxRunning/, String(bad));
    }
    const extra = file('qx.json', JSON.stringify({ quotas: { instances: 3 } }));
    assert.throws(() => loadConfig({ file: extra }), /instances/);
  });

  it('gives datastore versions ids that are the same in every region', () => {
    const a = loadConfig({ env: { TERN_DATA_DIR: join(dir, 'a'), TERN_REGION: 'a' } });
    const b = loadConfig({ env: { TERN_DATA_DIR: join(dir, 'b'), TERN_REGION: 'b' } });
    assert.deepEqual(a.datastores, b.datastores);
    assert.equal(a.datastores[0].versions[0].id, stableId('datastore-version', 'mariadb', '10.11'));
    assert.match(a.datastores[0].versions[0].id, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
