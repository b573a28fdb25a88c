import { listDatastores } from '../../../db/repos/datastores.ts';
import type { App, HttpDeps } from '../../app.ts';
import { datastoreView } from '../../views/datastore.ts';
import { ProjectParams, projectBase } from '../params.ts';

export function listDatastoresRoute(app: App, deps: HttpDeps): void {
  app.get('/v1.0/:project_id/datastores', { schema: { params: ProjectParams } }, async (request) => {
    const base = projectBase(deps.publicUrl, request.params.project_id);
    return { datastores: (await listDatastores(deps.db.kysely)).map((d) => datastoreView(d, base)) };
  });
}
