/**
 * Command groups shared by several engineers' commands: `train translation` / `train mlm`,
 * `evaluate translation` / `evaluate mlm`. Whoever registers first creates the group.
 */
import type { Command } from 'commander';

const GROUPS: Record<string, string> = {
  train: 'train a model (translation, mlm)',
  evaluate: 'evaluate a trained checkpoint (translation, mlm)',
};

/** The `train` or `evaluate` command of `program`, created on first use. */
export function commandGroup(program: Command, name: 'train' | 'evaluate'): Command {
  const existing = program.commands.find((c) => c.name() === name);
  if (existing) return existing;
  return program.command(name).description(GROUPS[name]);
}
