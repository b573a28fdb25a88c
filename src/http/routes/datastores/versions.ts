import Type from 'typebox';
import { listDatastores } from '../../../db/repos/datastores.ts';
import { NotFound } from '../../../errors.ts';
import type { App, HttpDeps } from '../../app.ts';
import { versionView } from '../../views/datastore.ts';
import { projectBase } from '../params.ts';
import { findDatastore } from './show.ts';

const Params = Type.Object({
  project_id: Type.String({ maxLength: 64 }),
  ds: Type.String({ maxLength: 64 }),
  version: Type.String({ maxLength: 64 }),
});
const ByIdParams = Type.Object({ project_id: Type.String({ maxLength: 64 }), version: Type.String({ maxLength: 64 }) });

// GET /datastores/{ds}/versions/{version} (by id or name) and GET /datastores/versions/{id}
export function showDatastoreVersionRoute(app: App, deps: HttpDeps): void {
  app.get('/v1.0/:project_id/datastores/:ds/versions/:version', { schema: { params: Params } }, async (request) => {
    const ds = await findDatastore(deps, request.params.ds);
    const v = ds.versions.find((x) => x.id === request.params.version || x.name === request.params.version);
    if (!v) throw new NotFound(`Datastore version '${request.params.version}' cannot be found.`);
    return { version: versionView(v, ds.name, projectBase(deps.publicUrl, request.params.project_id)) };
  });
  app.get('/v1.0/:project_id/datastores/versions/:version', { schema: { params: ByIdParams } }, async (request) => {
    for (const ds of await listDatastores(deps.db.kysely)) {
      const v = ds.versions.find((x) => x.id === request.params.version);
      if (v) return { version: versionView(v, ds.name, projectBase(deps.publicUrl, request.params.project_id)) };
    }
    throw new NotFound(`Datastore version '${request.params.version}' cannot be found.`);
  });
}
