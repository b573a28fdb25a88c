import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { IntegrityError } from '../errors.ts';
import { createDigestStream } from './hash.ts';
import { verifyDigest } from './verify.ts';

function sink(): Writable & { received: Buffer[] } {
  const received: Buffer[] = [];
  const w = new Writable({
    write(chunk, _enc, cb) {
      received.push(chunk);
      cb();
    },
  });
  return Object.assign(w, { received });
}

function chunks(data: Buffer, size: number): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
    })(),
  );
}

describe('createDigestStream', () => {
  it('passes bytes through unchanged and digests them with md5, sha256 and a byte count', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const digest = createDigestStream({ sha256: true });
    const out = sink();
    await pipeline(chunks(data, 65_536), digest, out);
    assert.deepEqual(Buffer.concat(out.received), data);
    assert.equal(digest.bytes, data.length);
    assert.equal(digest.md5(), createHash('md5').update(data).digest('hex'));
    assert.equal(digest.sha256(), createHash('sha256').update(data).digest('hex'));
  });

  it('digests an empty stream', async () => {
    const digest = createDigestStream();
    await pipeline(Readable.from([]), digest, sink());
    assert.equal(digest.bytes, 0);
    assert.equal(digest.md5(), 'd41d8cd98f00b204e9800998ecf8427e');
  });

  it('refuses to answer before the end, and sha256 when not asked for', async () => {
    const digest = createDigestStream();
    assert.throws(() => digest.md5(), /not ended/);
    await pipeline(Readable.from([Buffer.from('x')]), digest, sink());
    assert.throws(() => digest.sha256(), /without sha256/);
  });
});

describe('verifyDigest', () => {
  async function digestOf(data: Buffer) {
    const digest = createDigestStream();
    await pipeline(Readable.from([data]), digest, sink());
    return digest;
  }

  it('accepts matching md5 (any case) and size', async () => {
    const data = Buffer.from('payload');
    const md5 = createHash('md5').update(data).digest('hex');
    verifyDigest('put x', await digestOf(data), { md5: md5.toUpperCase(), size: data.length });
    verifyDigest('put x', await digestOf(data), {});
  });

  it('throws IntegrityError naming expected and got', async () => {
    const digest = await digestOf(Buffer.from('payload'));
    assert.throws(
      () => verifyDigest('put file:///x', digest, { size: 8 }),
      (err: Error) => {
        assert.ok(err instanceof IntegrityError);
        assert.equal(err.message, 'put file:///x: expected 8 bytes, got 7');
        return true;
      },
    );
    assert.throws(
      () => verifyDigest('put file:///x', digest, { md5: '0'.repeat(32) }),
      (err: Error) =>
        err instanceof IntegrityError && err.message.includes(`expected md5 "${'0'.repeat(32)}", got ${digest.md5()}`),
    );
  });
});
