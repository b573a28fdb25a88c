import { loadConfig } from '../config.ts';
import { buildContainer } from '../container.ts';

// A worker without the API, for deployments that scale workers separately: `node src/main/worker.ts`.
const config = loadConfig({ env: process.env });
const container = await buildContainer(config);
container.runner.start();
container.logger.info({ region: config.region }, 'tern worker started');
let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1);
    stopping = true;
    void container.runner
      .stop({ graceMs: config.worker.leaseSeconds * 1000 })
      .then(() => container.close())
      .then(() => process.exit(0));
  });
}
