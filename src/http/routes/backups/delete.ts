import type { App, HttpDeps } from '../../app.ts';
import { BackupParams } from '../params.ts';

export function deleteBackupRoute(app: App, deps: HttpDeps): void {
  app.delete('/v1.0/:project_id/backups/:id', { schema: { params: BackupParams } }, async (request, reply) => {
    await deps.backups.delete(request.auth, request.params.project_id, request.params.id);
    return reply.code(202).send();
  });
}
