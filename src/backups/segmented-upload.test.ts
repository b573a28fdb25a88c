import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { after, describe, it } from 'node:test';
import { IntegrityError } from '../errors.ts';
import { FsDriver } from '../storage/drivers/fs.ts';
import { createObjectVerifier } from '../streams/verify-object.ts';
import { uploadSegments } from './segmented-upload.ts';

// Segments cut from a stream of unknown length, joined by a manifest, and read back through the
// verifier a restore uses: whole bytes pass, a changed segment is caught.

describe('segmented backup upload and verified read', () => {
  const root = mkdtempSync(join(tmpdir(), 'tern-seg-'));
  const storage = new FsDriver({ root, container: 'database_backups' });
  after(() => rmSync(root, { recursive: true, force: true }));

  const chunks = Array.from({ length: 37 }, (_, i) => randomBytes(100 + i * 13));
  const whole = Buffer.concat(chunks);

  it('cuts a stream into segments of the given size and reads back the same bytes', async () => {
    const id = crypto.randomUUID();
    const segments = await uploadSegments({
      storage,
      backupId: id,
      body: Readable.from(chunks),
      segmentSize: 1000,
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(segments.length, Math.ceil(whole.length / 1000));
    assert.ok(segments.slice(0, -1).every((s) => s.size === 1000));
    assert.equal(
      segments.reduce((n, s) => n + s.size, 0),
      whole.length,
    );
    const manifest = await storage.putManifest(`${id}.xbstream.gz`, segments, { metadata: { lsn: '7' } });
    const head = await storage.head(`${id}.xbstream.gz`);
    assert.equal(head?.etag, manifest.etag);
    const verify = createObjectVerifier({ what: id, checksum: manifest.etag, segments, size: manifest.size });
    const [read] = await Promise.all([buffer(verify), pipeline(await storage.get(`${id}.xbstream.gz`), verify).catch(() => {})]);
    assert.ok(read.equals(whole));

    // The same bytes with one segment changed on disk fail the check.
    writeFileSync(join(root, 'database_backups', segments[2].key), randomBytes(1000));
    const bad = createObjectVerifier({ what: id, checksum: manifest.etag, segments, size: manifest.size });
    const source = await storage.get(`${id}.xbstream.gz`).catch((err) => Readable.from([Buffer.from(String(err))]));
    await assert.rejects(
      pipeline(source, bad, async (s: AsyncIterable<Buffer>) => {
        for await (const _ of s);
      }),
      IntegrityError,
    );
  });

  it('fails the upload when the producer fails, keeping the error', async () => {
    const body = new Readable({ read() {} });
    body.push(randomBytes(2500));
    setTimeout(() => body.destroy(new Error('tool died')), 20);
    await assert.rejects(
      uploadSegments({ storage, backupId: crypto.randomUUID(), body, segmentSize: 1000, signal: AbortSignal.timeout(10_000) }),
      /tool died/,
    );
  });

  it('catches a plain object with a different checksum or size', async () => {
    const data = randomBytes(500);
    const wrongSum = createObjectVerifier({ what: 'x', checksum: '0'.repeat(32), segments: null, size: 500 });
    await assert.rejects(
      pipeline(Readable.from([data]), wrongSum, async (s: AsyncIterable<Buffer>) => {
        for await (const _ of s);
      }),
      IntegrityError,
    );
    const short = createObjectVerifier({ what: 'x', checksum: '0'.repeat(32), segments: null, size: 501 });
    await assert.rejects(
      pipeline(Readable.from([data]), short, async (s: AsyncIterable<Buffer>) => {
        for await (const _ of s);
      }),
      /read 500 bytes/,
    );
  });
});
