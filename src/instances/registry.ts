import { existsSync } from 'node:fs';
import { removeQuietly } from './process.ts';
import { adopt, type ManagedServer } from './provisioner.ts';

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
   * (another Tern process started it, or a half-made one) is adopted first so its process is stopped.
   */
  async destroy(id: string, dataDir: string): Promise<void> {
    let server = this.#servers.get(id);
    this.#servers.delete(id);
    if (!server && existsSync(dataDir)) server = await adopt(dataDir).catch(() => undefined);
    if (server) await server.destroy();
    await removeQuietly(dataDir);
  }

  /** Every handle, e.g. for tests that must stop what they started. */
  all(): Array<[string, ManagedServer]> {
    return [...this.#servers.entries()];
  }
}
