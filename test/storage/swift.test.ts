import { randomBytes } from 'node:crypto';
import { after, before } from 'node:test';
import { SwiftDriver } from '../../src/storage/drivers/swift.ts';
import { ensureSwiftRegions, FaultProxy, swiftConfig } from '../helpers/swift.ts';
import { storageContract } from './contract.ts';

// Real Swift: region1 of scripts/swift-regions.sh, each run in its own random container.

const proxies: FaultProxy[] = [];
before(() => ensureSwiftRegions());
after(async () => {
  for (const p of proxies) await p.close();
});

function container(): string {
  return `tern-test-${randomBytes(6).toString('hex')}`;
}

storageContract('swift', async () => {
  await ensureSwiftRegions();
  const proxy = await FaultProxy.start(8081);
  proxies.push(proxy);
  const driver = new SwiftDriver({ ...swiftConfig(1, container()), authUrl: `${proxy.url}/auth/v1.0`, retryBaseMs: 20 });
  return {
    driver,
    faults: {
      breakNextPut: () => proxy.cutUploadAfter(1024 * 1024),
      outage: async () => {
        proxy.mode = '503';
        proxy.dropAll();
        return async () => {
          proxy.mode = 'pass';
        };
      },
    },
  };
});
