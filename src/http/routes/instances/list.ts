import Type from 'typebox';
import type { App, HttpDeps } from '../../app.ts';
import { instanceView } from '../../views/instance.ts';
import { ProjectParams, projectBase } from '../params.ts';

// GET /v1.0/{project_id}/instances with Trove's limit/marker pagination.

const Query = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1 })),
  marker: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
});

export function listInstancesRoute(app: App, deps: HttpDeps): void {
  app.get('/v1.0/:project_id/instances', { schema: { params: ProjectParams, querystring: Query } }, async (request) => {
    const projectId = request.params.project_id;
    const base = projectBase(deps.publicUrl, projectId);
    const page = await deps.instances.list(request.auth, { projectId, ...request.query });
    const links = [];
    if (page.nextMarker) {
      const params = new URLSearchParams({ marker: page.nextMarker });
      if (request.query.limit !== undefined) params.set('limit', String(request.query.limit));
      links.push({ rel: 'next', href: `${base}/instances?${params}` });
    }
    return { instances: page.items.map((item) => instanceView(item, base)), links };
  });
}
