import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { type AddressInfo, createServer, type Server } from 'node:net';

// Loopback servers for the abuse suite: one that only counts the connections it accepts (proof
// that a refused location opened none), and a fake Swift whose answers try to send Tern elsewhere.

export interface CountingListener {
  port: number;
  host: string;
  accepted(): number;
  close(): Promise<void>;
}

export async function countingListener(host = '127.0.0.1', port = 0): Promise<CountingListener> {
  let count = 0;
  const server: Server = createServer((socket) => {
    count++;
    socket.destroy();
  });
  server.listen(port, host);
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    host,
    accepted: () => count,
    close: () => new Promise((ok) => server.close(() => ok())),
  };
}

/**
 * A TempAuth-speaking server that a catalog region points at, but that answers every object request
 * with a redirect to `elsewhere`, and (when `storageElsewhere`) names `elsewhere` as its storage URL.
 */
export async function redirectingSwift(
  elsewhere: string,
  options: { storageElsewhere?: boolean } = {},
): Promise<{ port: number; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  let port = 0;
  const server: HttpServer = createHttpServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    req.resume();
    if (req.url === '/auth/v1.0') {
      const storage = options.storageElsewhere ? `${elsewhere}/v1/AUTH_test` : `http://127.0.0.1:${port}/v1/AUTH_test`;
      res.writeHead(200, { 'x-storage-url': storage, 'x-auth-token': 'AUTH_tk_fake', 'x-auth-token-expires': '3600' });
      res.end();
      return;
    }
    res.writeHead(302, { location: `${elsewhere}${req.url}` });
    res.end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
  return { port, requests, close: () => new Promise((ok) => server.close(() => ok())) };
}
