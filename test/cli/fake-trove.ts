import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

// A real loopback HTTP server answering Trove v1.0 shapes, for CLI-only behaviour (argument parsing,
// paging, faults, --wait loops) independent of Tern's own server. It records every request.

export interface Recorded {
  method: string;
  url: string;
  token: string | undefined;
  body: any;
}

export interface FakeTrove {
  url: string;
  token: string;
  requests: Recorded[];
  close(): Promise<void>;
}

const DS = { type: 'mariadb', version: '10.11', version_id: 'dsv-1' };

export function backup(id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    name: `name-${id}`,
    description: null,
    locationRef: `http://127.0.0.1:8081/v1/AUTH_test/database_backups/${id}.xbstream.gz.enc`,
    instance_id: null,
    created: '2026-01-02T03:04:05',
    updated: '2026-01-02T03:04:06',
    size: 1.5,
    status: 'COMPLETED',
    parent_id: null,
    project_id: 'p1',
    datastore: DS,
    checksum: 'c0ffee',
    ...extra,
  };
}

export const LISTED = ['b-1', 'b-2', 'b-3', 'b-4', 'b-5'];
const PAGE = 2;

function fault(name: string, code: number, message: string) {
  return { status: code, body: { [name]: { code, message } } };
}

function running(id: string, status: string, percent: number | null) {
  const total = 1024 * 1024 * 1024;
  const done = percent === null ? 0 : Math.round((total * percent) / 100);
  return backup(id, {
    status,
    size: null,
    progress: { done_bytes: done, total_bytes: total, percent, rate_bytes_per_s: 50 * 1024 * 1024, eta_seconds: 12 },
  });
}

export async function startFakeTrove(token: string): Promise<FakeTrove> {
  const requests: Recorded[] = [];
  // Poll counters per backup id: the Nth show of a running backup answers the Nth state.
  const polls = new Map<string, number>();
  const deleted = new Set<string>();

  function route(method: string, url: URL, body: any): { status: number; body?: unknown } {
    const parts = url.pathname.split('/').filter(Boolean); // v1.0, project, collection, id
    if (parts[0] !== 'v1.0' || parts.length < 3) return fault('itemNotFound', 404, 'no such resource');
    const [, project, collection, id] = parts;
    if (collection === 'datastores' && method === 'GET') {
      return {
        status: 200,
        body: {
          datastores: [
            { id: 'ds-m', name: 'mariadb', versions: [{ id: 'dsv-1', name: '10.11' }] },
            { id: 'ds-p', name: 'postgresql', versions: [{ id: 'dsv-2', name: '15' }] },
          ],
        },
      };
    }
    if (collection !== 'backups') return fault('itemNotFound', 404, 'no such resource');
    if (method === 'GET' && !id) {
      const limit = Number(url.searchParams.get('limit') ?? PAGE);
      const marker = url.searchParams.get('marker');
      const start = marker ? LISTED.indexOf(marker) + 1 : 0;
      const ids = LISTED.slice(start, start + limit);
      const more = start + limit < LISTED.length;
      // The next link names a public host the CLI cannot reach: only its marker may be used.
      const links = more
        ? [{ rel: 'next', href: `http://public.invalid:1/v1.0/${project}/backups?limit=${limit}&marker=${ids.at(-1)}` }]
        : [];
      return { status: 200, body: { backups: ids.map((i) => backup(i)), links } };
    }
    if (method === 'GET' && id) {
      const n = (polls.get(id) ?? 0) + 1;
      polls.set(id, n);
      if (deleted.has(id)) {
        return n > 2
          ? fault('itemNotFound', 404, `Backup ${id} could not be found.`)
          : { status: 200, body: { backup: backup(id) } };
      }
      if (id === 'run-ok') {
        const states = [running(id, 'NEW', null), running(id, 'BUILDING', 0), running(id, 'SAVING', 50), backup(id)];
        return { status: 200, body: { backup: states[Math.min(n - 1, states.length - 1)] } };
      }
      if (id === 'run-fail') {
        const states = [
          running(id, 'SAVING', 10),
          backup(id, { status: 'FAILED', size: null, fail_reason: 'source checksum mismatch' }),
        ];
        return { status: 200, body: { backup: states[Math.min(n - 1, states.length - 1)] } };
      }
      if (LISTED.includes(id)) return { status: 200, body: { backup: backup(id) } };
      return fault('itemNotFound', 404, `Backup ${id} could not be found.`);
    }
    if (method === 'POST' && !id) {
      const b = body?.backup;
      if (!b?.name) return fault('badRequest', 400, 'body.backup: "name" is required');
      if (b.location?.startsWith('file:')) return fault('badRequest', 400, `location ${b.location} is not in a trusted region`);
      const newId = b.name === 'will-fail' ? 'run-fail' : 'run-ok';
      polls.set(newId, 0);
      return { status: 202, body: { backup: { ...running(newId, 'NEW', null), name: b.name } } };
    }
    if (method === 'DELETE' && id) {
      if (!LISTED.includes(id)) return fault('itemNotFound', 404, `Backup ${id} could not be found.`);
      deleted.add(id);
      polls.set(id, 0);
      return { status: 202 };
    }
    return fault('badRequest', 400, 'unsupported');
  }

  const server: Server = createServer(async (req: IncomingMessage, res) => {
    let text = '';
    for await (const chunk of req) text += chunk;
    const body = text ? JSON.parse(text) : undefined;
    const given = req.headers['x-auth-token'] as string | undefined;
    requests.push({ method: req.method!, url: req.url!, token: given, body });
    const url = new URL(req.url!, 'http://127.0.0.1');
    const answer = given === token ? route(req.method!, url, body) : fault('unauthorized', 401, 'the X-Auth-Token is not valid');
    res.writeHead(answer.status, answer.body === undefined ? {} : { 'content-type': 'application/json' });
    res.end(answer.body === undefined ? undefined : JSON.stringify(answer.body));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    requests,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
