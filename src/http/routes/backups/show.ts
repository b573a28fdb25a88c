import type { App, HttpDeps } from '../../app.ts';
import { backupView } from '../../views/backup.ts';
import { BackupParams } from '../params.ts';

export function showBackupRoute(app: App, deps: HttpDeps): void {
  app.get('/v1.0/:project_id/backups/:id', { schema: { params: BackupParams } }, async (request) => {
    const result = await deps.backups.get(request.auth, request.params.project_id, request.params.id);
    return { backup: backupView(result) };
  });
}
