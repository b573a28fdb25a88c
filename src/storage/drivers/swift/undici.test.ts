import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from './undici.ts';

// request() stands in for undici's own request(url, options), which would load undici's index;
// what it must keep is what reaches the server: method, path with its query, headers and body.

describe('request over undici modules', () => {
  let server: Server;
  let base: string;
  const agent = new Agent();
  const seen: Array<{ method?: string; url?: string; token?: string; body: string }> = [];

  before(async () => {
    server = createServer(async (req, res) => {
      let body = '';
      for await (const chunk of req) body += chunk;
      seen.push({ method: req.method, url: req.url, token: req.headers['x-auth-token'] as string, body });
      res.setHeader('etag', '"abc"');
      res.end(req.method === 'HEAD' ? undefined : `echo ${req.url}`);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await agent.close();
    server.close();
  });

  it('sends a GET by default, with the encoded path and the query, and streams the answer back', async () => {
    const res = await request(`${base}/v1/AUTH_t/c/a%20b?multipart-manifest=get#ignored`, { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'echo /v1/AUTH_t/c/a%20b?multipart-manifest=get');
    assert.deepEqual(seen.at(-1), {
      method: 'GET',
      url: '/v1/AUTH_t/c/a%20b?multipart-manifest=get',
      token: undefined,
      body: '',
    });
  });

  it('sends the method, headers and body it is given', async () => {
    const res = await request(`${base}/v1/AUTH_t/c/o`, {
      dispatcher: agent,
      method: 'PUT',
      headers: { 'x-auth-token': 'tok', 'content-length': '5' },
      body: 'hello',
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers.etag, '"abc"');
    await res.body.dump();
    assert.deepEqual(seen.at(-1), { method: 'PUT', url: '/v1/AUTH_t/c/o', token: 'tok', body: 'hello' });
  });

  it('rejects when the signal is aborted', async () => {
    await assert.rejects(request(`${base}/x`, { dispatcher: agent, signal: AbortSignal.abort(new Error('stop')) }), /stop/);
  });
});
