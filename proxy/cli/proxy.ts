import { parseCommandArgs } from '../main';

export async function runProxy(argv: string[]): Promise<number> {
  const args = parseCommandArgs(argv, 'meshlet proxy --bootstrap FILE [--log-level LEVEL]', {
    bootstrap: { type: 'string', short: 'c' },
    'log-level': { type: 'string', short: 'l' },
  });
  if (!args) return 0;
  throw new Error('the proxy command is being built (issue 2)');
}
