import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { manifestEtag } from './swift-etag.ts';

describe('manifestEtag', () => {
  it('is the MD5 of the concatenated segment MD5 hex strings, as Swift 2.30 reports for an SLO', () => {
    // Segments "a" and "b"; the expected value is what a real Swift returned for that manifest.
    const etags = ['0cc175b9c0f1b6a831c399e269772661', '92eb5ffee6ae2fec3ad71c777531578f'];
    assert.equal(manifestEtag(etags), '3bc22fb7aaebe9c8c5d7de312b876bb8');
  });

  it('depends on segment order', () => {
    const etags = ['0cc175b9c0f1b6a831c399e269772661', '92eb5ffee6ae2fec3ad71c777531578f'];
    assert.notEqual(manifestEtag([...etags].reverse()), manifestEtag(etags));
  });
});
