import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { IntegrityError } from '../errors.ts';
import { manifestEtag } from './swift-etag.ts';
import { verifiedRead } from './verify-object.ts';

// A reader that gives up part way (a restore tool choking on damaged bytes) still gets a verdict
// on the segment it was in, so the restore can report the bad bytes rather than the tool's error.

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
const SEG = 64 * 1024;

function object(segments: Buffer[]) {
  return {
    what: 'obj',
    checksum: manifestEtag(segments.map(md5)),
    segments: segments.map((s) => ({ size: s.length, etag: md5(s) })),
    size: segments.reduce((n, s) => n + s.length, 0),
  };
}

/** Bytes in 4 KiB chunks, as a storage body would stream them. */
function body(bytes: Buffer): Readable {
  return Readable.from(
    Array.from({ length: Math.ceil(bytes.length / 4096) }, (_, i) => bytes.subarray(i * 4096, (i + 1) * 4096)),
  );
}

/** Reads `bytes` bytes of the stream, then destroys it with an error, as a failing tool's pipeline would. */
async function readThenFail(stream: Readable, bytes: number): Promise<void> {
  let seen = 0;
  for await (const chunk of stream) {
    seen += (chunk as Buffer).length;
    if (seen >= bytes) break;
  }
  stream.destroy(new Error('incorrect data check'));
}

describe('verifiedRead', () => {
  it('judges the rest of the segment a reader left early: bad bytes there are the verdict', async () => {
    const segments = [randomBytes(SEG), randomBytes(SEG), randomBytes(SEG)];
    const expected = object(segments);
    const stored = Buffer.concat(segments);
    stored[SEG + 1000] ^= 0xff; // in segment 2
    const read = verifiedRead(body(stored), expected);
    await readThenFail(read.stream, SEG + 8192); // the reader fails in segment 2, before its end
    const verdict = await read.verdict();
    assert.ok(verdict instanceof IntegrityError);
    assert.match(verdict.message, /checksum mismatch in segment 2/);
  });

  it('finds nothing when the bytes the reader left were good', async () => {
    const segments = [randomBytes(SEG), randomBytes(SEG), randomBytes(SEG)];
    const read = verifiedRead(body(Buffer.concat(segments)), object(segments));
    await readThenFail(read.stream, SEG + 8192);
    assert.equal(await read.verdict(), null);
  });

  it('never ends the stream cleanly on bad bytes, and never passes the end of a bad segment on', async () => {
    const segments = [randomBytes(SEG), randomBytes(SEG)];
    const stored = Buffer.concat(segments);
    stored[10] ^= 0xff;
    const read = verifiedRead(body(stored), object(segments));
    let passed = 0;
    await assert.rejects(
      (async () => {
        for await (const chunk of read.stream) passed += (chunk as Buffer).length;
      })(),
      /checksum mismatch in segment 1/,
    );
    assert.ok(passed < SEG, `${passed} bytes passed on, less than the bad segment`);
    assert.ok((await read.verdict()) instanceof IntegrityError);
  });

  it('reports a storage error as the stream error, not as a verdict on the bytes', async () => {
    const segments = [randomBytes(SEG)];
    const failing = new Readable({
      read() {
        this.destroy(new Error('connection reset'));
      },
    });
    const read = verifiedRead(failing, object(segments));
    await assert.rejects(
      (async () => {
        for await (const _ of read.stream);
      })(),
      /connection reset/,
    );
    assert.equal(await read.verdict(), null);
  });
});
