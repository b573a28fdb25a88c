import Type from 'typebox';
import { listDatastores } from '../../../db/repos/datastores.ts';
import { NotFound } from '../../../errors.ts';
import type { App, HttpDeps } from '../../app.ts';
import { datastoreView, versionView } from '../../views/datastore.ts';
import { projectBase } from '../params.ts';

const Params = Type.Object({ project_id: Type.String({ maxLength: 64 }), ds: Type.String({ maxLength: 64 }) });

/** A datastore by id or name, as Trove's clients look it up either way. */
async function findDatastore(deps: HttpDeps, idOrName: string) {
  const found = (await listDatastores(deps.db.kysely)).find((d) => d.id === idOrName || d.name === idOrName);
  if (!found) throw new NotFound(`Datastore '${idOrName}' cannot be found.`);
  return found;
}

// GET /datastores/{ds} and GET /datastores/{ds}/versions
export function showDatastoreRoute(app: App, deps: HttpDeps): void {
  app.get('/v1.0/:project_id/datastores/:ds', { schema: { params: Params } }, async (request) => {
    const ds = await findDatastore(deps, request.params.ds);
    return { datastore: datastoreView(ds, projectBase(deps.publicUrl, request.params.project_id)) };
  });
  app.get('/v1.0/:project_id/datastores/:ds/versions', { schema: { params: Params } }, async (request) => {
    const ds = await findDatastore(deps, request.params.ds);
    const base = projectBase(deps.publicUrl, request.params.project_id);
    return { versions: ds.versions.map((v) => versionView(v, ds.name, base)) };
  });
}

export { findDatastore };
