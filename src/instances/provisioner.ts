import { setTimeout as sleep } from 'node:timers/promises';
import { Conflict, NotFound } from '../errors.ts';
import { mariadbAcceptsConnections, runMariadb, runningMariadbPid } from './mariadb-process.ts';
import { postmasterStatus, runningPostgresPid, runPostgres } from './postgres-process.ts';
import { isRunning } from './process.ts';
import {
  layoutOf,
  type ManagedServer,
  PortInUse,
  readState,
  removeShortSocketDir,
  type ServerState,
  serverHandle,
} from './server.ts';

// Tern's local provisioner: database servers as processes on this machine, each in its own
// folder. This is the module other code imports; the per-datastore details live beside it.

export { type MariadbStartOptions, mariadbClientConfig, runMariadb, startMariadb } from './mariadb-process.ts';
export { freePort } from './ports.ts';
export { POSTGRES_SUPERUSER, type PostgresStartOptions, pgpassLine, runPostgres, startPostgres } from './postgres-process.ts';
export { type DatastoreKind, layoutOf, type ManagedServer } from './server.ts';
export { ToolError } from './tool.ts';

/**
 * Re-attaches to the server of an instance folder after Tern restarted: returns a handle on the
 * running server, or starts it again (same port when that is still free) when it is not running.
 */
export async function adopt(dataDir: string, options: { signal?: AbortSignal } = {}): Promise<ManagedServer> {
  const layout = layoutOf(dataDir);
  const state = await readState(dataDir).catch((err) => {
    throw new NotFound(`no Tern server in ${dataDir}`, { cause: err });
  });
  const restart = {
    socketDir: state.ownSocketDir ? undefined : state.socketDir,
    extraArgs: state.extraArgs,
    signal: options.signal,
  };
  if (state.kind === 'mariadb') {
    const pid = await runningMariadbPid(layout);
    if (pid) {
      await untilReady(pid, () => mariadbAcceptsConnections(state.host, state.port), dataDir);
      return serverHandle(layout, state, pid, 'SIGTERM');
    }
    return startAgain(
      dataDir,
      state,
      () => runMariadb(dataDir, { ...restart, port: state.port }),
      () => runMariadb(dataDir, restart),
    );
  }
  const pid = await runningPostgresPid(layout);
  if (pid) {
    await untilReady(pid, async () => (await postmasterStatus(layout))?.status === 'ready', dataDir);
    return serverHandle(layout, state, pid, 'SIGINT');
  }
  return startAgain(
    dataDir,
    state,
    () => runPostgres(dataDir, { ...restart, port: state.port }),
    () => runPostgres(dataDir, restart),
  );
}

/**
 * The server of an instance folder if one runs now; never starts one (for stopping what a killed
 * Tern left behind, where starting a half-restored database would only do harm).
 */
export async function runningServer(dataDir: string): Promise<ManagedServer | null> {
  const state = await readState(dataDir).catch(() => null);
  if (!state) return null;
  const layout = layoutOf(dataDir);
  if (state.kind === 'mariadb') {
    const pid = await runningMariadbPid(layout);
    return pid ? serverHandle(layout, state, pid, 'SIGTERM') : null;
  }
  const pid = await runningPostgresPid(layout);
  return pid ? serverHandle(layout, state, pid, 'SIGINT') : null;
}

/**
 * Starts on the recorded port; if another process took it meanwhile, on a new one. A socket
 * folder the server had under /tmp goes first: the new server makes its own.
 */
async function startAgain(
  dataDir: string,
  state: ServerState,
  samePort: () => Promise<ManagedServer>,
  newPort: () => Promise<ManagedServer>,
): Promise<ManagedServer> {
  await removeShortSocketDir(dataDir, state);
  try {
    return await samePort();
  } catch (err) {
    if (!(err instanceof PortInUse)) throw err;
    return newPort();
  }
}

/** A running server may still be starting or recovering (e.g. Tern restarted right after starting it). */
async function untilReady(pid: number, ready: () => Promise<boolean>, dataDir: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ready())) {
    if (!isRunning(pid) || Date.now() > deadline)
      throw new Conflict(`the server (pid ${pid}) of ${dataDir} runs but is not ready`);
    await sleep(100);
  }
}
