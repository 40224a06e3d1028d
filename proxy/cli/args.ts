/** Flag parsing shared by the commands in proxy/cli/ (node:util parseArgs plus `--help`). */
import { parseArgs } from 'node:util';

type FlagSpec = Record<string, { type: 'string' | 'boolean'; short?: string; default?: string | boolean }>;

/** Shared helper for commands: parse flags, or print the command's help and return undefined. */
export function parseCommandArgs(
  argv: string[],
  usageLine: string,
  options: FlagSpec,
): Record<string, string | boolean | undefined> | undefined {
  const parsed = parseArgs({
    args: argv,
    options: { ...options, help: { type: 'boolean', short: 'h' } },
    allowPositionals: false,
    strict: true,
  });
  if (parsed.values.help) {
    process.stdout.write(`Usage: ${usageLine}\n`);
    return undefined;
  }
  return parsed.values as Record<string, string | boolean | undefined>;
}
