import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, it } from 'node:test';
import { IntegrityError } from '../errors.ts';
import { createDecryptStream, createEncryptStream } from './openssl-cipher.ts';

const KEY = 'k€y with spaces:$and "quotes"';
const dir = mkdtempSync(join(tmpdir(), 'tern-cipher-'));
// openssl reads the pass phrase from a 0600 file, so the key never shows on a command line.
const passFile = join(dir, 'pass');
writeFileSync(passFile, `${KEY}\n`, { mode: 0o600 });
after(() => rmSync(dir, { recursive: true, force: true }));

const OPENSSL_ARGS = ['-aes-256-cbc', '-md', 'sha512', '-pbkdf2', '-iter', '10000', '-pass', `file:${passFile}`];

/** Runs `openssl enc` with input bytes and returns its output. */
async function openssl(args: string[], input: Buffer): Promise<Buffer> {
  const child = spawn('openssl', ['enc', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (c) => out.push(c));
  child.stderr.on('data', (c) => {
    err += c;
  });
  child.stdin.end(input);
  const code = await new Promise((r) => child.on('close', r));
  assert.equal(code, 0, `openssl failed: ${err}`);
  return Buffer.concat(out);
}

/** Runs bytes through a Transform, feeding them in pieces of `piece` bytes. */
async function through(transform: NodeJS.ReadWriteStream, input: Buffer, piece = 65536): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let i = 0; i < input.length; i += piece) pieces.push(input.subarray(i, i + piece));
  const out: Buffer[] = [];
  await pipeline(Readable.from(pieces), transform, async (s) => {
    for await (const c of s) out.push(c as Buffer);
  });
  return Buffer.concat(out);
}

const SIZES = [0, 1, 15, 16, 17, 1024 * 1024 + 3];

describe('OpenSSL-compatible cipher', () => {
  for (const size of SIZES) {
    it(`our encryption of ${size} bytes is decrypted by openssl enc -d`, async () => {
      const input = randomBytes(size);
      const encrypted = await through(createEncryptStream(KEY), input);
      assert.equal(encrypted.subarray(0, 8).toString('latin1'), 'Salted__');
      assert.equal((encrypted.length - 16) % 16, 0);
      assert.ok(encrypted.length >= input.length + 16 + 1, 'PKCS#7 always adds padding');
      const decrypted = await openssl(['-d', ...OPENSSL_ARGS], encrypted);
      assert.deepEqual(decrypted, input);
    });

    it(`openssl enc -e of ${size} bytes is decrypted by us`, async () => {
      const input = randomBytes(size);
      const encrypted = await openssl(['-e', '-salt', ...OPENSSL_ARGS], input);
      // Feed it in odd pieces so the 16-byte header arrives split.
      const decrypted = await through(createDecryptStream(KEY), encrypted, 7);
      assert.deepEqual(decrypted, input);
    });
  }

  it('produces the same bytes as openssl for the same salt', async () => {
    const input = randomBytes(5000);
    const salt = Buffer.from('0011223344556677', 'hex');
    const ours = await through(createEncryptStream(KEY, { salt }), input);
    // With an explicit -S, openssl 3 writes the ciphertext without the "Salted__" header.
    const theirs = await openssl(['-e', '-S', salt.toString('hex'), ...OPENSSL_ARGS], input);
    assert.deepEqual(ours.subarray(0, 16), Buffer.concat([Buffer.from('Salted__'), salt]));
    assert.deepEqual(ours.subarray(16), theirs);
  });

  it('uses a fresh salt per stream', async () => {
    const input = Buffer.from('same input');
    const a = await through(createEncryptStream(KEY), input);
    const b = await through(createEncryptStream(KEY), input);
    assert.notDeepEqual(a.subarray(8, 16), b.subarray(8, 16));
  });

  it('fails with IntegrityError on a wrong key, without showing either key', async () => {
    const encrypted = await through(createEncryptStream(KEY), randomBytes(4096));
    await assert.rejects(through(createDecryptStream('wrong-key'), encrypted), (err: Error) => {
      assert.ok(err instanceof IntegrityError);
      assert.ok(!err.message.includes('wrong-key') && !err.message.includes(KEY));
      return true;
    });
  });

  it('fails with IntegrityError on data without the Salted__ header or truncated data', async () => {
    await assert.rejects(through(createDecryptStream(KEY), randomBytes(64)), IntegrityError);
    await assert.rejects(through(createDecryptStream(KEY), Buffer.from('Salted__')), IntegrityError);
    const encrypted = await through(createEncryptStream(KEY), randomBytes(4096));
    await assert.rejects(through(createDecryptStream(KEY), encrypted.subarray(0, encrypted.length - 5)), IntegrityError);
  });

  it('refuses an empty key', () => {
    assert.throws(() => createEncryptStream(''), TypeError);
    assert.throws(() => createDecryptStream(''), TypeError);
  });

  it('round-trips a file written by the real openssl command line (pass on a 0600 file)', async () => {
    const input = randomBytes(200_000);
    const plain = join(dir, 'plain');
    writeFileSync(plain, input);
    const enc = await openssl(['-e', '-salt', '-in', plain, ...OPENSSL_ARGS], Buffer.alloc(0));
    assert.deepEqual(await through(createDecryptStream(KEY), enc), readFileSync(plain));
  });
});
