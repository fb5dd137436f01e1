import { UserError } from '../../src/errors.ts';

export function positiveInt(value: string, option: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UserError(`${option} must be a positive integer, got "${value}"`);
  return n;
}
