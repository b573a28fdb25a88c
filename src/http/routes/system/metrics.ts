import type { App, HttpDeps } from '../../app.ts';

export function metricsRoute(app: App, deps: HttpDeps): void {
  app.get('/metrics', async (_request, reply) => {
    return reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
}
