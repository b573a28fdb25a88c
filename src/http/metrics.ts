import { Counter, collectDefaultMetrics, Registry } from 'prom-client';

// Prometheus metrics served at /metrics. One registry per process so tests can build several apps.

export interface Metrics {
  registry: Registry;
  requests: Counter<'method'>;
  jobs: Counter<'kind' | 'outcome'>;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    requests: new Counter({
      name: 'tern_http_requests_total',
      help: 'HTTP requests received',
      labelNames: ['method'],
      registers: [registry],
    }),
    jobs: new Counter({
      name: 'tern_jobs_total',
      help: 'Jobs finished, by kind and outcome',
      labelNames: ['kind', 'outcome'],
      registers: [registry],
    }),
  };
}
