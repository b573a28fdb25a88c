import { type Cipheriv, createCipheriv, createDecipheriv, type Decipheriv, pbkdf2, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { IntegrityError } from '../errors.ts';

// Trove encrypts backups with
//   openssl enc -aes-256-cbc -md sha512 -pbkdf2 -iter 10000 -salt -pass pass:KEY
// and Tern's bytes must stay readable (and writable) by that command. Its format:
//   "Salted__" | 8-byte salt | AES-256-CBC(PKCS#7 padded data)
// with key (32 bytes) and IV (16 bytes) = PBKDF2-HMAC-SHA512(pass, salt, 10000 rounds, 48 bytes).

const MAGIC = Buffer.from('Salted__', 'latin1');
const HEADER_LENGTH = MAGIC.length + 8;
const ITERATIONS = 10_000;

function deriveKeyIv(pass: string, salt: Buffer, done: (err: Error | null, key?: Buffer, iv?: Buffer) => void): void {
  pbkdf2(Buffer.from(pass, 'utf8'), salt, ITERATIONS, 48, 'sha512', (err, bytes) => {
    if (err) done(err);
    else done(null, bytes.subarray(0, 32), bytes.subarray(32, 48));
  });
}

function checkPass(pass: string): void {
  if (typeof pass !== 'string' || pass.length === 0) throw new TypeError('encryption key must be a non-empty string');
}

/** Encrypts a stream exactly like `openssl enc -e -aes-256-cbc -md sha512 -pbkdf2 -iter 10000 -salt`. */
export class OpensslEncrypt extends Transform {
  readonly #pass: string;
  readonly #salt: Buffer;
  #cipher: Cipheriv | null = null;

  constructor(pass: string, options: { salt?: Buffer } = {}) {
    checkPass(pass);
    super();
    this.#pass = pass;
    this.#salt = options.salt ?? randomBytes(8);
    if (this.#salt.length !== 8) throw new RangeError('salt must be 8 bytes');
  }

  override _construct(callback: (error?: Error | null) => void): void {
    // The key derivation runs once per stream, off the event loop (libuv pool).
    deriveKeyIv(this.#pass, this.#salt, (err, key, iv) => {
      if (err) return callback(err);
      this.#cipher = createCipheriv('aes-256-cbc', key!, iv!);
      this.push(Buffer.concat([MAGIC, this.#salt]));
      callback();
    });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    callback(null, this.#cipher!.update(chunk));
  }

  override _flush(callback: TransformCallback): void {
    callback(null, this.#cipher!.final());
  }
}

/** Decrypts what `openssl enc -e -aes-256-cbc -md sha512 -pbkdf2 -iter 10000 -salt` wrote. */
export class OpensslDecrypt extends Transform {
  readonly #pass: string;
  #header: Buffer = Buffer.alloc(0);
  #decipher: Decipheriv | null = null;

  constructor(pass: string) {
    checkPass(pass);
    super();
    this.#pass = pass;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.#decipher) {
      this.#update(chunk, callback);
      return;
    }
    // The header may arrive split across chunks.
    this.#header = Buffer.concat([this.#header, chunk]);
    if (this.#header.length < HEADER_LENGTH) {
      callback();
      return;
    }
    if (!this.#header.subarray(0, MAGIC.length).equals(MAGIC)) {
      callback(new IntegrityError('encrypted backup has no OpenSSL "Salted__" header'));
      return;
    }
    const salt = this.#header.subarray(MAGIC.length, HEADER_LENGTH);
    const rest = this.#header.subarray(HEADER_LENGTH);
    deriveKeyIv(this.#pass, Buffer.from(salt), (err, key, iv) => {
      if (err) return callback(err);
      this.#decipher = createDecipheriv('aes-256-cbc', key!, iv!);
      this.#header = Buffer.alloc(0);
      this.#update(rest, callback);
    });
  }

  override _flush(callback: TransformCallback): void {
    if (!this.#decipher) {
      callback(new IntegrityError('encrypted backup is truncated (no complete header)'));
      return;
    }
    try {
      callback(null, this.#decipher.final());
    } catch (err) {
      // A wrong key and corrupt bytes look the same to CBC: the padding check fails.
      callback(new IntegrityError('decryption failed: wrong key or corrupted data', { cause: err }));
    }
  }

  #update(chunk: Buffer, callback: TransformCallback): void {
    try {
      callback(null, this.#decipher!.update(chunk));
    } catch (err) {
      callback(new IntegrityError('decryption failed: corrupted data', { cause: err }));
    }
  }
}

export function createEncryptStream(pass: string, options?: { salt?: Buffer }): OpensslEncrypt {
  return new OpensslEncrypt(pass, options);
}

export function createDecryptStream(pass: string): OpensslDecrypt {
  return new OpensslDecrypt(pass);
}
