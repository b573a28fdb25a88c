import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KeyUnavailable } from '../errors.ts';
import { Keyring, keyFingerprint } from './keyring.ts';

const a = { id: 'region1-2026', secret: 'a'.repeat(40) };
const b = { id: 'region2-2026', secret: 'b'.repeat(40) };

test('wrap then unwrap gives the secret back; every wrap uses a fresh IV', () => {
  const ring = new Keyring({ active: a });
  const one = ring.wrap('passphrase');
  const two = ring.wrap('passphrase');
  assert.equal(one.keyId, 'region1-2026');
  assert.notEqual(one.wrapped, two.wrapped);
  assert.equal(ring.unwrap(one), 'passphrase');
  assert.ok(!one.wrapped.includes('passphrase'));
});

test('another region re-wraps under its own key when it was given the source key id', () => {
  const region1 = new Keyring({ active: a });
  const region2 = new Keyring({ active: b, others: [a] });
  const w = region1.wrap('s3cret');
  const moved = region2.rewrap(w);
  assert.equal(moved.keyId, 'region2-2026');
  assert.equal(region2.unwrap(moved), 's3cret');
  assert.throws(() => region1.unwrap(moved), KeyUnavailable);
});

test('an unknown key id, a tampered blob or a swapped key id is refused with KeyUnavailable', () => {
  const ring = new Keyring({ active: a, others: [b] });
  const w = ring.wrap('x');
  assert.throws(() => ring.unwrap({ keyId: 'nope', wrapped: w.wrapped }), /not known to this region/);
  const raw = Buffer.from(w.wrapped, 'base64');
  raw[raw.length - 1] ^= 1;
  assert.throws(() => ring.unwrap({ keyId: w.keyId, wrapped: raw.toString('base64') }), /does not open/);
  assert.throws(() => ring.unwrap({ keyId: 'region2-2026', wrapped: w.wrapped }), KeyUnavailable);
  assert.throws(() => ring.unwrap({ keyId: w.keyId, wrapped: 'AAAA' }), /malformed/);
});

test('one id with two different secrets is a configuration mistake; fingerprints are stable', () => {
  assert.throws(() => new Keyring({ active: a, others: [{ id: a.id, secret: 'c'.repeat(40) }] }), /configured twice/);
  assert.equal(keyFingerprint('x'.repeat(32)), keyFingerprint('x'.repeat(32)));
  assert.notEqual(keyFingerprint('x'.repeat(32)), keyFingerprint('y'.repeat(32)));
  assert.equal(Keyring.newPassphrase().length, 43);
});
