import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import faultTable, { parseFaultLine } from './table-reporter.ts';

// The fault table reporter on the events node:test would give it.

async function run(events: Array<{ type: string; data: Record<string, unknown> }>): Promise<string> {
  let out = '';
  for await (const chunk of faultTable(
    (async function* () {
      yield* events;
    })(),
  ))
    out += chunk;
  return out;
}

describe('fault table reporter', () => {
  it('parses FAULT lines and refuses incomplete ones', () => {
    assert.deepEqual(parseFaultLine('FAULT name=a-b injected=2 survived=1 lost=0 orphans=3'), {
      fault: 'a-b',
      injected: 2,
      survived: 1,
      lost: 0,
      orphans: 3,
    });
    assert.equal(parseFaultLine('FAULT name=a injected=1 survived=1 lost=0'), null);
    assert.equal(parseFaultLine('tests 3'), null);
  });

  it('prints one row per fault and the totals, and counts failed fault tests', async () => {
    const out = await run([
      { type: 'test:diagnostic', data: { message: 'FAULT name=one injected=1 survived=1 lost=0 orphans=0' } },
      { type: 'test:diagnostic', data: { message: 'duration_ms 12' } },
      { type: 'test:diagnostic', data: { message: 'FAULT name=two injected=2 survived=1 lost=1 orphans=4' } },
      { type: 'test:fail', data: { file: '/x/test/faults/two.test.ts', details: { type: 'test' } } },
      { type: 'test:fail', data: { file: '/x/test/faults/two.test.ts', details: { type: 'suite' } } },
      { type: 'test:fail', data: { file: '/x/test/api/other.test.ts', details: { type: 'test' } } },
    ]);
    const lines = out.trim().split('\n');
    assert.match(lines[1], /^fault\s+injected\s+survived\s+data lost\s+orphans left$/);
    assert.match(out, /^one\s+1\s+1\s+0\s+0$/m);
    assert.match(out, /^two\s+2\s+1\s+1\s+4$/m);
    assert.match(out, /^total\s+3\s+2\s+1\s+4$/m);
    assert.match(out, /^fault tests failed: 1$/m);
  });

  it('prints nothing when no fault test ran', async () => {
    assert.equal(await run([{ type: 'test:pass', data: { file: '/x/test/api/a.test.ts' } }]), '');
  });
});
