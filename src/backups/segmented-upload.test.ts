import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, describe, it } from 'node:test';
import { IntegrityError } from '../errors.ts';
import { FsDriver } from '../storage/drivers/fs.ts';
import { verifiedRead } from '../streams/verify-object.ts';
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
    const expected = { what: id, checksum: manifest.etag, segments, size: manifest.size };
    const read = verifiedRead(await storage.get(`${id}.xbstream.gz`), expected);
    assert.ok((await buffer(read.stream)).equals(whole));
    assert.equal(await read.verdict(), null);

    // The same bytes with one segment changed on disk fail the check.
    writeFileSync(join(root, 'database_backups', segments[2].key), randomBytes(1000));
    const bad = verifiedRead(await storage.get(`${id}.xbstream.gz`), expected);
    await assert.rejects(buffer(bad.stream), /checksum mismatch in segment 3/);
    assert.ok((await bad.verdict()) instanceof IntegrityError);
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
    const wrongSum = verifiedRead(Readable.from([data]), { what: 'x', checksum: '0'.repeat(32), segments: null, size: 500 });
    await assert.rejects(buffer(wrongSum.stream), /checksum mismatch/);
    const short = verifiedRead(Readable.from([data]), { what: 'x', checksum: '0'.repeat(32), segments: null, size: 501 });
    await assert.rejects(buffer(short.stream), /read 500 bytes/);
  });
});
