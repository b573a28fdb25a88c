import Type from 'typebox';
import type { App, HttpDeps } from '../../app.ts';
import { createdInstanceView } from '../../views/instance.ts';
import { ProjectParams, projectBase } from '../params.ts';

// POST /v1.0/{project_id}/instances: a new server, or a restore of a backup (restorePoint).
// Trove answers 200 with the instance in BUILD. Trove's other fields (flavorRef, nics, ...) are
// accepted and ignored: Tern runs servers on this host.

const Body = Type.Object({
  instance: Type.Object({
    name: Type.String({ minLength: 1, maxLength: 255, pattern: '\\S' }),
    datastore: Type.Optional(
      Type.Object({
        type: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
        version: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
      }),
    ),
    volume: Type.Object({ size: Type.Integer({ minimum: 1, maximum: 1_000_000 }) }),
    restorePoint: Type.Optional(Type.Object({ backupRef: Type.String({ minLength: 1, maxLength: 64 }) })),
  }),
});

export function createInstanceRoute(app: App, deps: HttpDeps): void {
  app.post('/v1.0/:project_id/instances', { schema: { params: ProjectParams, body: Body } }, async (request, reply) => {
    const i = request.body.instance;
    const projectId = request.params.project_id;
    const created = await deps.instances.create(request.auth, projectId, {
      name: i.name,
      datastore: i.datastore,
      volumeSize: i.volume.size,
      restorePoint: i.restorePoint,
    });
    return reply.code(200).send({ instance: createdInstanceView(created, projectBase(deps.publicUrl, projectId)) });
  });
}
