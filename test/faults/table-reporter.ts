// A node:test reporter that collects the fault tests' outcome lines (t.diagnostic('FAULT name=...
// injected=N survived=N lost=N orphans=N'), see test/faults/helpers.ts) and prints them as one
// table with totals after the run. It prints nothing when no fault test ran. Use it beside another
// reporter: --test-reporter=spec --test-reporter-destination=stdout
//            --test-reporter=./test/faults/table-reporter.ts --test-reporter-destination=stdout

interface Row {
  fault: string;
  injected: number;
  survived: number;
  lost: number;
  orphans: number;
}

interface TestEvent {
  type: string;
  data: { message?: string; file?: string; details?: { type?: string } };
}

const LINE = /^FAULT (.*)$/;
const COLUMNS: Array<[keyof Row, string]> = [
  ['fault', 'fault'],
  ['injected', 'injected'],
  ['survived', 'survived'],
  ['lost', 'data lost'],
  ['orphans', 'orphans left'],
];

/** Parses "name=x injected=1 survived=1 lost=0 orphans=0"; null when a field is missing. */
export function parseFaultLine(message: string): Row | null {
  const body = LINE.exec(message)?.[1];
  if (!body) return null;
  const fields = Object.fromEntries(body.split(/\s+/).map((kv) => kv.split('=') as [string, string]));
  const numbers = ['injected', 'survived', 'lost', 'orphans'].map((k) => Number(fields[k]));
  if (!fields.name || numbers.some((n) => !Number.isInteger(n) || n < 0)) return null;
  const [injected, survived, lost, orphans] = numbers;
  return { fault: fields.name, injected, survived, lost, orphans };
}

export function formatTable(rows: Row[], failedTests: number): string {
  const total: Row = { fault: 'total', injected: 0, survived: 0, lost: 0, orphans: 0 };
  for (const r of rows) {
    total.injected += r.injected;
    total.survived += r.survived;
    total.lost += r.lost;
    total.orphans += r.orphans;
  }
  const cells = [COLUMNS.map(([, title]) => title), ...[...rows, total].map((r) => COLUMNS.map(([k]) => String(r[k])))];
  const widths = COLUMNS.map((_, i) => Math.max(...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  const out = ['', 'Fault table', line(cells[0]), rule, ...cells.slice(1, -1).map(line), rule, line(cells.at(-1)!)];
  if (failedTests > 0) out.push(`fault tests failed: ${failedTests}`);
  return `${out.join('\n')}\n\n`;
}

export default async function* faultTable(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const rows: Row[] = [];
  let failed = 0;
  for await (const event of source) {
    if (event.type === 'test:diagnostic' && event.data.message) {
      const row = parseFaultLine(event.data.message);
      if (row) rows.push(row);
    } else if (event.type === 'test:fail' && event.data.details?.type !== 'suite' && event.data.file?.includes('/test/faults/')) {
      failed++;
    }
  }
  if (rows.length > 0 || failed > 0) yield formatTable(rows, failed);
}
