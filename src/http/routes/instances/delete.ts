import type { App, HttpDeps } from '../../app.ts';
import { BackupParams as InstanceParams } from '../params.ts';

// DELETE /v1.0/{project_id}/instances/{id}: 202; the instance shows SHUTDOWN until the job removed it.
export function deleteInstanceRoute(app: App, deps: HttpDeps): void {
  app.delete('/v1.0/:project_id/instances/:id', { schema: { params: InstanceParams } }, async (request, reply) => {
    await deps.instances.delete(request.auth, request.params.project_id, request.params.id);
    return reply.code(202).send();
  });
}
