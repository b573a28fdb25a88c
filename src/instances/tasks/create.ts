import type { Logger } from 'pino';
import { backupChain, readChain } from '../../backups/restore-chain.ts';
import { runnerFor } from '../../datastores/runners.ts';
import type { Db } from '../../db/connect.ts';
import { findDatastoreVersion } from '../../db/repos/datastores.ts';
import { findInstance, transitionInstance } from '../../db/repos/instances.ts';
import { BadRequest, Cancelled } from '../../errors.ts';
import { oneLine } from '../../jobs/reason.ts';
import type { JobHandler } from '../../jobs/types.ts';
import type { Keyring } from '../../keys/keyring.ts';
import type { StorageDriver } from '../../storage/driver.ts';
import { type ManagedServer, startMariadb, startPostgres } from '../provisioner.ts';
import type { InstanceServers } from '../registry.ts';

// The 'instance.create' job: starts a fresh server, or restores a backup chain into a new one,
// in the instance's folder. ACTIVE once it accepts connections; on final failure ERROR with the
// reason and the folder removed. A retried run starts over from an empty folder.

export interface InstanceTaskDeps {
  db: Db;
  storage: StorageDriver;
  keyring: Keyring;
  servers: InstanceServers;
  logger?: Pick<Logger, 'info' | 'warn'>;
}

export function createInstanceTask(deps: InstanceTaskDeps): JobHandler<{ instanceId: string }> {
  const { db, storage, keyring, servers, logger } = deps;

  async function start(instanceId: string, signal: AbortSignal): Promise<ManagedServer | undefined> {
    const row = await findInstance(db.kysely, instanceId);
    if (row?.status !== 'BUILD' || !row.data_dir) return undefined;
    const version = await findDatastoreVersion(db.kysely, row.datastore_version_id);
    const runner = version && runnerFor(version.datastore);
    if (!runner) throw new BadRequest(`instance ${instanceId} has a datastore this region cannot run`);
    // Whatever an earlier attempt left (a half-started server, a partial restore) goes first.
    await servers.destroy(instanceId, row.data_dir);
    if (row.restore_backup_id) {
      const chain = await backupChain(db, row.restore_backup_id);
      if (!runner.supportsIncremental && chain.length > 1) {
        throw new BadRequest(`${runner.kind} backups cannot be incremental, but backup ${row.restore_backup_id} has parents`);
      }
      logger?.info({ instanceId, backups: chain.map((b) => b.id) }, 'restoring backup chain');
      const reads = readChain(storage, keyring, chain, signal);
      try {
        return await runner.restore({ chain: reads.links, targetDataDir: row.data_dir, signal });
      } catch (err) {
        throw await reads.explain(err);
      }
    }
    if (!row.wrapped_password || !row.password_key_id) throw new BadRequest(`instance ${instanceId} has no admin password`);
    const rootPassword = keyring.unwrap({ keyId: row.password_key_id, wrapped: row.wrapped_password });
    const options = { dataDir: row.data_dir, rootPassword, signal };
    return runner.kind === 'mariadb' ? startMariadb(options) : startPostgres(options);
  }

  return {
    async run({ instanceId }, ctx) {
      const server = await start(instanceId, ctx.signal);
      if (!server) return;
      servers.set(instanceId, server);
      const active = await transitionInstance(db.kysely, instanceId, 'ACTIVE', {
        host: server.host,
        port: server.port,
        pid: server.pid,
        fail_reason: null,
      });
      if (!active) {
        // Deleted or failed meanwhile: the server belongs to nothing.
        await servers.destroy(instanceId, server.dataDir);
        return;
      }
      logger?.info({ instanceId, port: server.port }, 'instance active');
    },

    async onGiveUp({ instanceId }, error) {
      const row = await findInstance(db.kysely, instanceId);
      if (row?.data_dir) await servers.destroy(instanceId, row.data_dir).catch(() => {});
      const text = error instanceof Cancelled ? `cancelled: ${error.message}` : error.message;
      const reason = oneLine(text);
      await transitionInstance(db.kysely, instanceId, 'ERROR', { fail_reason: reason, pid: null });
      logger?.warn({ instanceId, reason }, 'instance create failed');
    },
  };
}
