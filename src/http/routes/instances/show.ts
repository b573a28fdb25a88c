import type { App, HttpDeps } from '../../app.ts';
import { instanceView } from '../../views/instance.ts';
import { BackupParams as InstanceParams, projectBase } from '../params.ts';

// GET /v1.0/{project_id}/instances/{id}
export function showInstanceRoute(app: App, deps: HttpDeps): void {
  app.get('/v1.0/:project_id/instances/:id', { schema: { params: InstanceParams } }, async (request) => {
    const { project_id: projectId, id } = request.params;
    const result = await deps.instances.get(request.auth, projectId, id);
    return { instance: instanceView(result, projectBase(deps.publicUrl, projectId)) };
  });
}
