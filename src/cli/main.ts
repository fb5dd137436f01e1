/**
 * The `factorized-transformer` command line: one entry point, one subcommand per job.
 *
 * `runCli(argv, io)` runs it in-process and resolves to the exit code (tests use it with a
 * captured io); run as a script (`tsx src/cli/main.ts …`, `npm run cli -- …`, `npm start`) it
 * uses the process streams and exits with that code.
 */
import { Command, Option } from 'commander';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { initBackend, type BackendChoice } from '../backend/index.ts';
import { enableSignalHandling } from '../train/signals.ts';
import { processIo, type CliIo } from './io.ts';
import { reportError } from './report-error.ts';
import { configKeysOfFlags, flagNames, type FlagNames } from './flag-names.ts';
import { packagePath } from '../package-root.ts';
import { registerExperimentCommands } from './commands/experiment.ts';
import { registerAverageCommand } from './commands/average.ts';
import { registerBleuCommand } from './commands/bleu.ts';
import { registerCompressCommand } from './commands/compress.ts';
import { registerDoctorCommand } from './commands/doctor.ts';
import { mlmOverridesFromFlags, registerMlmCommands } from './commands/mlm.ts';
import { registerQuickstartCommand } from './commands/quickstart.ts';
import { overridesFromFlags, registerTranslationCommands } from './commands/translation.ts';

const packageJson = JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as { version: string };

/** Config key → flag attribute, from the training commands' flag → config mappings (flag-names.ts). */
const CONFIG_KEYS_OF_FLAGS = configKeysOfFlags([overridesFromFlags, mlmOverridesFromFlags]);

/** The subcommand each program is running, for naming flags in its error messages. */
const running = new WeakMap<Command, Command>();

/**
 * The key → flag table for errors of the command `program` runs (of the program itself before a
 * subcommand was chosen).
 */
export function runningFlagNames(program: Command): FlagNames {
  return flagNames(running.get(program) ?? program, CONFIG_KEYS_OF_FLAGS);
}

/** Builds a fresh program (commander keeps parse state on the instance, so one per run). */
export function buildProgram(io: CliIo): Command {
  const program = new Command('factorized-transformer')
    .description('Transformers with factorized multi-head attention (spectral init + Frobenius decay): translation and masked-LM')
    .version(packageJson.version, '-V, --version')
    .addOption(
      new Option('--backend <name>', 'compute engine (default: env FT_BACKEND, else the fastest available)').choices(['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu']),
    )
    .configureHelp({ sortSubcommands: false, showGlobalOptions: true });

  // First, so that an error of the next hook is reported with this command's flags too.
  program.hook('preAction', (_program, actionCommand) => void running.set(program, actionCommand));
  // The engine is named in `doctor` and in the training log, not on every run: a mistake's
  // output stays one line.
  program.hook('preAction', async () => {
    const backend = program.opts().backend as BackendChoice | undefined;
    await initBackend({ ...(backend ? { backend } : {}), verbose: false });
  });

  registerQuickstartCommand(program, io);
  registerTranslationCommands(program, io);
  registerMlmCommands(program, io);
  registerCompressCommand(program, io);
  registerAverageCommand(program, io);
  registerBleuCommand(program, io);
  registerExperimentCommands(program, io);
  registerDoctorCommand(program, io);

  // Route every command's output through `io` and turn commander's process.exit into a throw,
  // including commands that other modules add with addCommand (these do not inherit settings).
  const configure = (cmd: Command): void => {
    cmd.exitOverride();
    cmd.configureOutput({
      writeOut: (s) => io.stdout(s),
      writeErr: (s) => io.stderr(s),
      // Commander puts its "(Did you mean …?)" on a second line; an error stays one line.
      outputError: (s, write) => write(s.replace(/\n(?=\(Did you mean)/, ' ')),
    });
    cmd.commands.forEach(configure);
  };
  configure(program);
  return program;
}

/** Runs the CLI on `argv` (without the node and script paths); resolves to the exit code. */
export async function runCli(argv: string[], io: CliIo = processIo()): Promise<number> {
  let program: Command | null = null;
  try {
    program = buildProgram(io);
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    return reportError(err, io, program ? runningFlagNames(program) : new Map());
  }
}

function isEntryPoint(): boolean {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

/**
 * Runs on the process streams and exits once stdout has drained. This is the process, so it opts
 * in to graceful interruption: a training finishes its update and saves, and the exit code is
 * 130/143 (runCli, an in-process API, leaves the host process's signals alone).
 */
export async function main(argv: string[] = process.argv.slice(2)): Promise<never> {
  enableSignalHandling();
  const code = await runCli(argv);
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  process.exit(code);
}

if (isEntryPoint()) await main();
