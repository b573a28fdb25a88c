import Table from 'cli-table3';
import type { Backup, Datastore } from './client.ts';

// Formatting only: API JSON in, text out. No colours, so piped output stays plain.

const PLAIN = { head: [] as string[], border: [] as string[] };

export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** Size in GB as Trove reports it: two decimals from 1 GB up, three significant digits below. */
export function formatGb(size: number | null | undefined): string {
  if (size === null || size === undefined) return '-';
  if (size === 0) return '0';
  if (size >= 1) return size.toFixed(2);
  return String(Number(size.toPrecision(3)));
}

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function formatRate(bytesPerSecond: number | null | undefined): string {
  return bytesPerSecond ? `${formatBytes(bytesPerSecond)}/s` : '-';
}

export function formatEta(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return '-';
  if (seconds < 60) return `${Math.round(seconds)}s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

function datastoreLabel(ds: Backup['datastore']): string {
  return ds ? `${ds.type} ${ds.version}` : '-';
}

export function backupsTable(backups: Backup[]): string {
  const table = new Table({ head: ['ID', 'Name', 'Status', 'Size GB', 'Datastore', 'Created'], style: PLAIN });
  for (const b of backups) {
    table.push([b.id, b.name, b.status, formatGb(b.size), datastoreLabel(b.datastore), b.created]);
  }
  return `${table.toString()}\n`;
}

/** One backup as a two-column table, Trove's fields first, then Tern's additions when present. */
export function backupDetails(b: Backup): string {
  const rows: Array<[string, string]> = [
    ['id', b.id],
    ['name', b.name],
    ['description', b.description ?? ''],
    ['status', b.status],
    ['size (GB)', formatGb(b.size)],
    ['datastore', datastoreLabel(b.datastore)],
    ['datastore version id', b.datastore?.version_id ?? '-'],
    ['instance_id', b.instance_id ?? '-'],
    ['parent_id', b.parent_id ?? '-'],
    ['project_id', b.project_id],
    ['locationRef', b.locationRef ?? '-'],
    ['checksum', b.checksum ?? '-'],
    ['created', b.created],
    ['updated', b.updated],
  ];
  if (b.progress) rows.push(['progress', progressLine(b)]);
  if (b.fail_reason) rows.push(['fail_reason', b.fail_reason]);
  const table = new Table({ style: PLAIN });
  for (const [k, v] of rows) table.push({ [k]: v });
  return `${table.toString()}\n`;
}

export function datastoresTable(datastores: Datastore[]): string {
  const table = new Table({ head: ['ID', 'Name', 'Versions'], style: PLAIN });
  for (const d of datastores) table.push([d.id, d.name, d.versions.map((v) => `${v.name} (${v.id})`).join('\n')]);
  return `${table.toString()}\n`;
}

/** "42.5% of 1.0 GiB, 12.0 MiB/s, ETA 1m05s" from a running backup's progress. */
export function progressLine(b: Backup): string {
  const p = b.progress;
  if (!p) return b.status;
  const percent = p.percent === null ? '?%' : `${p.percent.toFixed(1)}%`;
  const of = p.total_bytes ? ` of ${formatBytes(p.total_bytes)}` : ` (${formatBytes(p.done_bytes)})`;
  return `${percent}${of}, ${formatRate(p.rate_bytes_per_s)}, ETA ${formatEta(p.eta_seconds)}`;
}
