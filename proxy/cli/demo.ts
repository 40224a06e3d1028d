import { parseCommandArgs } from '../main';

export async function runDemo(argv: string[]): Promise<number> {
  const args = parseCommandArgs(argv, 'meshlet demo [--duration SECONDS]', {
    duration: { type: 'string', short: 'c' },
    'log-level': { type: 'string', short: 'l' },
  });
  if (!args) return 0;
  throw new Error('the demo command is being built (issue 9)');
}
