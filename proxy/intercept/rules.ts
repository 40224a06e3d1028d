/**
 * Interception rule generation (what istio-init / istio-iptables installs in a pod's network
 * namespace), as pure data: the options an operator passes, validated with every error collected,
 * and the exact iptables / ip6tables argument vectors that install or remove the capture.
 *
 * Leans towards Istio compatibility and reversibility: the same chain names (ISTIO_INBOUND,
 * ISTIO_REDIRECT, ISTIO_IN_REDIRECT, ISTIO_OUTPUT in the nat table), the same order of rules, the
 * same defaults (outbound → 15001, inbound → 15006, proxy UID/GID 1337 excluded, 127.0.0.6 as the
 * source of inbound traffic delivered to the app and never recaptured), and a cleanup plan that
 * removes only what the install plan added, so install + cleanup leaves the tables as they were.
 * Nothing here runs a command; see apply.ts.
 */
import { isIP } from 'node:net';
import { ConfigError, type FieldIssue } from '../../common/errors';

/** Chain names, as Istio names them (operators grep for these). */
export const CHAINS = {
  inbound: 'ISTIO_INBOUND',
  redirect: 'ISTIO_REDIRECT',
  inRedirect: 'ISTIO_IN_REDIRECT',
  output: 'ISTIO_OUTPUT',
} as const;

/** Source address the proxy uses for inbound traffic it delivers to the app (Envoy's upstream_bind_config). */
export const INBOUND_PASSTHROUGH_SOURCE_V4 = '127.0.0.6';
export const INBOUND_PASSTHROUGH_SOURCE_V6 = '::6';
/** Istio's HBONE port, never captured inbound. */
export const HBONE_PORT = 15008;

/** Validated interception options (Istio's istio-iptables flags, same defaults). */
export interface InterceptOptions {
  /** -p/--envoy-port: where outbound connections are redirected (15001). */
  readonly proxyPort: number;
  /** -z/--inbound-capture-port: where inbound connections are redirected (15006). */
  readonly inboundCapturePort: number;
  /** -u/--proxy-uid: UIDs whose traffic is never captured (the proxy's own; 1337). */
  readonly proxyUids: readonly string[];
  /** -g/--proxy-gid: GIDs whose traffic is never captured (1337). */
  readonly proxyGids: readonly string[];
  /** -b/--include-inbound-ports: '*' = all, [] = no inbound capture, else these ports. */
  readonly includeInboundPorts: '*' | readonly number[];
  /** -d/--exclude-inbound-ports: with '*' inbound capture, ports left alone (15090,15021,15020). */
  readonly excludeInboundPorts: readonly number[];
  /** -q/--include-outbound-ports: ports captured even when their CIDR is not included. */
  readonly includeOutboundPorts: readonly number[];
  /** -o/--exclude-outbound-ports: destination ports never captured outbound. */
  readonly excludeOutboundPorts: readonly number[];
  /** -i/--include-outbound-cidrs: '*' = all destinations, else these CIDRs (v4 and v6 mixed). */
  readonly includeOutboundCidrs: '*' | readonly string[];
  /** -x/--exclude-outbound-cidrs: destinations never captured. */
  readonly excludeOutboundCidrs: readonly string[];
  /** Generate ip6tables rules too (default true). */
  readonly ipv6: boolean;
}

/** What the CLI passes in, as strings (comma lists), before validation. */
export interface RawInterceptOptions {
  readonly proxyPort?: string;
  readonly inboundCapturePort?: string;
  readonly proxyUid?: string;
  readonly proxyGid?: string;
  readonly includeInboundPorts?: string;
  readonly excludeInboundPorts?: string;
  readonly includeOutboundPorts?: string;
  readonly excludeOutboundPorts?: string;
  readonly includeOutboundCidrs?: string;
  readonly excludeOutboundCidrs?: string;
  readonly ipv6?: boolean;
}

export const DEFAULTS = {
  proxyPort: '15001',
  inboundCapturePort: '15006',
  proxyUid: '1337',
  proxyGid: '1337',
  includeInboundPorts: '*',
  excludeInboundPorts: '15090,15021,15020',
  includeOutboundCidrs: '*',
} as const;

function list(s: string | undefined): string[] {
  if (!s) return [];
  return s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
}

/** Validate raw options, collecting every problem with the flag it came from; throws ConfigError. */
export function parseInterceptOptions(raw: RawInterceptOptions): InterceptOptions {
  const issues: FieldIssue[] = [];
  const port = (flag: string, v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < 1 || n > 65535) {
      issues.push({ path: flag, message: `${JSON.stringify(v)} is not a port (1-65535)` });
      return 0;
    }
    return n;
  };
  const ports = (flag: string, v: string | undefined): number[] => list(v).map((p) => port(flag, p));
  const ids = (flag: string, v: string | undefined): string[] => {
    const out = list(v);
    for (const id of out) if (!/^\d+$/.test(id)) issues.push({ path: flag, message: `${JSON.stringify(id)} is not a numeric id` });
    return out;
  };
  const cidrs = (flag: string, v: string | undefined): string[] => {
    const out: string[] = [];
    for (const c of list(v)) {
      const n = normalizeCidr(c);
      if (n) out.push(n);
      else issues.push({ path: flag, message: `${JSON.stringify(c)} is not an IP address or CIDR` });
    }
    return out;
  };
  const inc = raw.includeInboundPorts ?? DEFAULTS.includeInboundPorts;
  const incCidrs = raw.includeOutboundCidrs ?? DEFAULTS.includeOutboundCidrs;
  const opts: InterceptOptions = {
    proxyPort: port('--proxy-port', raw.proxyPort ?? DEFAULTS.proxyPort),
    inboundCapturePort: port('--inbound-capture-port', raw.inboundCapturePort ?? DEFAULTS.inboundCapturePort),
    proxyUids: ids('--proxy-uid', raw.proxyUid ?? DEFAULTS.proxyUid),
    proxyGids: ids('--proxy-gid', raw.proxyGid ?? DEFAULTS.proxyGid),
    includeInboundPorts: inc.trim() === '*' ? '*' : ports('--include-inbound-ports', inc),
    excludeInboundPorts: ports('--exclude-inbound-ports', raw.excludeInboundPorts ?? DEFAULTS.excludeInboundPorts),
    includeOutboundPorts: ports('--include-outbound-ports', raw.includeOutboundPorts),
    excludeOutboundPorts: ports('--exclude-outbound-ports', raw.excludeOutboundPorts),
    includeOutboundCidrs: incCidrs.trim() === '*' ? '*' : cidrs('--include-outbound-cidrs', incCidrs),
    excludeOutboundCidrs: cidrs('--exclude-outbound-cidrs', raw.excludeOutboundCidrs),
    ipv6: raw.ipv6 ?? true,
  };
  if (opts.proxyUids.length === 0 && opts.proxyGids.length === 0) {
    issues.push({
      path: '--proxy-uid',
      message: 'at least one proxy UID or GID must be excluded, or the proxy would capture its own traffic',
    });
  }
  if (issues.length > 0) throw new ConfigError('meshlet iptables options', issues);
  return opts;
}

/** "10.0.0.0/8" | "10.1.2.3" | "fd00::/8" → canonical "addr/len", or undefined. */
export function normalizeCidr(c: string): string | undefined {
  const [addr, len, extra] = c.split('/');
  if (extra !== undefined || !addr) return undefined;
  const fam = isIP(addr);
  if (fam === 0) return undefined;
  const max = fam === 4 ? 32 : 128;
  if (len === undefined) return `${addr}/${max}`;
  if (!/^\d+$/.test(len) || Number(len) > max) return undefined;
  return `${addr}/${Number(len)}`;
}

/** One command: which binary family and the arguments after the binary name. */
export interface RuleCommand {
  readonly family: 4 | 6;
  readonly args: readonly string[];
}

/** The install plan for one IP family, as iptables arguments (table nat). */
export function installRules(o: InterceptOptions, family: 4 | 6): string[][] {
  const nat = (...a: string[]): string[] => ['-t', 'nat', ...a];
  const loop = family === 4 ? '127.0.0.1/32' : '::1/128';
  const passthroughSrc = family === 4 ? `${INBOUND_PASSTHROUGH_SOURCE_V4}/32` : `${INBOUND_PASSTHROUGH_SOURCE_V6}/128`;
  const inFamily = (cidr: string): boolean => (isIP(cidr.split('/')[0]!) === 4) === (family === 4);
  const inboundOn = o.includeInboundPorts === '*' || o.includeInboundPorts.length > 0;
  const out: string[][] = [];

  for (const c of [CHAINS.inbound, CHAINS.redirect, CHAINS.inRedirect, CHAINS.output]) out.push(nat('-N', c));

  // Redirect targets.
  out.push(nat('-A', CHAINS.inbound, '-p', 'tcp', '--dport', String(HBONE_PORT), '-j', 'RETURN'));
  out.push(nat('-A', CHAINS.redirect, '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(o.proxyPort)));
  out.push(nat('-A', CHAINS.inRedirect, '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(o.inboundCapturePort)));

  // Inbound: PREROUTING → ISTIO_INBOUND → ISTIO_IN_REDIRECT (15006).
  if (inboundOn) {
    out.push(nat('-A', 'PREROUTING', '-p', 'tcp', '-j', CHAINS.inbound));
    if (o.includeInboundPorts === '*') {
      // Everything but the excluded ports (and ssh, as Istio does) goes to the inbound port.
      for (const p of uniq([22, ...o.excludeInboundPorts])) {
        out.push(nat('-A', CHAINS.inbound, '-p', 'tcp', '--dport', String(p), '-j', 'RETURN'));
      }
      out.push(nat('-A', CHAINS.inbound, '-p', 'tcp', '-j', CHAINS.inRedirect));
    } else {
      for (const p of uniq(o.includeInboundPorts)) {
        out.push(nat('-A', CHAINS.inbound, '-p', 'tcp', '--dport', String(p), '-j', CHAINS.inRedirect));
      }
    }
  }

  // Outbound: OUTPUT → ISTIO_OUTPUT → ISTIO_REDIRECT (15001).
  out.push(nat('-A', 'OUTPUT', '-p', 'tcp', '-j', CHAINS.output));
  for (const p of uniq(o.excludeOutboundPorts)) {
    out.push(nat('-A', CHAINS.output, '-p', 'tcp', '--dport', String(p), '-j', 'RETURN'));
  }
  // Inbound traffic the proxy delivers to the app comes from 127.0.0.6: never recapture it.
  out.push(nat('-A', CHAINS.output, '-o', 'lo', '-s', passthroughSrc, '-j', 'RETURN'));
  for (const [flag, ids] of [
    ['--uid-owner', o.proxyUids],
    ['--gid-owner', o.proxyGids],
  ] as const) {
    for (const id of ids) {
      // The proxy calling the pod's own (non-loopback) address over lo is inbound traffic.
      if (inboundOn) {
        out.push(nat('-A', CHAINS.output, '-o', 'lo', '!', '-d', loop, '-m', 'owner', flag, id, '-j', CHAINS.inRedirect));
      }
      // The app talking to itself over lo is not captured; the proxy's own traffic never is.
      out.push(nat('-A', CHAINS.output, '-o', 'lo', '-m', 'owner', '!', flag, id, '-j', 'RETURN'));
      out.push(nat('-A', CHAINS.output, '-m', 'owner', flag, id, '-j', 'RETURN'));
    }
  }
  out.push(nat('-A', CHAINS.output, '-d', loop, '-j', 'RETURN'));
  for (const c of uniq(o.excludeOutboundCidrs.filter(inFamily))) {
    out.push(nat('-A', CHAINS.output, '-d', c, '-j', 'RETURN'));
  }
  for (const p of uniq(o.includeOutboundPorts)) {
    out.push(nat('-A', CHAINS.output, '-p', 'tcp', '--dport', String(p), '-j', CHAINS.redirect));
  }
  if (o.includeOutboundCidrs === '*') {
    out.push(nat('-A', CHAINS.output, '-j', CHAINS.redirect));
  } else {
    for (const c of uniq(o.includeOutboundCidrs.filter(inFamily))) {
      out.push(nat('-A', CHAINS.output, '-d', c, '-j', CHAINS.redirect));
    }
  }
  return out;
}

/**
 * The cleanup plan for one family: remove the jumps from the built-in chains, then flush and
 * delete ours. Each command may fail harmlessly when the thing is already gone (the runner
 * tolerates that for cleanup, which makes cleanup — and install, which starts with one — idempotent).
 */
export function cleanupRules(): string[][] {
  const nat = (...a: string[]): string[] => ['-t', 'nat', ...a];
  return [
    nat('-D', 'PREROUTING', '-p', 'tcp', '-j', CHAINS.inbound),
    nat('-D', 'OUTPUT', '-p', 'tcp', '-j', CHAINS.output),
    ...[CHAINS.output, CHAINS.inbound, CHAINS.redirect, CHAINS.inRedirect].flatMap((c) => [nat('-F', c), nat('-X', c)]),
  ];
}

/** Full install plan: cleanup of any earlier copy first (tolerant), then the rules, for each family. */
export function planInstall(o: InterceptOptions): { cleanup: RuleCommand[]; install: RuleCommand[] } {
  const fams: (4 | 6)[] = o.ipv6 ? [4, 6] : [4];
  return {
    cleanup: planCleanup(o.ipv6),
    install: fams.flatMap((family) => installRules(o, family).map((args) => ({ family, args }))),
  };
}

export function planCleanup(ipv6: boolean): RuleCommand[] {
  const fams: (4 | 6)[] = ipv6 ? [4, 6] : [4];
  return fams.flatMap((family) => cleanupRules().map((args) => ({ family, args })));
}

function uniq<T>(xs: readonly T[]): T[] {
  return [...new Set(xs)];
}
