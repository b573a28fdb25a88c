import Type from 'typebox';
import type { App, HttpDeps } from '../../app.ts';
import { backupView } from '../../views/backup.ts';
import { ProjectParams, projectBase } from '../params.ts';

// GET /v1.0/{project_id}/backups with Trove's limit/marker pagination and filters.

export const ListQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1 })),
  marker: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  instance_id: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  datastore: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  all_projects: Type.Optional(Type.String({ maxLength: 8 })),
});

export function listBackupsRoute(app: App, deps: HttpDeps): void {
  app.get('/v1.0/:project_id/backups', { schema: { params: ProjectParams, querystring: ListQuery } }, async (request) => {
    const q = request.query;
    const page = await deps.backups.list(request.auth, {
      projectId: request.params.project_id,
      limit: q.limit,
      marker: q.marker,
      instanceId: q.instance_id,
      datastore: q.datastore,
      allProjects: q.all_projects !== undefined && !['0', 'false', 'False'].includes(q.all_projects),
    });
    return pageBody(page, `${projectBase(deps.publicUrl, request.params.project_id)}/backups`, request.query);
  });
}

/** Trove list body: {"backups": [...], "links": [{"rel": "next", "href": ...}]} (links only when more exist). */
export function pageBody(
  page: Awaited<ReturnType<HttpDeps['backups']['list']>>,
  href: string,
  query: Record<string, unknown>,
): Record<string, unknown> {
  const body: Record<string, unknown> = { backups: page.items.map(backupView) };
  if (page.nextMarker) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && k !== 'marker') params.set(k, String(v));
    params.set('marker', page.nextMarker);
    body.links = [{ rel: 'next', href: `${href}?${params}` }];
  } else {
    body.links = [];
  }
  return body;
}
