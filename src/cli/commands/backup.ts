import { type Command, InvalidArgumentError } from 'commander';
import type { Backup, BackupPage, CreateBackupBody, TernClient } from '../client.ts';
import { apiUrl, CliExit, type CliIo, type GlobalOptions, makeClient } from '../context.ts';
import { backupDetails, backupsTable, json } from '../output.ts';
import { readRegionUrls, regionsFile, regionUrl } from '../regions.ts';
import { waitForBackup, waitForDeletion } from '../wait.ts';

// `tern backup list|show|create|delete|copy`: parse options, call the API, print.

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number >= 0');
  return n;
}

/** The next page's marker, read from the link's query so a proxy's public URL does not matter. */
function nextMarker(page: BackupPage): string | undefined {
  const href = page.links?.find((l) => l.rel === 'next')?.href;
  if (!href) return undefined;
  try {
    return new URL(href, 'http://x').searchParams.get('marker') ?? undefined;
  } catch {
    return undefined;
  }
}

interface ListOptions {
  limit?: number;
  marker?: string;
  instance?: string;
  datastore?: string;
  allProjects?: boolean;
  json?: boolean;
}

async function list(client: TernClient, opts: ListOptions, io: CliIo): Promise<void> {
  const query = { instanceId: opts.instance, datastore: opts.datastore, allProjects: opts.allProjects };
  if (opts.limit !== undefined) {
    // One page, as asked; say how to get the next one.
    const page = await client.listBackups({ ...query, limit: opts.limit, marker: opts.marker });
    io.stdout.write(opts.json ? json(page) : backupsTable(page.backups));
    const next = nextMarker(page);
    if (next && !opts.json) io.stderr.write(`more backups: --marker ${next}\n`);
    return;
  }
  const all: Backup[] = [];
  const seen = new Set<string>();
  let marker = opts.marker;
  for (;;) {
    const page = await client.listBackups({ ...query, marker });
    all.push(...page.backups);
    marker = nextMarker(page);
    if (!marker || seen.has(marker)) break;
    seen.add(marker);
  }
  io.stdout.write(opts.json ? json({ backups: all, links: [] }) : backupsTable(all));
}

/** Prints the created backup, then waits if asked. --json keeps stdout pure JSON. */
async function report(client: TernClient, created: { backup: Backup }, opts: { wait?: boolean; json?: boolean }, io: CliIo) {
  const id = created.backup.id;
  if (!opts.wait) {
    io.stdout.write(opts.json ? json(created) : backupDetails(created.backup));
    return;
  }
  if (opts.json) {
    const done = await waitForBackup(client, id, io, io.stderr);
    io.stdout.write(json({ backup: done }));
    return;
  }
  io.stdout.write(`backup ${id} ${created.backup.status}: ${created.backup.name}\n`);
  await waitForBackup(client, id, io);
}

interface CreateOptions {
  instance?: string;
  parent?: string;
  incremental?: boolean;
  location?: string;
  restoreFrom?: string;
  datastoreVersionId?: string;
  size?: number;
  description?: string;
  wait?: boolean;
  json?: boolean;
}

function createBody(name: string, o: CreateOptions, cmd: Command): CreateBackupBody {
  const forms = [o.instance && '--instance', o.location && '--location', o.restoreFrom && '--restore-from'].filter(Boolean);
  if (forms.length !== 1) {
    cmd.error(
      `error: give exactly one of --instance, --location, --restore-from${forms.length ? ` (got ${forms.join(', ')})` : ''}`,
      {
        exitCode: 2,
      },
    );
  }
  if (!o.instance && (o.parent || o.incremental))
    cmd.error('error: --parent and --incremental go with --instance', { exitCode: 2 });
  if (!o.restoreFrom && (o.datastoreVersionId || o.size !== undefined)) {
    cmd.error('error: --datastore-version-id and --size go with --restore-from', { exitCode: 2 });
  }
  if (o.restoreFrom && !o.datastoreVersionId) cmd.error('error: --restore-from needs --datastore-version-id', { exitCode: 2 });
  const body: CreateBackupBody = { name };
  if (o.description !== undefined) body.description = o.description;
  if (o.instance) {
    body.instance = o.instance;
    if (o.parent) body.parent_id = o.parent;
    if (o.incremental) body.incremental = 1;
  }
  if (o.location) body.location = o.location;
  if (o.restoreFrom) {
    body.restore_from = { remote_location: o.restoreFrom, local_datastore_version_id: o.datastoreVersionId! };
    if (o.size !== undefined) body.restore_from.size = o.size;
  }
  return body;
}

export function backupCommands(program: Command, io: CliIo): void {
  const backup = program.command('backup').description('list, show, create, delete and copy backups');
  const client = (cmd: Command, url?: string) => makeClient(cmd.optsWithGlobals<GlobalOptions>(), io, url);

  backup
    .command('list')
    .description('list backups (all pages unless --limit is given); admins may add --all-projects')
    .option('--limit <n>', 'one page of at most N backups', positiveInt)
    .option('--marker <id>', 'start after this backup id')
    .option('--instance <id>', 'only backups of this instance')
    .option('--datastore <name>', 'only backups of this datastore type')
    .option('--all-projects', "every project's backups (admin)")
    .option('--json', 'print the API answer as JSON')
    .action(async (opts: ListOptions, cmd: Command) => list(client(cmd), opts, io));

  backup
    .command('show')
    .description('show one backup')
    .argument('<id>', 'backup id')
    .option('--json', 'print the API answer as JSON')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const answer = await client(cmd).getBackup(id);
      io.stdout.write(opts.json ? json(answer) : backupDetails(answer.backup));
    });

  backup
    .command('create')
    .description('create a backup: of an instance, from a location in a trusted region, or as a restore_from pointer')
    .argument('<name>', 'backup name')
    .option('--instance <id>', 'back up this instance')
    .option('--parent <id>', 'with --instance: the parent backup of an incremental backup')
    .option('--incremental', 'with --instance: incremental from the latest backup')
    .option('--location <url>', "copy the backup stored at this URL (must lie in a trusted region's storage)")
    .option('--restore-from <url>', "Trove's restore_from: remote_location of the backup")
    .option('--datastore-version-id <id>', 'with --restore-from: local datastore version id')
    .option('--size <gb>', 'with --restore-from: size in GB', nonNegativeNumber)
    .option('--description <text>', 'description')
    .option('--wait', 'wait until the backup is COMPLETED or FAILED')
    .option('--json', 'print the API answer as JSON')
    .action(async (name: string, opts: CreateOptions, cmd: Command) => {
      const c = client(cmd);
      await report(c, await c.createBackup(createBody(name, opts, cmd)), opts, io);
    });

  backup
    .command('delete')
    .description('delete a backup and its stored bytes')
    .argument('<id>', 'backup id')
    .option('--wait', 'wait until the backup is gone')
    .action(async (id: string, opts: { wait?: boolean }, cmd: Command) => {
      const c = client(cmd);
      await c.deleteBackup(id);
      io.stdout.write(`backup ${id} deletion accepted\n`);
      if (opts.wait) await waitForDeletion(c, id, io);
    });

  backup
    .command('copy')
    .description('copy a backup from another region into the target region (--to, --to-url, else the current region)')
    .argument('<id>', 'backup id in the source region')
    .requiredOption('--from <region>', 'source region name, as in the target region catalog')
    .option('--to <region>', 'target region by name, its API URL taken from the configuration (default: the current region)')
    .option('--config <file>', 'Tern configuration naming this region and its catalog (env TERN_CONFIG)')
    .option('--to-url <url>', "target region's API URL (instead of --to)")
    .option('--name <name>', 'name of the copy (default: copy-<id>)')
    .option('--description <text>', 'description')
    .option('--wait', 'wait until the copy is COMPLETED or FAILED')
    .option('--json', 'print the API answer as JSON')
    .action(async (id: string, opts: CopyOptions, cmd: Command) => {
      const c = client(cmd, copyTarget(opts, cmd.optsWithGlobals<GlobalOptions>(), io));
      const body: CreateBackupBody = { name: opts.name ?? `copy-${id}`, source: { region: opts.from, id } };
      if (opts.description !== undefined) body.description = opts.description;
      await report(c, await c.createBackup(body), opts, io);
    });
}

/** The target region's API URL, or undefined for the current region as --url / TERN_URL name it. */
function copyTarget(opts: CopyOptions, globals: GlobalOptions, io: CliIo): string | undefined {
  if (opts.to !== undefined && opts.toUrl !== undefined) throw new CliExit('give --to or --to-url, not both', 2);
  if (opts.toUrl !== undefined) return apiUrl({ url: opts.toUrl }, io);
  const file = regionsFile(opts.config, io);
  if (opts.to !== undefined) {
    if (opts.to === opts.from) throw new CliExit(`--to and --from both name ${opts.from}; a copy goes to another region`, 2);
    if (!file) throw new CliExit('--to looks the region up in the catalog: give --config <tern.yaml> or set TERN_CONFIG', 2);
    return regionUrl(readRegionUrls(file), opts.to);
  }
  // The current region: --url / TERN_URL when given, else the API of the configuration's region.
  if (globals.url !== undefined || io.env.TERN_URL) return undefined;
  return file ? readRegionUrls(file).current.url : undefined;
}

interface CopyOptions {
  from: string;
  to?: string;
  config?: string;
  toUrl?: string;
  name?: string;
  description?: string;
  wait?: boolean;
  json?: boolean;
}
