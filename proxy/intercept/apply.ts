/**
 * Running an interception plan: pick the iptables binaries (legacy or nf_tables backend, detected
 * from `iptables --version` or forced), format the exact command lines for --dry-run, and execute
 * install / cleanup plans.
 *
 * Leans towards leaving the tables as they were: install always starts by removing an earlier
 * copy (so running twice leaves one copy), cleanup tolerates "not there" failures and repeats a
 * jump deletion until the jump is gone, and an install that fails half-way removes what it added
 * before reporting the failing command and iptables' own message.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { MeshletError } from '../../common/errors';
import { type InterceptOptions, planCleanup, planInstall, type RuleCommand } from './rules';

const run = promisify(execFile);

export type Backend = 'legacy' | 'nft';

/** The binaries one backend uses. */
export interface Binaries {
  readonly backend: Backend;
  readonly v4: string;
  readonly v6: string;
  readonly save4: string;
  readonly save6: string;
}

/** "iptables v1.8.9 (nf_tables)" → nft; "(legacy)" → legacy; older versions without a tag are legacy. */
export function backendFromVersion(versionOutput: string): Backend {
  return /nf_tables/i.test(versionOutput) ? 'nft' : 'legacy';
}

/**
 * Binaries for a backend choice. 'auto' keeps plain `iptables`/`ip6tables` (whatever the system's
 * alternatives point at) and reports which backend that is; a forced backend uses the suffixed
 * binaries (`iptables-legacy`, `iptables-nft`).
 */
export async function resolveBinaries(choice: 'auto' | Backend): Promise<Binaries> {
  if (choice === 'auto') {
    let out: string;
    try {
      out = (await run('iptables', ['--version'])).stdout;
    } catch (e) {
      throw new MeshletError('MESHLET_ERR_CONFIG', `cannot run iptables --version: ${(e as Error).message}`, { cause: e });
    }
    return {
      backend: backendFromVersion(out),
      v4: 'iptables',
      v6: 'ip6tables',
      save4: 'iptables-save',
      save6: 'ip6tables-save',
    };
  }
  return {
    backend: choice,
    v4: `iptables-${choice}`,
    v6: `ip6tables-${choice}`,
    save4: `iptables-${choice}-save`,
    save6: `ip6tables-${choice}-save`,
  };
}

/** A command line as a shell would run it (arguments quoted only when they need it). */
export function formatCommand(bin: Binaries, c: RuleCommand): string {
  return [c.family === 4 ? bin.v4 : bin.v6, ...c.args.map(shellQuote)].join(' ');
}

function shellQuote(a: string): string {
  return /^[A-Za-z0-9_./:,=!-]+$/.test(a) && a !== '!' ? a : a === '!' ? '!' : `'${a.replace(/'/g, `'\\''`)}'`;
}

export interface ApplyReport {
  readonly backend: Backend;
  /** Commands that ran, in order, as printed lines. */
  readonly ran: readonly string[];
}

async function exec(bin: Binaries, c: RuleCommand): Promise<void> {
  await run(c.family === 4 ? bin.v4 : bin.v6, [...c.args]);
}

/** Run a cleanup plan; "does not exist" failures are expected and ignored. */
export async function runCleanup(bin: Binaries, plan: readonly RuleCommand[], ran: string[] = []): Promise<void> {
  for (const c of plan) {
    // A jump may have been added more than once by hand or by an older tool: delete until gone.
    const repeat = c.args[2] === '-D' ? 16 : 1;
    for (let i = 0; i < repeat; i++) {
      try {
        await exec(bin, c);
        ran.push(formatCommand(bin, c));
      } catch {
        break;
      }
    }
  }
}

/** Install the capture: remove an earlier copy, then add every rule; on failure undo and throw. */
export async function install(bin: Binaries, o: InterceptOptions): Promise<ApplyReport> {
  const plan = planInstall(o);
  const ran: string[] = [];
  await runCleanup(bin, plan.cleanup, ran);
  for (const c of plan.install) {
    try {
      await exec(bin, c);
      ran.push(formatCommand(bin, c));
    } catch (e) {
      await runCleanup(bin, plan.cleanup);
      const stderr = (e as { stderr?: string }).stderr?.trim();
      throw new MeshletError(
        'MESHLET_ERR_CONFIG',
        `${formatCommand(bin, c)} failed${stderr ? `: ${stderr}` : ''}; the rules added so far were removed`,
        { cause: e },
      );
    }
  }
  return { backend: bin.backend, ran };
}

/** Remove the capture (both families unless ipv6 is false). */
export async function cleanup(bin: Binaries, ipv6: boolean): Promise<ApplyReport> {
  const ran: string[] = [];
  await runCleanup(bin, planCleanup(ipv6), ran);
  return { backend: bin.backend, ran };
}

/** The dry-run text: every command install would run, cleanup of an earlier copy included. */
export function dryRunInstall(bin: Binaries, o: InterceptOptions): { cleanup: string[]; install: string[] } {
  const plan = planInstall(o);
  return { cleanup: plan.cleanup.map((c) => formatCommand(bin, c)), install: plan.install.map((c) => formatCommand(bin, c)) };
}

export function dryRunCleanup(bin: Binaries, ipv6: boolean): string[] {
  return planCleanup(ipv6).map((c) => formatCommand(bin, c));
}
