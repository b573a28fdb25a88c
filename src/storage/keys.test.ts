import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidKey } from '../errors.ts';
import { assertSafeKey, segmentKey } from './keys.ts';

describe('assertSafeKey', () => {
  it('accepts Trove object and segment names, folders and odd but harmless characters', () => {
    for (const key of [
      '0b5b6b8e-4c1d-4b8a-9a2e-2f1e0c3d4b5a.xbstream.gz.enc',
      'abc_00000001',
      'dir/sub/x.tar.gz',
      'a b%20#?+é',
      'x..y',
      '...',
      'prefix/',
      'k'.repeat(1024),
    ]) {
      assert.doesNotThrow(() => assertSafeKey(key), key);
    }
  });

  it('refuses keys that are empty, too long, absolute, escaping, or carry control characters', () => {
    const cases: [string, RegExp][] = [
      ['', /empty/],
      ['k'.repeat(1025), /longer than 1024 bytes/],
      ['é'.repeat(513), /longer than 1024 bytes/],
      ['/abs', /starts with/],
      ['..', /"\.\." path segment/],
      ['../x', /"\.\." path segment/],
      ['a/../../b', /"\.\." path segment/],
      ['a/..', /"\.\." path segment/],
      ['./x', /"\." path segment/],
      ['a\\..\\b', /backslash/],
      ['a\x00b', /control character/],
      ['a\nb', /control character/],
      ['a\x1fb', /control character/],
      ['a\x7fb', /control character/],
      ['bad\ud800', /not valid Unicode/],
    ];
    for (const [key, message] of cases) {
      assert.throws(
        () => assertSafeKey(key),
        (err: Error) => err instanceof InvalidKey && message.test(err.message),
        JSON.stringify(key),
      );
    }
  });

  it('shows a refused key escaped, so messages and logs stay one readable line', () => {
    assert.throws(
      () => assertSafeKey('x\n\x7fy'),
      (err: Error) => err.message.includes('"x\\n\\u007fy"'),
    );
  });
});

describe('segmentKey', () => {
  it('formats Trove segment names as <base>_%08d', () => {
    assert.equal(segmentKey('abc', 1), 'abc_00000001');
    assert.equal(segmentKey('abc', 12345678), 'abc_12345678');
  });

  it('refuses numbers that do not fit eight digits', () => {
    for (const n of [-1, 1.5, 100_000_000, Number.NaN]) assert.throws(() => segmentKey('abc', n), RangeError);
  });
});
