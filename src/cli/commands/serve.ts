import type { Command } from 'commander';
import { loadConfig, type TernConfig } from '../../config.ts';
import { ConfigError } from '../../errors.ts';
import { CliExit, type CliIo } from '../context.ts';

// `tern serve`: load the configuration once, start the API and the in-process worker, stop cleanly
// on SIGTERM/SIGINT (a second signal exits at once).

export interface ServeHooks {
  /** Set when a long-running server was started, so the entry point does not exit. */
  serving?: boolean;
}

export function serveCommand(program: Command, io: CliIo, hooks: ServeHooks): void {
  program
    .command('serve')
    .description('run a region: the Trove API and a worker (config: --config, TERN_CONFIG, TERN_* variables)')
    .option('--config <file>', 'YAML or JSON configuration file')
    .action(async (opts: { config?: string }) => {
      let config: TernConfig;
      try {
        config = loadConfig({ file: opts.config, env: io.env });
      } catch (err) {
        if (err instanceof ConfigError) throw new CliExit(err.message, 2);
        throw err;
      }
      // Loaded here, not at the top: client commands should not pay for the server's modules.
      const { startTern } = await import('../../main/server.ts');
      const running = await startTern(config);
      hooks.serving = true;
      io.stderr.write(`tern: region ${config.region} serving on ${running.url}\n`);
      if (config.generatedDevToken) {
        io.stderr.write(`tern: development token: ${config.generatedDevToken} (project dev, admin)\n`);
      }
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) process.exit(1);
        stopping = true;
        io.stderr.write(`tern: ${signal}: stopping (send it again to exit at once)\n`);
        running.close().then(
          () => process.exit(0),
          (err: Error) => {
            io.stderr.write(`tern: error while stopping: ${err.message}\n`);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
