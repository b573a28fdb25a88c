import type { Command } from 'commander';
import { type CliIo, type GlobalOptions, makeClient } from '../context.ts';
import { datastoresTable, json } from '../output.ts';

// `tern datastore list`.

export function datastoreCommands(program: Command, io: CliIo): void {
  const datastore = program.command('datastore').description('datastores and their versions');
  datastore
    .command('list')
    .description('list datastores and versions (version ids are what --datastore-version-id takes)')
    .option('--json', 'print the API answer as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const answer = await makeClient(cmd.optsWithGlobals<GlobalOptions>(), io).listDatastores();
      io.stdout.write(opts.json ? json(answer) : datastoresTable(answer.datastores));
    });
}
