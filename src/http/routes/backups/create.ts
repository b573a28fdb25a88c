import Type from 'typebox';
import type { App, HttpDeps } from '../../app.ts';
import { backupView } from '../../views/backup.ts';
import { ProjectParams } from '../params.ts';

// POST /v1.0/{project_id}/backups: Trove's instance form, the blueprint's location form,
// Trove's restore_from, and Tern's {source: {region, id}}.

const Nullable = <T extends Type.TSchema>(t: T) => Type.Optional(Type.Union([t, Type.Null()]));

const Body = Type.Object({
  backup: Type.Object({
    name: Type.String({ minLength: 1, maxLength: 255, pattern: '\\S' }),
    description: Nullable(Type.String({ maxLength: 512 })),
    instance: Nullable(Type.String({ minLength: 1, maxLength: 64 })),
    parent_id: Nullable(Type.String({ maxLength: 64 })),
    incremental: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: 1 }), Type.Boolean()])),
    location: Nullable(Type.String({ minLength: 1, maxLength: 2048 })),
    restore_from: Nullable(
      Type.Object({
        remote_location: Type.String({ minLength: 1, maxLength: 2048 }),
        local_datastore_version_id: Type.String({ minLength: 1, maxLength: 64 }),
        size: Nullable(Type.Number({ minimum: 0 })),
      }),
    ),
    source: Nullable(
      Type.Object({ region: Type.String({ minLength: 1, maxLength: 64 }), id: Type.String({ minLength: 1, maxLength: 64 }) }),
    ),
  }),
});

export function createBackupRoute(app: App, deps: HttpDeps): void {
  app.post('/v1.0/:project_id/backups', { schema: { params: ProjectParams, body: Body } }, async (request, reply) => {
    const b = request.body.backup;
    const result = await deps.backups.create(request.auth, request.params.project_id, {
      name: b.name,
      description: b.description,
      instance: b.instance,
      parentId: b.parent_id,
      incremental: b.incremental === 1 || b.incremental === true,
      location: b.location,
      restoreFrom: b.restore_from && {
        remoteLocation: b.restore_from.remote_location,
        localDatastoreVersionId: b.restore_from.local_datastore_version_id,
        size: b.restore_from.size,
      },
      source: b.source,
    });
    return reply.code(202).send({ backup: backupView(result) });
  });
}
