import { existsSync } from 'node:fs';
import { processesUsing, removeQuietly, terminate } from './process.ts';
import { adopt, type ManagedServer, runningServer } from './provisioner.ts';
import { readState, removeShortSocketDir } from './server.ts';

// Handles on the servers this Tern process started or re-adopted, by instance id. The servers
// themselves outlive Tern; after a restart, adopt() finds them again through their folders.

export class InstanceServers {
  readonly #servers = new Map<string, ManagedServer>();

  set(id: string, server: ManagedServer): void {
    this.#servers.set(id, server);
  }

  get(id: string): ManagedServer | undefined {
    return this.#servers.get(id);
  }

  /** Re-attaches to (or restarts) the server in dataDir and remembers it. */
  async adopt(id: string, dataDir: string, signal?: AbortSignal): Promise<ManagedServer> {
    const server = await adopt(dataDir, { signal });
    this.#servers.set(id, server);
    return server;
  }

  /**
   * Stops the instance's server, if any, and removes its folder. A folder with no handle here
   * (another Tern process started it, or a killed one left it half-made) has its running server
   * found and stopped, and so has any tool still working in it, before the folder goes.
   */
  async destroy(id: string, dataDir: string): Promise<void> {
    let server = this.#servers.get(id) ?? null;
    this.#servers.delete(id);
    // Read before the folder goes: a server that is not running (killed) has no handle to remove
    // a socket folder an earlier release recorded there.
    const state = await readState(dataDir).catch(() => null);
    if (!server && existsSync(dataDir)) server = await runningServer(dataDir).catch(() => null);
    if (server) await server.destroy();
    // A restore's mbstream or mariabackup --prepare outlives a Tern killed under it, and would
    // go on writing into the folder the next attempt makes.
    for (const pid of processesUsing(dataDir)) await terminate(pid, 'SIGKILL', 10_000);
    await removeQuietly(dataDir);
    // Also when no server runs, or a killed Tern made the folder but never recorded it.
    await removeShortSocketDir(dataDir, state);
  }

  /** Every handle, e.g. for tests that must stop what they started. */
  all(): Array<[string, ManagedServer]> {
    return [...this.#servers.entries()];
  }
}
