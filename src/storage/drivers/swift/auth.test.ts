import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent } from 'undici';
import { ConfigError, StorageAuthFailed, StorageUnavailable } from '../../../errors.ts';
import { SwiftAuth, type SwiftAuthConfig } from './auth.ts';

// SwiftAuth against a small loopback identity server. test/storage/swift.test.ts covers real
// TempAuth and a real Keystone; this fake exists for what they cannot show quickly: tokens that
// expire within a second, a slow identity server, and a failing one.

interface Seen {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: any;
}

let server: Server;
let base: string;
const seen: Seen[] = [];
let issued = 0;
/** How the fake answers; tests set these. */
let ttlMs = 3_600_000;
let delayMs = 0;
let status = 0; // 0: normal answers

const CATALOG = [
  { type: 'identity', endpoints: [{ interface: 'public', region_id: 'R1', url: 'http://127.0.0.1:5000/v3' }] },
  {
    type: 'object-store',
    endpoints: [
      { interface: 'admin', region_id: 'R1', url: 'http://127.0.0.1:1/v1/AUTH_admin' },
      { interface: 'public', region_id: 'R1', url: 'http://127.0.0.1:2/v1/AUTH_p1/' },
      { interface: 'public', region: 'R2', region_id: 'R2', url: 'http://127.0.0.1:3/v1/AUTH_p1' },
    ],
  },
];

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString();
  seen.push({ method: req.method!, path: req.url!, headers: req.headers, body: text ? JSON.parse(text) : null });
  if (delayMs) await sleep(delayMs);
  if (status) {
    res.writeHead(status).end('nope');
    return;
  }
  issued++;
  if (req.url!.startsWith('/auth/v1.0')) {
    const ok = req.headers['x-storage-user'] === 'acct:user' && req.headers['x-storage-pass'] === 'pw';
    if (!ok) return void res.writeHead(401).end();
    res.writeHead(200, {
      'x-auth-token': `tok-${issued}`,
      'x-storage-url': 'http://127.0.0.1:9/v1/AUTH_acct',
      'x-auth-token-expires': String(ttlMs / 1000),
    });
    return void res.end();
  }
  res.writeHead(201, { 'content-type': 'application/json', 'x-subject-token': `tok-${issued}` });
  res.end(JSON.stringify({ token: { expires_at: new Date(Date.now() + ttlMs).toISOString(), catalog: CATALOG } }));
}

const agent = new Agent();
function auth(config: Partial<SwiftAuthConfig>): SwiftAuth {
  return new SwiftAuth({ authUrl: `${base}/v3`, authVersion: '3', ...config }, agent, 2000);
}
const PASSWORD = { user: 'u', key: 'secret-pw', projectName: 'p', regionName: 'R1' };

before(async () => {
  server = createServer((req, res) => void handle(req, res));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.close();
  await agent.close();
});

function reset(): void {
  seen.length = 0;
  ttlMs = 3_600_000;
  delayMs = 0;
  status = 0;
}

describe('SwiftAuth with Keystone v3', () => {
  it('sends the bodies Keystone expects for password, token and application credential', async () => {
    reset();
    await auth({ ...PASSWORD, userDomain: 'D1', projectDomain: 'D2' }).session();
    await auth({ key: 'existing-token', projectName: 'p', regionName: 'R1' }).session();
    await auth({ applicationCredentialId: 'ac-id', applicationCredentialSecret: 'ac-secret', regionName: 'R1' }).session();
    assert.deepEqual(
      seen.map((s) => [s.method, s.path]),
      [
        ['POST', '/v3/auth/tokens'],
        ['POST', '/v3/auth/tokens'],
        ['POST', '/v3/auth/tokens'],
      ],
    );
    assert.deepEqual(seen[0].body, {
      auth: {
        identity: { methods: ['password'], password: { user: { name: 'u', domain: { name: 'D1' }, password: 'secret-pw' } } },
        scope: { project: { name: 'p', domain: { name: 'D2' } } },
      },
    });
    assert.deepEqual(seen[1].body, {
      auth: {
        identity: { methods: ['token'], token: { id: 'existing-token' } },
        scope: { project: { name: 'p', domain: { name: 'Default' } } },
      },
    });
    // Application credentials carry their scope: none is sent.
    assert.deepEqual(seen[2].body, {
      auth: { identity: { methods: ['application_credential'], application_credential: { id: 'ac-id', secret: 'ac-secret' } } },
    });
  });

  it('takes the object-store endpoint of the region and interface, and finds the tokens URL', async () => {
    reset();
    assert.equal((await auth(PASSWORD).session()).storageUrl, 'http://127.0.0.1:2/v1/AUTH_p1');
    assert.equal((await auth({ ...PASSWORD, regionName: 'R2' }).session()).storageUrl, 'http://127.0.0.1:3/v1/AUTH_p1');
    assert.equal((await auth({ ...PASSWORD, interface: 'admin' }).session()).storageUrl, 'http://127.0.0.1:1/v1/AUTH_admin');
    await assert.rejects(auth({ ...PASSWORD, regionName: 'R9' }).session(), StorageAuthFailed);
    const pinned = auth({ ...PASSWORD, regionName: 'R9', storageUrl: 'http://127.0.0.1:7/v1/AUTH_x/' });
    assert.equal((await pinned.session()).storageUrl, 'http://127.0.0.1:7/v1/AUTH_x');
    for (const authUrl of [base, `${base}/`, `${base}/v3/`, `${base}/v3/auth/tokens`]) {
      seen.length = 0;
      await auth({ ...PASSWORD, authUrl }).session();
      assert.equal(seen[0].path, '/v3/auth/tokens', authUrl);
    }
  });

  it('renews a token shortly before it expires, not on every call', async () => {
    reset();
    ttlMs = 1200; // renewed when less than half its life is left
    const a = auth(PASSWORD);
    const first = await a.session();
    assert.equal((await a.session()).token, first.token);
    assert.equal(seen.length, 1);
    await sleep(700);
    const second = await a.session();
    assert.notEqual(second.token, first.token);
    assert.equal(seen.length, 2);
  });

  it('shares one authentication between concurrent callers', async () => {
    reset();
    delayMs = 150;
    const a = auth(PASSWORD);
    const sessions = await Promise.all([1, 2, 3, 4, 5].map(() => a.session()));
    assert.equal(new Set(sessions.map((s) => s.token)).size, 1);
    assert.equal(seen.length, 1);
  });

  it('forgets a refused token only if no newer one replaced it', async () => {
    reset();
    const a = auth(PASSWORD);
    const first = await a.session();
    a.invalidate('some-older-token');
    assert.equal((await a.session()).token, first.token);
    a.invalidate(first.token);
    assert.notEqual((await a.session()).token, first.token);
    assert.equal(seen.length, 2);
  });

  it('maps refusals to StorageAuthFailed and outages to StorageUnavailable, never showing the secret', async () => {
    reset();
    status = 401;
    const refused = await auth(PASSWORD)
      .session()
      .catch((e) => e);
    assert.ok(refused instanceof StorageAuthFailed, `unexpected ${refused}`);
    assert.ok(!refused.message.includes('secret-pw'), refused.message);
    status = 503;
    const down = await auth(PASSWORD)
      .session()
      .catch((e) => e);
    assert.ok(down instanceof StorageUnavailable && down.transient, `unexpected ${down}`);
    status = 0;
    delayMs = 3000; // longer than the 2 s auth timeout
    const slow = await auth(PASSWORD)
      .session()
      .catch((e) => e);
    assert.ok(slow instanceof StorageUnavailable, `unexpected ${slow}`);
    delayMs = 0;
    const closed = new SwiftAuth({ authUrl: 'http://127.0.0.1:1/v3', authVersion: '3', ...PASSWORD }, agent, 2000);
    assert.ok((await closed.session().catch((e) => e)) instanceof StorageUnavailable);
  });

  it('stops waiting when the caller aborts', async () => {
    reset();
    delayMs = 500;
    const controller = new AbortController();
    const pending = auth(PASSWORD).session(controller.signal);
    controller.abort(new Error('caller gave up'));
    await assert.rejects(pending, /caller gave up/);
    await sleep(600); // the shared call itself goes on; let it land before the next test
  });
});

describe('SwiftAuth with TempAuth', () => {
  it('refuses an X-Storage-Url other than the endpoint the catalog was configured with', async () => {
    reset();
    const a = new SwiftAuth({ authUrl: `${base}/auth/v1.0`, user: 'acct:user', key: 'pw' }, agent, 2000);
    assert.equal(a.predictedStorageUrl(), `${base}/v1/AUTH_acct`);
    await assert.rejects(a.session(), (err: Error) => {
      assert.ok(err instanceof StorageAuthFailed);
      assert.match(err.message, /names storage URL http:\/\/127\.0\.0\.1:9\/v1\/AUTH_acct, not the configured/);
      assert.ok(!err.message.includes('pw'));
      return true;
    });
  });

  it('uses X-Storage-Url when it is the configured one and renews by X-Auth-Token-Expires', async () => {
    reset();
    ttlMs = 1000;
    const a = new SwiftAuth(
      { authUrl: `${base}/auth/v1.0`, user: 'acct:user', key: 'pw', storageUrl: 'http://127.0.0.1:9/v1/AUTH_acct/' },
      agent,
      2000,
    );
    const first = await a.session();
    assert.equal(first.storageUrl, 'http://127.0.0.1:9/v1/AUTH_acct');
    assert.equal((await a.session()).token, first.token);
    await sleep(600);
    assert.notEqual((await a.session()).token, first.token);
    assert.deepEqual(
      seen.map((s) => [s.method, s.path, s.headers['x-storage-user'], s.headers['x-storage-pass']]),
      [
        ['GET', '/auth/v1.0', 'acct:user', 'pw'],
        ['GET', '/auth/v1.0', 'acct:user', 'pw'],
      ],
    );
  });

  it('uses a fixed token with a configured storage URL, without any auth call', async () => {
    reset();
    const a = new SwiftAuth(
      { authUrl: `${base}/auth/v1.0`, storageUrl: 'http://127.0.0.1:9/v1/AUTH_x', key: 'tok' },
      agent,
      2000,
    );
    assert.deepEqual(await a.session(), { token: 'tok', storageUrl: 'http://127.0.0.1:9/v1/AUTH_x', renewAt: null });
    assert.equal(a.renewable, false);
    assert.equal(seen.length, 0);
  });
});

describe('SwiftAuth configuration', () => {
  it('refuses configurations that cannot authenticate', () => {
    const cases: Partial<SwiftAuthConfig>[] = [
      { authVersion: '1', user: 'u' },
      { authVersion: '1', key: 'k' },
      { authVersion: '3' },
      { authVersion: '3', user: 'u' },
      { authVersion: '3', applicationCredentialId: 'id' },
    ];
    for (const c of cases) {
      assert.throws(() => new SwiftAuth({ authUrl: base, ...c }, agent, 1000), ConfigError, JSON.stringify(c));
    }
  });
});
