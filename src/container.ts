import { mkdirSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { StaticTokenAuthenticator } from './auth.ts';
import { CopyRequests } from './backups/copy-request.ts';
import { CREATE_JOB } from './backups/create-from-instance.ts';
import { COPY_JOB, DELETE_JOB, SWEEP_JOB } from './backups/jobs.ts';
import { BackupQuota } from './backups/quota.ts';
import { BackupService } from './backups/service.ts';
import { copyBackupTask } from './backups/tasks/copy.ts';
import { createBackupTask } from './backups/tasks/create.ts';
import { deleteBackupTask } from './backups/tasks/delete.ts';
import { sweepBackupTask } from './backups/tasks/sweep.ts';
import type { StorageConfig, TernConfig } from './config.ts';
import { connectDb, type Db } from './db/connect.ts';
import { seedDatastores } from './db/repos/datastores.ts';
import { createMetrics, type Metrics } from './http/metrics.ts';
import { removeDeadTempDirs } from './instances/process.ts';
import { InstanceServers } from './instances/registry.ts';
import { INSTANCE_CREATE_JOB, INSTANCE_DELETE_JOB, InstanceService } from './instances/service.ts';
import { createInstanceTask } from './instances/tasks/create.ts';
import { deleteInstanceTask } from './instances/tasks/delete.ts';
import { JobRunner } from './jobs/runner.ts';
import { Keyring } from './keys/keyring.ts';
import { createLogger } from './logger.ts';
import { Catalog } from './regions/catalog.ts';
import { SourceRegionApi } from './regions/source-api.ts';
import type { StorageDriver } from './storage/driver.ts';
import { FsDriver } from './storage/drivers/fs.ts';
import { S3Driver } from './storage/drivers/s3.ts';
import { SwiftDriver } from './storage/drivers/swift.ts';

// The composition root: the only place that builds drivers, services and the job runner.

export interface Container {
  config: TernConfig;
  logger: Logger;
  db: Db;
  storage: StorageDriver;
  catalog: Catalog;
  keyring: Keyring;
  backups: BackupService;
  instances: InstanceService;
  /** Handles on the database servers of instances (started or re-adopted by this process). */
  servers: InstanceServers;
  runner: JobRunner;
  metrics: Metrics;
  authenticator: StaticTokenAuthenticator;
  close(): Promise<void>;
}

export function buildDriver(config: StorageConfig): StorageDriver {
  switch (config.driver) {
    case 'fs':
      return new FsDriver({ root: config.root, container: config.container });
    case 's3':
      return new S3Driver(config);
    case 'swift':
      return new SwiftDriver(config);
  }
}

export async function buildContainer(config: TernConfig, options: { logger?: Logger } = {}): Promise<Container> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const db = await connectDb(config.database.url);
  await seedDatastores(db.kysely, config.datastores);
  const storage = buildDriver(config.storage);
  const leftovers = await storage.recover?.();
  if (leftovers) logger.warn({ files: leftovers }, 'removed temp files of writes that died mid-way');
  // Secret files (client option files, pgpass) of backups a killed Tern process never finished.
  const deadTemps = await removeDeadTempDirs();
  if (deadTemps.length > 0) logger.warn({ folders: deadTemps }, 'removed private temp folders of processes that are gone');
  const sources = config.catalog.map((entry) => ({
    region: entry.region,
    apiUrl: entry.apiUrl,
    driver: buildDriver(entry.storage),
  }));
  const catalog = new Catalog([{ region: config.region, apiUrl: config.publicUrl, driver: storage }, ...sources]);
  const [active, ...rotated] = config.encryption.keys;
  const keyring = new Keyring({
    active,
    others: [...rotated, ...config.catalog.flatMap((c) => c.keys)],
    legacyPassphrase: config.encryption.legacyPassphrase,
  });
  const metrics = createMetrics();
  const servers = new InstanceServers();
  const instancesDir = join(config.dataDir, 'instances');
  mkdirSync(instancesDir, { recursive: true });
  // 0711: the mysql and postgres users pass through to their own folders but cannot list others.
  await chmod(instancesDir, 0o711);
  const w = config.worker;
  const runner = new JobRunner({
    db,
    handlers: {
      [COPY_JOB]: copyBackupTask({
        db,
        catalog,
        target: storage,
        parallelism: config.copy.parallelism,
        partSize: config.copy.partSize,
        segmentRetries: config.copy.segmentRetries,
        maxAttempts: w.maxAttempts,
        logger,
      }),
      [DELETE_JOB]: deleteBackupTask({ db, storage }),
      [SWEEP_JOB]: sweepBackupTask({ db, storage, logger }),
      [CREATE_JOB]: createBackupTask({
        db,
        storage,
        keyring,
        encrypt: config.encryption.enabled,
        segmentSize: segmentSizeOf(config.storage),
        maxAttempts: w.maxAttempts,
        logger,
      }),
      [INSTANCE_CREATE_JOB]: createInstanceTask({ db, storage, keyring, servers, logger }),
      [INSTANCE_DELETE_JOB]: deleteInstanceTask({ db, servers }),
    },
    concurrency: w.concurrency,
    kindLimits: { [COPY_JOB]: config.copy.maxRunning },
    leaseMs: w.leaseSeconds * 1000,
    heartbeatMs: w.heartbeatSeconds * 1000,
    pollMs: w.pollMs,
    maxAttempts: w.maxAttempts,
    backoffBaseMs: w.backoffBaseMs,
    backoffMaxMs: w.backoffMaxMs,
    logger,
  });
  const wakeWorker = () => runner.wake();
  const quota = new BackupQuota(db, config.quotas.backupsPerProject);
  const copies = new CopyRequests({
    db,
    catalog,
    keyring,
    sourceApi: new SourceRegionApi(catalog),
    quota,
    maxAttempts: w.maxAttempts,
    wakeWorker,
  });
  const backups = new BackupService({ db, copies, quota, limits: config.limits, maxAttempts: w.maxAttempts, wakeWorker });
  const instances = new InstanceService({
    db,
    keyring,
    servers,
    instancesDir,
    limits: config.limits,
    maxAttempts: w.maxAttempts,
    wakeWorker,
    logger,
  });
  return {
    config,
    logger,
    db,
    storage,
    catalog,
    keyring,
    backups,
    instances,
    servers,
    runner,
    metrics,
    authenticator: new StaticTokenAuthenticator(config.auth.tokens),
    async close() {
      await db.close();
      await Promise.all([storage, ...sources.map((s) => s.driver)].map((d) => d.close()));
    },
  };
}

/** Bytes per segment of a new backup: Swift's configured segment size, S3's part size, else 64 MiB. */
function segmentSizeOf(config: StorageConfig): number {
  if (config.driver === 'swift') return config.segmentSize;
  if (config.driver === 's3') return config.partSize;
  return 64 * 1024 * 1024;
}
