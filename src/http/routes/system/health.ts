import { sql } from 'kysely';
import type { App, HttpDeps } from '../../app.ts';
import { sendFault } from '../../faults.ts';

// GET /healthz: 200 when the metadata database answers.
export function healthRoute(app: App, deps: HttpDeps): void {
  app.get('/healthz', async (_request, reply) => {
    try {
      await sql`select 1`.execute(deps.db.kysely);
      return { status: 'ok' };
    } catch {
      return sendFault(reply, 'serviceUnavailable', 503, 'metadata database unreachable');
    }
  });
}
