/**
 * Network namespaces for interception tests: "pods" joined by a veth pair, with addresses from
 * the benchmarking range 198.18.0.0/15 that exist only inside those namespaces (never routed
 * anywhere else). Names are unique per run; `destroyAll()` kills the processes started inside and
 * deletes the namespaces (and so the veth pair), and is safe to call after a half-built setup.
 *
 * `netnsSupport()` says whether this machine can do it (root, `ip`, `iptables`, `setpriv`, and a
 * namespace can actually be created) and why not, so tests skip loudly instead of passing.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export function sh(cmd: string, args: string[], opts: { allowFail?: boolean; input?: string } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, timeout: 30_000 });
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal ?? r.error?.message}): ${r.stderr}`);
  }
  return r.stdout ?? '';
}

function has(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' }).status === 0;
}

let support: { ok: boolean; reason: string } | undefined;

export function netnsSupport(): { ok: boolean; reason: string } {
  if (support) return support;
  if (process.platform !== 'linux') return (support = { ok: false, reason: `network namespaces need Linux (platform ${process.platform})` });
  if (process.getuid?.() !== 0) return (support = { ok: false, reason: 'network namespaces and iptables need root' });
  for (const b of ['ip', 'iptables', 'ip6tables', 'iptables-save', 'setpriv']) {
    if (!has(b)) return (support = { ok: false, reason: `${b} is not installed (scripts/install-test-deps.sh installs it)` });
  }
  const probe = `mlprobe${randomBytes(3).toString('hex')}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (r.status !== 0) return (support = { ok: false, reason: `cannot create a network namespace: ${r.stderr.trim()}` });
  const nat = spawnSync('ip', ['netns', 'exec', probe, 'iptables', '-t', 'nat', '-S'], { encoding: 'utf8' });
  spawnSync('ip', ['netns', 'del', probe]);
  if (nat.status !== 0) return (support = { ok: false, reason: `iptables nat table unavailable in a namespace: ${nat.stderr.trim()}` });
  return (support = { ok: true, reason: '' });
}

export interface Pod {
  readonly ns: string;
  readonly ip: string;
  /** IPv6 address (a ULA from fd00::/8, private to the namespaces). */
  readonly ip6: string;
}

const namespaces: string[] = [];
const procs: ChildProcess[] = [];

/** Two pods joined by a veth pair: 198.18.N.1 / fd00:6d6c:N::1 and 198.18.N.2 / fd00:6d6c:N::2 (N random). */
export function createPodPair(): { a: Pod; b: Pod } {
  const id = randomBytes(3).toString('hex');
  const net = 1 + (randomBytes(1)[0]! % 250);
  const a: Pod = { ns: `ml-${id}-a`, ip: `198.18.${net}.1`, ip6: `fd00:6d6c:${net.toString(16)}::1` };
  const b: Pod = { ns: `ml-${id}-b`, ip: `198.18.${net}.2`, ip6: `fd00:6d6c:${net.toString(16)}::2` };
  for (const p of [a, b]) {
    sh('ip', ['netns', 'add', p.ns]);
    namespaces.push(p.ns);
    sh('ip', ['-n', p.ns, 'link', 'set', 'lo', 'up']);
  }
  const va = `mla${id}`;
  const vb = `mlb${id}`;
  // Created inside pod a, so the pair never exists in the host namespace.
  sh('ip', ['-n', a.ns, 'link', 'add', va, 'type', 'veth', 'peer', 'name', vb, 'netns', b.ns]);
  sh('ip', ['-n', a.ns, 'addr', 'add', `${a.ip}/24`, 'dev', va]);
  sh('ip', ['-n', b.ns, 'addr', 'add', `${b.ip}/24`, 'dev', vb]);
  // nodad: usable at once, no duplicate address detection delay.
  sh('ip', ['-n', a.ns, '-6', 'addr', 'add', `${a.ip6}/64`, 'dev', va, 'nodad']);
  sh('ip', ['-n', b.ns, '-6', 'addr', 'add', `${b.ip6}/64`, 'dev', vb, 'nodad']);
  sh('ip', ['-n', a.ns, 'link', 'set', va, 'up']);
  sh('ip', ['-n', b.ns, 'link', 'set', vb, 'up']);
  return { a, b };
}

/**
 * Three namespaces on one private segment: pods a (.1) and b (.2) and a control plane (.3) in
 * 198.18.N.0/24, joined by a bridge that lives in a fourth "switch" namespace.
 */
export function createPodsWithControlPlane(): { a: Pod; b: Pod; cp: Pod } {
  const id = randomBytes(3).toString('hex');
  const net = 1 + (randomBytes(1)[0]! % 250);
  const pod = (tag: string, n: number): Pod => ({ ns: `ml-${id}-${tag}`, ip: `198.18.${net}.${n}`, ip6: `fd00:6d6c:${net.toString(16)}::${n}` });
  const sw = `ml-${id}-sw`;
  const pods = { a: pod('a', 1), b: pod('b', 2), cp: pod('cp', 3) };
  for (const ns of [sw, pods.a.ns, pods.b.ns, pods.cp.ns]) {
    sh('ip', ['netns', 'add', ns]);
    namespaces.push(ns);
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  sh('ip', ['-n', sw, 'link', 'add', 'br0', 'type', 'bridge']);
  sh('ip', ['-n', sw, 'link', 'set', 'br0', 'up']);
  for (const [tag, p] of Object.entries(pods)) {
    const inPod = `ml${tag}${id}`;
    const inSw = `ms${tag}${id}`;
    sh('ip', ['-n', p.ns, 'link', 'add', inPod, 'type', 'veth', 'peer', 'name', inSw, 'netns', sw]);
    sh('ip', ['-n', sw, 'link', 'set', inSw, 'master', 'br0']);
    sh('ip', ['-n', sw, 'link', 'set', inSw, 'up']);
    sh('ip', ['-n', p.ns, 'addr', 'add', `${p.ip}/24`, 'dev', inPod]);
    sh('ip', ['-n', p.ns, 'link', 'set', inPod, 'up']);
  }
  return pods;
}

/** Start a long-running process inside a pod, optionally as another UID/GID (setpriv). */
export function spawnIn(pod: Pod, argv: string[], asUid?: number): ChildProcess {
  const cmd = ['netns', 'exec', pod.ns];
  if (asUid !== undefined) cmd.push('setpriv', `--reuid=${asUid}`, `--regid=${asUid}`, '--clear-groups');
  const p = spawn('ip', [...cmd, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(p);
  return p;
}

/** Run a command inside a pod to completion (bounded), returning stdout/stderr/exit code. */
export function runIn(
  pod: Pod,
  argv: string[],
  asUid?: number,
  timeoutMs = 15_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawnIn(pod, argv, asUid);
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (c) => (stdout += c));
    p.stderr!.on('data', (c) => (stderr += c));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/** One empty namespace (no links but lo), for rule-only tests. */
export function createNamespace(): Pod {
  const id = randomBytes(3).toString('hex');
  const p: Pod = { ns: `ml-${id}-r`, ip: '', ip6: '' };
  sh('ip', ['netns', 'add', p.ns]);
  namespaces.push(p.ns);
  return p;
}

/** The nat table of both families as iptables-save prints it, minus comments and counters. */
export function natTables(pod: Pod, save4 = 'iptables-save', save6 = 'ip6tables-save'): string {
  const clean = (s: string): string =>
    s
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => l.replace(/\[\d+:\d+\]/g, '[]'))
      .join('\n');
  return `${clean(sh('ip', ['netns', 'exec', pod.ns, save4, '-t', 'nat']))}\n--- v6 ---\n${clean(
    sh('ip', ['netns', 'exec', pod.ns, save6, '-t', 'nat']),
  )}`;
}

/** Kill what we started (by pid, and anything left in our namespaces), then delete the namespaces. */
export async function destroyAll(): Promise<void> {
  for (const p of procs.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const ns of namespaces.splice(0)) {
    const pids = sh('ip', ['netns', 'pids', ns], { allowFail: true }).split('\n').filter((x) => /^\d+$/.test(x));
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    sh('ip', ['netns', 'del', ns], { allowFail: true });
  }
}
