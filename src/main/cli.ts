import { run } from '../cli/program.ts';

// Entry point of the `tern` command (bin/tern runs this with the repo's Node 24).
const code = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
});
if (code !== undefined) process.exitCode = code;
