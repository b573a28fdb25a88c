import { Command, CommanderError } from 'commander';
import { ApiError, ConnectionError } from './client.ts';
import { backupCommands } from './commands/backup.ts';
import { datastoreCommands } from './commands/datastore.ts';
import { type ServeHooks, serveCommand } from './commands/serve.ts';
import { CliExit, type CliIo, DEFAULT_URL } from './context.ts';

// The `tern` program. run() never calls process.exit, so tests can drive it in-process; it returns
// the exit code, or undefined when `serve` left a server running.
//
// Exit codes: 0 ok; 1 the API or the backup failed (or could not be reached); 2 bad usage or config.

export function buildProgram(io: CliIo, hooks: ServeHooks = {}): Command {
  const program = new Command('tern')
    .description('Tern: Trove-compatible database backups, available across regions')
    .option('--url <url>', `Tern API URL (env TERN_URL, default ${DEFAULT_URL})`)
    .option('--token <token>', 'auth token (env TERN_TOKEN, else ./var/dev-token)')
    .option('--project <id>', 'project id (env TERN_PROJECT, default dev)')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    });
  serveCommand(program, io, hooks);
  backupCommands(program, io);
  datastoreCommands(program, io);
  // Sub-commands inherit the output and exit handling.
  for (const cmd of program.commands) {
    cmd.exitOverride().configureOutput(program.configureOutput()).showHelpAfterError('(add --help for usage)');
    for (const sub of cmd.commands) sub.exitOverride().configureOutput(program.configureOutput());
  }
  return program;
}

/** Runs `tern` with argv (without node and script). */
export async function run(argv: string[], io: CliIo): Promise<number | undefined> {
  const hooks: ServeHooks = {};
  const program = buildProgram(io, hooks);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return hooks.serving ? undefined : 0;
  } catch (err) {
    return report(err, io);
  }
}

function report(err: unknown, io: CliIo): number {
  if (err instanceof CommanderError) {
    // Commander already printed its message (or the help).
    return err.exitCode === 0 ? 0 : 2;
  }
  if (err instanceof CliExit) {
    if (err.message) io.stderr.write(`error: ${err.message}\n`);
    return err.code;
  }
  if (err instanceof ApiError) {
    io.stderr.write(`error: ${err.message} (HTTP ${err.status})\n`);
    return 1;
  }
  if (err instanceof ConnectionError) {
    io.stderr.write(`error: ${err.message}\n`);
    return 1;
  }
  io.stderr.write(`error: ${(err as Error)?.message ?? String(err)}\n`);
  return 1;
}
