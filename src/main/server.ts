import type { Logger } from 'pino';
import type { TernConfig } from '../config.ts';
import { buildContainer, type Container } from '../container.ts';
import { buildApp } from '../http/app.ts';

export interface RunningTern {
  url: string;
  container: Container;
  close(): Promise<void>;
}

/** Starts the API and, unless disabled, the in-process worker. */
export async function startTern(config: TernConfig, options: { logger?: Logger } = {}): Promise<RunningTern> {
  const container = await buildContainer(config, options);
  const app = await buildApp({
    db: container.db,
    backups: container.backups,
    instances: container.instances,
    authenticator: container.authenticator,
    metrics: container.metrics,
    publicUrl: config.publicUrl,
    maxBodyBytes: config.limits.maxBodyBytes,
    logger: container.logger,
  });
  // Servers keep running while Tern is down; find them again before serving or taking jobs.
  await container.instances.adoptServers();
  const address = await app.listen({ host: config.listen.host, port: config.listen.port });
  if (config.worker.enabled) container.runner.start();
  container.logger.info({ region: config.region, url: address, worker: config.worker.enabled }, 'tern started');
  let closing: Promise<void> | undefined;
  return {
    url: address,
    container,
    close() {
      // Stop taking work, let running jobs finish or release them, then stop serving.
      closing ??= (async () => {
        await container.runner.stop({ graceMs: config.worker.leaseSeconds * 1000 });
        await app.close();
        await container.close();
      })();
      return closing;
    },
  };
}
