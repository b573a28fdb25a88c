import type { App } from '../../app.ts';

export function openapiRoute(app: App): void {
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
