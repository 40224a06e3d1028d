import { parseCommandArgs } from '../main';

export async function runControlPlane(argv: string[]): Promise<number> {
  const args = parseCommandArgs(argv, 'meshlet control-plane --mesh FILE', {
    mesh: { type: 'string', short: 'c' },
    'log-level': { type: 'string', short: 'l' },
  });
  if (!args) return 0;
  throw new Error('the control-plane command is being built (issue 4)');
}
