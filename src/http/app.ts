import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv } from 'ajv';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { AuthContext, Authenticator } from '../auth.ts';
import type { BackupService } from '../backups/service.ts';
import type { Db } from '../db/connect.ts';
import { Forbidden, Unauthorized } from '../errors.ts';
import type { InstanceService } from '../instances/service.ts';
import { errorHandler, sendFault } from './faults.ts';
import type { Metrics } from './metrics.ts';
import { createBackupRoute } from './routes/backups/create.ts';
import { deleteBackupRoute } from './routes/backups/delete.ts';
import { listBackupsRoute } from './routes/backups/list.ts';
import { showBackupRoute } from './routes/backups/show.ts';
import { listDatastoresRoute } from './routes/datastores/list.ts';
import { showDatastoreRoute } from './routes/datastores/show.ts';
import { showDatastoreVersionRoute } from './routes/datastores/versions.ts';
import { listInstanceBackupsRoute } from './routes/instances/backups.ts';
import { createInstanceRoute } from './routes/instances/create.ts';
import { deleteInstanceRoute } from './routes/instances/delete.ts';
import { listInstancesRoute } from './routes/instances/list.ts';
import { showInstanceRoute } from './routes/instances/show.ts';
import { healthRoute } from './routes/system/health.ts';
import { metricsRoute } from './routes/system/metrics.ts';
import { openapiRoute } from './routes/system/openapi.ts';

export interface HttpDeps {
  db: Db;
  backups: BackupService;
  instances: InstanceService;
  authenticator: Authenticator;
  metrics: Metrics;
  publicUrl: string;
  maxBodyBytes: number;
  logger: FastifyBaseLogger;
}

export type App = FastifyInstance<any, any, any, FastifyBaseLogger, TypeBoxTypeProvider>;

declare module 'fastify' {
  interface FastifyRequest {
    auth: AuthContext;
  }
}

export async function buildApp(deps: HttpDeps): Promise<App> {
  const app = Fastify({
    loggerInstance: deps.logger,
    bodyLimit: deps.maxBodyBytes,
    // Trove ids and names may be long; refuse absurd URLs and headers before routing.
    routerOptions: { maxParamLength: 256 },
    logController: new LogController({ disableRequestLogging: true }),
  }).withTypeProvider<TypeBoxTypeProvider>() as App;
  // Query strings and path parameters arrive as text and are coerced ("20" -> 20); JSON bodies are
  // taken as sent, as Trove's jsonschema does: {"name": 0} is a bad request, not a backup named "0".
  const coercing = new Ajv({ coerceTypes: 'array', removeAdditional: false, useDefaults: true, allErrors: false });
  const strict = new Ajv({ coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(schema));

  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) =>
    sendFault(reply, 'itemNotFound', 404, `no such resource: ${request.method} ${request.url.split('?')[0]}`),
  );
  app.decorateRequest('auth', null as unknown as AuthContext);
  await app.register(swagger, {
    openapi: { info: { title: 'Tern (Trove-compatible backups API)', version: '1.0' } },
  });

  // Every /v1.0/ route needs a token; a path project other than the token's needs admin.
  app.addHook('onRequest', async (request) => {
    deps.metrics.requests.inc({ method: request.method });
    if (!request.url.startsWith('/v1.0/')) return;
    const token = request.headers['x-auth-token'];
    if (typeof token !== 'string' || token === '') throw new Unauthorized('missing X-Auth-Token header');
    const ctx = await deps.authenticator.authenticate(token);
    if (!ctx) throw new Unauthorized('the X-Auth-Token is not valid');
    const project = request.url.split('/')[2]?.split('?')[0];
    if (project !== ctx.projectId && !ctx.isAdmin) throw new Forbidden(`this token may not act on project ${project}`);
    request.auth = ctx;
  });

  // One access line per request (Fastify's own request logging is off: it would log headers).
  app.addHook('onResponse', async (request, reply) => {
    const quiet = request.url === '/healthz' || request.url === '/metrics';
    request.log[quiet ? 'debug' : 'info'](
      {
        method: request.method,
        url: request.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
        project: request.auth?.projectId,
      },
      'request',
    );
  });

  for (const route of [
    createBackupRoute,
    listBackupsRoute,
    showBackupRoute,
    deleteBackupRoute,
    listInstanceBackupsRoute,
    createInstanceRoute,
    listInstancesRoute,
    showInstanceRoute,
    deleteInstanceRoute,
    listDatastoresRoute,
    showDatastoreRoute,
    showDatastoreVersionRoute,
    healthRoute,
    metricsRoute,
    openapiRoute,
  ]) {
    route(app, deps);
  }
  return app;
}
