/**
 * Library messages name a setting by its config key in backticks (`out`, `resume`, `keepLast`,
 * `train.maxSteps`): the library is not only used from the command line. The CLI shows the flag
 * that sets it instead (--out, --resume, --keep-last, --max-steps). The key → flag table is read
 * off the commands themselves (commander's option definitions, and the functions that turn flags
 * into config overrides), so it cannot drift from them.
 */
import type { Command } from 'commander';

/** Config key (bare or dotted) → the flag that sets it, e.g. 'train.maxSteps' → '--max-steps'. */
export type FlagNames = ReadonlyMap<string, string>;

/** A function that turns parsed flags into config overrides (e.g. `overridesFromFlags` of a command). */
export type OverridesBuilder = (flags: never) => unknown;

/**
 * Which config key each flag sets, as `builders` map them: 'train.maxTimeMinutes' → 'maxTime' (the
 * flag's attribute name). Read by calling each builder on a stand-in whose every field holds its own
 * name: a config key then holds the name of the flag it was copied from. A value a builder computes
 * rather than copies is not a string and is skipped.
 */
export function configKeysOfFlags(builders: readonly OverridesBuilder[]): Map<string, string> {
  const keys = new Map<string, string>();
  const probe = new Proxy({}, { get: (_target, attribute) => (typeof attribute === 'string' ? attribute : undefined) });
  const walk = (node: unknown, key: string): void => {
    if (typeof node === 'string') keys.set(key, node);
    else if (typeof node === 'object' && node !== null) {
      for (const [part, value] of Object.entries(node)) walk(value, key ? `${key}.${part}` : part);
    }
  };
  for (const build of builders) walk(build(probe as never), '');
  return keys;
}

/**
 * Task options that messages name and whose flag's attribute has another name: the tasks take the
 * config file as `configFile` (trainTranslation, trainMlm), the commands as --config. Config keys
 * need no entry here: they are read off the commands (configKeysOfFlags).
 */
const OPTION_ATTRIBUTES: ReadonlyMap<string, string> = new Map([['configFile', 'config']]);

/** attribute name → long flag for the options a user can give to `command` (its own and its ancestors'). */
function optionFlags(command: Command): Map<string, string> {
  const flags = new Map<string, string>();
  for (let c: Command | null = command; c; c = c.parent) {
    for (const option of c.options) {
      const attribute = option.attributeName();
      // --spectral-init and --no-spectral-init share an attribute: name the positive one.
      if (option.long && !(option.negate && flags.has(attribute)) && !(c !== command && flags.has(attribute))) {
        flags.set(attribute, option.long);
      }
    }
  }
  return flags;
}

/**
 * The key → flag table for messages of `command`: each of its flags under its attribute name
 * (`out` → --out, `keepLast` → --keep-last) and task option name (`configFile` → --config), and
 * under each config key it sets, dotted and bare
 * (`train.maxTimeMinutes` and `maxTimeMinutes` → --max-time). A key the command has no flag for is
 * absent (an `experiment` run's `train.maxSteps` is a key of its spec file, not a flag).
 */
export function flagNames(command: Command, configKeys: ReadonlyMap<string, string>): FlagNames {
  const flags = optionFlags(command);
  const names = new Map<string, string>();
  for (const [attribute, flag] of flags) names.set(attribute, flag);
  for (const [option, attribute] of OPTION_ATTRIBUTES) {
    const flag = flags.get(attribute);
    if (flag !== undefined && !names.has(option)) names.set(option, flag);
  }
  // A bare key is mapped only when every dotted key ending in it names the same flag.
  const bare = new Map<string, string | null>();
  for (const [key, attribute] of configKeys) {
    const flag = flags.get(attribute);
    if (flag === undefined) continue;
    names.set(key, flag);
    const last = key.slice(key.lastIndexOf('.') + 1);
    bare.set(last, bare.has(last) && bare.get(last) !== flag ? null : flag);
  }
  for (const [key, flag] of bare) if (flag !== null && !names.has(key)) names.set(key, flag);
  return names;
}

/** `message` with each backticked key that has a flag replaced by that flag; other keys keep their backticks. */
export function withFlagNames(message: string, names: FlagNames): string {
  return message.replace(/`([A-Za-z][\w.]*)`/g, (whole, key: string) => names.get(key) ?? whole);
}
