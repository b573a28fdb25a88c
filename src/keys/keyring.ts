import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { KeyUnavailable } from '../errors.ts';

// Envelope encryption for per-backup passphrases and instance admin passwords.
//
// Each backup is encrypted (openssl-compatible AES-256-CBC, streams/openssl-cipher.ts) with its own
// random passphrase. The passphrase is stored only wrapped: AES-256-GCM under a region key, next to
// that key's id, so keys can rotate (old ids stay readable) and a copy to another region re-wraps
// the passphrase under the target's key without touching the bytes.
//
// A key's secret is any high-entropy string from config; the AES key is its SHA-256. A key's id
// defaults to a fingerprint of the secret, so two regions configured with the same secret agree.

export interface KeySecret {
  id: string;
  secret: string;
}

export interface Wrapped {
  keyId: string;
  /** base64 of iv (12) | tag (16) | ciphertext */
  wrapped: string;
}

export function keyFingerprint(secret: string): string {
  return `k-${createHash('sha256').update(`tern-key-id:${secret}`).digest('hex').slice(0, 16)}`;
}

export class Keyring {
  private readonly keys = new Map<string, Buffer>();
  readonly activeKeyId: string;
  /** Trove's deployment-wide backup key (its `backup_aes_cbc_key`), for backups made by Trove. */
  readonly legacyPassphrase: string | undefined;

  constructor(options: { active: KeySecret; others?: KeySecret[]; legacyPassphrase?: string }) {
    for (const k of [options.active, ...(options.others ?? [])]) {
      const material = createHash('sha256').update(k.secret).digest();
      const known = this.keys.get(k.id);
      if (known && !known.equals(material)) throw new Error(`key id ${k.id} is configured twice with different secrets`);
      this.keys.set(k.id, material);
    }
    this.activeKeyId = options.active.id;
    this.legacyPassphrase = options.legacyPassphrase;
  }

  /** A fresh random passphrase for one backup's openssl encryption. */
  static newPassphrase(): string {
    return randomBytes(32).toString('base64url');
  }

  has(keyId: string): boolean {
    return this.keys.has(keyId);
  }

  wrap(plain: string): Wrapped {
    const key = this.keys.get(this.activeKeyId)!;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(this.activeKeyId));
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return { keyId: this.activeKeyId, wrapped: Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64') };
  }

  unwrap(w: Wrapped): string {
    const key = this.keys.get(w.keyId);
    if (!key) throw new KeyUnavailable(`encryption key ${w.keyId} is not known to this region`);
    const raw = Buffer.from(w.wrapped, 'base64');
    if (raw.length < 28) throw new KeyUnavailable(`the wrapped secret under key ${w.keyId} is malformed`);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
      decipher.setAAD(Buffer.from(w.keyId));
      decipher.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
    } catch {
      throw new KeyUnavailable(`the wrapped secret does not open with key ${w.keyId} (wrong key or damaged)`);
    }
  }

  /** Re-wraps a secret wrapped under any known key (e.g. another region's) under the active key. */
  rewrap(w: Wrapped): Wrapped {
    return w.keyId === this.activeKeyId ? w : this.wrap(this.unwrap(w));
  }
}
