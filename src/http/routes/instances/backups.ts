import Type from 'typebox';
import type { App, HttpDeps } from '../../app.ts';
import { pageBody } from '../backups/list.ts';
import { projectBase } from '../params.ts';

const Params = Type.Object({
  project_id: Type.String({ minLength: 1, maxLength: 64 }),
  id: Type.String({ minLength: 1, maxLength: 64 }),
});
const Query = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1 })),
  marker: Type.Optional(Type.String({ maxLength: 64 })),
});

// GET /v1.0/{project_id}/instances/{id}/backups
export function listInstanceBackupsRoute(app: App, deps: HttpDeps): void {
  app.get('/v1.0/:project_id/instances/:id/backups', { schema: { params: Params, querystring: Query } }, async (request) => {
    const { project_id: projectId, id } = request.params;
    const page = await deps.backups.listForInstance(request.auth, { projectId, instanceId: id, ...request.query });
    return pageBody(page, `${projectBase(deps.publicUrl, projectId)}/instances/${id}/backups`, request.query);
  });
}
