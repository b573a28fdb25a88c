import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadRequest } from '../errors.ts';
import { backupObjectKey, segmentPrefix, targetKeyFor } from './object-names.ts';

const ID = 'cdb59309-7a07-44c4-9187-edf1f006546f';
const NEW = 'aeb6fa4c-932d-4acc-a339-cccfb9f300b2';

describe('backupObjectKey', () => {
  const cases: Array<[Parameters<typeof backupObjectKey>[1], boolean, string]> = [
    ['mariadb', false, `${ID}.xbstream.gz`],
    ['mariadb', true, `${ID}.xbstream.gz.enc`],
    ['mysql', true, `${ID}.xbstream.gz.enc`],
    ['postgresql', false, `${ID}.tar.gz`],
    ['postgresql', true, `${ID}.tar.gz.enc`],
  ];
  for (const [datastore, encrypted, key] of cases) {
    it(`${datastore}${encrypted ? ' encrypted' : ''} -> ${key.slice(ID.length)}`, () => {
      assert.equal(backupObjectKey(ID, datastore, encrypted), key);
    });
  }
  it('refuses an unknown datastore', () => {
    assert.throws(() => backupObjectKey(ID, 'oracle' as never, false), BadRequest);
  });
});

describe('targetKeyFor', () => {
  const cases: Array<[string, string]> = [
    [`${ID}.xbstream.gz.enc`, `${NEW}.xbstream.gz.enc`],
    [`${ID}.tar.gz`, `${NEW}.tar.gz`],
    [`folder/${ID}.tar.gz.enc`, `${NEW}.tar.gz.enc`],
    ['no-suffix', NEW],
    ['name.with_odd-words.v2', `${NEW}.with_odd-words.v2`],
  ];
  for (const [source, target] of cases) {
    it(`${source} -> ${target}`, () => assert.equal(targetKeyFor(source, NEW), target));
  }
  for (const bad of [`${ID}..tar.gz`, `${ID}.tar gz`, `${ID}.tar.gz.`, `${ID}.${'x'.repeat(80)}`, `${ID}.a%2f`]) {
    it(`refuses the suffix of ${JSON.stringify(bad.slice(ID.length))}`, () => {
      assert.throws(() => targetKeyFor(bad, NEW), /unusual name suffix/);
    });
  }
});

describe('segmentPrefix', () => {
  it('is the id and an underscore, matching segmentKey', () => {
    assert.equal(segmentPrefix(ID), `${ID}_`);
  });
});
