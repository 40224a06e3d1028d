/**
 * Filter chain selection with Envoy's rules: criteria are applied in order — destination port,
 * destination IP (prefix_ranges), server name (SNI), transport protocol, application protocols
 * (ALPN), source IP, source port — and at each step the most specific match wins; chains that
 * leave a criterion empty match anything at that step but lose to a specific match. No match →
 * the listener's default_filter_chain, else the connection is closed.
 *
 * Pure functions; the listener compiles nothing per connection beyond a few comparisons.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { CidrRange, FilterChainConfig } from '../config/types';

export interface MatchInput {
  readonly destinationPort: number;
  readonly destinationIp: string;
  readonly serverName?: string;
  readonly transportProtocol: string;
  readonly applicationProtocols?: readonly string[];
  readonly sourceIp: string;
  readonly sourcePort: number;
}

function ipFamily(ip: string): 'ipv4' | 'ipv6' | undefined {
  if (isIPv4(ip)) return 'ipv4';
  if (isIPv6(ip)) return 'ipv6';
  return undefined;
}

function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

const compiled = new WeakMap<CidrRange, BlockList>();
function blockFor(r: CidrRange, fam: 'ipv4' | 'ipv6'): BlockList {
  let bl = compiled.get(r);
  if (!bl) {
    bl = new BlockList();
    bl.addSubnet(r.addressPrefix, r.prefixLen, fam);
    compiled.set(r, bl);
  }
  return bl;
}

/** Longest prefix among `ranges` that contains `ip`, or -1. */
export function longestPrefix(ranges: readonly CidrRange[], ip: string): number {
  const addr = normalizeIp(ip);
  const fam = ipFamily(addr);
  if (!fam) return -1;
  let best = -1;
  for (const r of ranges) {
    const rf = ipFamily(r.addressPrefix);
    if (rf !== fam) continue;
    if (blockFor(r, fam).check(addr, fam) && r.prefixLen > best) best = r.prefixLen;
  }
  return best;
}

/** Specificity of a server-name match: exact > longest wildcard suffix; -1 = no match. */
function serverNameScore(names: readonly string[], sni: string | undefined): number {
  if (!sni) return -1;
  let best = -1;
  for (const n of names) {
    if (n === sni) return 10_000;
    if (n.startsWith('*.') && sni.endsWith(n.slice(1)) && n.length > best) best = n.length;
  }
  return best;
}

type Scorer = (c: FilterChainConfig, input: MatchInput) => number | undefined;

/** The criteria in the order they are applied (names as in Envoy's FilterChainMatch). */
export const FILTER_CHAIN_STEPS = [
  'destination_port',
  'prefix_ranges',
  'server_names',
  'transport_protocol',
  'application_protocols',
  'source_prefix_ranges',
  'source_ports',
] as const;

/**
 * Observer of one selection (admin /explain only): called per candidate and step with its score
 * (undefined = no match; 0 = matches as "any"; higher = more specific).
 */
export type FilterChainTrace = (step: number, chain: FilterChainConfig, score: number | undefined) => void;

/** Each scorer: undefined = this chain does not match; 0 = matches as "any"; >0 = specific. */
const STEPS: readonly Scorer[] = [
  (c, i) => (c.match.destinationPort === undefined ? 0 : c.match.destinationPort === i.destinationPort ? 1 : undefined),
  (c, i) => {
    if (c.match.prefixRanges.length === 0) return 0;
    const p = longestPrefix(c.match.prefixRanges, i.destinationIp);
    return p < 0 ? undefined : p + 1;
  },
  (c, i) => {
    if (c.match.serverNames.length === 0) return 0;
    const s = serverNameScore(c.match.serverNames, i.serverName);
    return s < 0 ? undefined : s;
  },
  (c, i) => (c.match.transportProtocol === undefined ? 0 : c.match.transportProtocol === i.transportProtocol ? 1 : undefined),
  (c, i) => {
    if (c.match.applicationProtocols.length === 0) return 0;
    const have = i.applicationProtocols;
    if (!have) return undefined;
    for (const p of c.match.applicationProtocols) if (have.includes(p)) return 1;
    return undefined;
  },
  (c, i) => {
    if (c.match.sourcePrefixRanges.length === 0) return 0;
    const p = longestPrefix(c.match.sourcePrefixRanges, i.sourceIp);
    return p < 0 ? undefined : p + 1;
  },
  (c, i) => (c.match.sourcePorts.length === 0 ? 0 : c.match.sourcePorts.includes(i.sourcePort) ? 1 : undefined),
];

export function selectFilterChain(
  chains: readonly FilterChainConfig[],
  input: MatchInput,
  trace?: FilterChainTrace,
): FilterChainConfig | undefined {
  let candidates: readonly FilterChainConfig[] = chains;
  for (let i = 0; i < STEPS.length; i++) {
    const step = STEPS[i]!;
    let best = -1;
    let next: FilterChainConfig[] = [];
    for (const c of candidates) {
      const s = step(c, input);
      if (trace) trace(i, c, s);
      if (s === undefined) continue;
      if (s > best) {
        best = s;
        next = [c];
      } else if (s === best) next.push(c);
    }
    if (next.length === 0) return undefined;
    candidates = next;
  }
  return candidates[0];
}

/** Whether any chain needs the first bytes (SNI, ALPN, transport or HTTP protocol) to match. */
export function needsInspection(chains: readonly FilterChainConfig[]): boolean {
  return chains.some(
    (c) =>
      c.match.serverNames.length > 0 ||
      c.match.transportProtocol !== undefined ||
      c.match.applicationProtocols.length > 0,
  );
}
