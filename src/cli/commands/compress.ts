/**
 * `compress`: a trained translation model at a lower attention rank (and, with --linear, a
 * factorized FFN), by truncated SVD of every head's products; tasks/compress.ts does the work.
 * The output is a new run folder that `train translation --init-from` fine-tunes.
 */
import type { Command } from 'commander';
import { compressTranslation, formatCompressSummary } from '../../tasks/compress.ts';
import type { CliIo } from '../io.ts';
import { finiteNumber } from '../options.ts';
import { checkOutFolderPath, cleanupCreatedOnFailure } from '../output-folder.ts';

interface CompressFlags {
  checkpoint: string;
  rankScale: number;
  out: string;
  linear?: boolean;
  data?: string;
}

export function registerCompressCommand(program: Command, io: CliIo): void {
  program
    .command('compress')
    .description(
      'convert a trained translation model to a lower attention rank by truncated SVD of each head\'s QK and OV products ' +
        '(--linear: the FFN too), copying every other weight, into a new run folder; fine-tune it with `train translation --init-from`',
    )
    .requiredOption('--checkpoint <dir>', 'the trained model: a run folder (its checkpoint_best, else checkpoint_last) or a checkpoint folder')
    .requiredOption('--rank-scale <x>', 'attention rank scale of the compressed model, in (0, 1]: per-head rank = floor(x * d / H)', finiteNumber)
    .requiredOption('--out <dir>', 'new run folder for the compressed model (must not exist, or be empty)')
    .option('--linear', 'also factorize the FFN (and an untied output projection) at rank scale --rank-scale')
    .option('--data <dir>', "corpus folder: also print the validation loss before and after (the checkpoint's languages)")
    .action(async (flags: CompressFlags) => {
      checkOutFolderPath(flags.out);
      const summary = await cleanupCreatedOnFailure(flags.out, () =>
        compressTranslation({
          checkpoint: flags.checkpoint,
          rankScale: flags.rankScale,
          out: flags.out,
          linear: flags.linear ?? false,
          data: flags.data,
          log: (line) => io.stderr(`${line}\n`),
        }),
      );
      io.stdout(`${formatCompressSummary(summary)}\n`);
    });
}
