import { createRequire } from 'node:module';
import type { Dispatcher, Agent as UndiciAgent } from 'undici';

// undici's index also loads fetch, WebSocket, EventSource, its mocks, interceptors and cache
// stores: 28 MiB of RSS in every process that talks to Swift, against 14 MiB for the two modules
// the driver uses (measured by importing each into an empty Node 24 with a warm compile cache).
// undici publishes no "exports" map, so these files may be required; a release that moved them
// would fail every Swift test, not only in production.
const require = createRequire(import.meta.url);

export const Agent: typeof UndiciAgent = require('undici/lib/dispatcher/agent.js');
export type Agent = UndiciAgent;

const requestOn: (
  this: Dispatcher,
  options: Dispatcher.RequestOptions,
) => Promise<Dispatcher.ResponseData> = require('undici/lib/api/api-request.js');

export type RequestOptions = Omit<Dispatcher.RequestOptions, 'origin' | 'path' | 'method'> & {
  dispatcher: Dispatcher;
  method?: Dispatcher.HttpMethod;
};

/** undici's request(url, options), for a caller that always names its dispatcher. */
export function request(url: string, options: RequestOptions): Promise<Dispatcher.ResponseData> {
  const { dispatcher, method = 'GET', ...rest } = options;
  const { origin, pathname, search } = new URL(url);
  return requestOn.call(dispatcher, { ...rest, method, origin, path: pathname + search });
}
