import type { Db } from '../../db/connect.ts';
import { findInstance, softDeleteInstance, updateInstance } from '../../db/repos/instances.ts';
import type { JobHandler } from '../../jobs/types.ts';
import type { InstanceServers } from '../registry.ts';

// The 'instance.delete' job: stops the server, removes its folder, then hides the row (kept for
// audit, and so restores of its backups can still find the admin credentials).

export function deleteInstanceTask(deps: { db: Db; servers: InstanceServers }): JobHandler<{ instanceId: string }> {
  const { db, servers } = deps;
  return {
    async run({ instanceId }) {
      const row = await findInstance(db.kysely, instanceId);
      if (row?.status !== 'SHUTDOWN') return;
      if (row.data_dir) await servers.destroy(instanceId, row.data_dir);
      await softDeleteInstance(db.kysely, instanceId);
    },
    async onGiveUp({ instanceId }, error) {
      // The row stays SHUTDOWN and visible, with the reason, so the operator sees what is left.
      await updateInstance(db.kysely, instanceId, { fail_reason: `delete failed: ${error.message}`.slice(0, 500) });
    },
  };
}
