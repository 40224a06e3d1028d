/**
 * Evaluation of a listener's filter_chain_matcher (the unified matcher API over network inputs)
 * to a filter chain name, with Envoy's semantics:
 *  - matcher_list: field matchers in order, the first whose predicate holds and whose on_match
 *    resolves wins;
 *  - exact_match_map / prefix_match_map: the entry for the input (longest prefix first, then
 *    shorter ones when a nested matcher does not match);
 *  - IPMatcher: ranges by specificity (longest prefix first, then declaration order); a failed
 *    nested match falls back to less specific ranges, except exclusive ones;
 *  - an input with no value (no SNI, no ALPN) matches nothing; then on_no_match; none → no match.
 * The listener maps no match, or a name with no chain, to default_filter_chain or closes.
 */
import type { ChainMatcher, ChainMatchInput, ChainOnMatch, ChainPredicate, FilterChainConfig } from '../config/types';
import { matchString } from '../http/route-matcher';
import { longestPrefix, type MatchInput } from './filter-chain-match';

/** The value of a network input, as Envoy renders it; undefined = no data. */
export function inputValue(input: ChainMatchInput, i: MatchInput): string | undefined {
  switch (input) {
    case 'destination_ip':
      return i.destinationIp || undefined;
    case 'destination_port':
      return String(i.destinationPort);
    case 'source_ip':
    case 'direct_source_ip':
      return i.sourceIp || undefined;
    case 'source_port':
      return String(i.sourcePort);
    case 'source_type':
      return isLocal(i.sourceIp, i.destinationIp) ? 'local' : undefined;
    case 'server_name':
      return i.serverName || undefined;
    case 'transport_protocol':
      return i.transportProtocol || undefined;
    case 'application_protocol': {
      const list = i.applicationProtocols;
      if (!list || list.length === 0) return undefined;
      // Envoy: "'h2','http/1.1'" — each quoted, comma-separated.
      let s = '';
      for (let k = 0; k < list.length; k++) s += `${k > 0 ? ',' : ''}'${list[k]}'`;
      return s;
    }
  }
}

function isLocal(src: string, dst: string): boolean {
  return src === dst || src.startsWith('127.') || src === '::1';
}

function predicateHolds(p: ChainPredicate, i: MatchInput): boolean {
  switch (p.kind) {
    case 'single': {
      const v = inputValue(p.input, i);
      if (v === undefined) return false;
      if (p.value) return matchString(p.value, v);
      return p.cidrs !== undefined && longestPrefix(p.cidrs, v) >= 0;
    }
    case 'and':
      for (const q of p.predicates) if (!predicateHolds(q, i)) return false;
      return true;
    case 'or':
      for (const q of p.predicates) if (predicateHolds(q, i)) return true;
      return false;
    case 'not':
      return !predicateHolds(p.predicate, i);
  }
}

function resolve(m: ChainOnMatch, i: MatchInput): string | undefined {
  return m.kind === 'chain' ? m.name : evaluateChainMatcher(m.matcher, i);
}

function treeMatch(m: ChainMatcher, i: MatchInput): string | undefined {
  switch (m.kind) {
    case 'list':
      for (const f of m.matchers) {
        if (!predicateHolds(f.predicate, i)) continue;
        const r = resolve(f.onMatch, i);
        if (r !== undefined) return r;
      }
      return undefined;
    case 'exact': {
      const v = inputValue(m.input, i);
      const e = v === undefined ? undefined : m.map.get(v);
      return e ? resolve(e, i) : undefined;
    }
    case 'prefix': {
      const v = inputValue(m.input, i);
      if (v === undefined) return undefined;
      for (let n = v.length; n >= 0; n--) {
        const e = m.map.get(v.slice(0, n));
        if (!e) continue;
        const r = resolve(e, i);
        if (r !== undefined) return r;
      }
      return undefined;
    }
    case 'ip': {
      const v = inputValue(m.input, i);
      if (v === undefined) return undefined;
      const hits: { len: number; order: number; exclusive: boolean; onMatch: ChainOnMatch }[] = [];
      m.ranges.forEach((r, order) => {
        const len = longestPrefix(r.cidrs, v);
        if (len >= 0) hits.push({ len, order, exclusive: r.exclusive, onMatch: r.onMatch });
      });
      hits.sort((a, b) => b.len - a.len || a.order - b.order);
      for (let k = 0; k < hits.length; k++) {
        const h = hits[k]!;
        // An exclusive range is not selected once a more specific range exists, even when that
        // range's nested match failed; non-exclusive ones are tried in turn.
        if (k > 0 && h.exclusive) continue;
        const r = resolve(h.onMatch, i);
        if (r !== undefined) return r;
      }
      return undefined;
    }
  }
}

/** The filter chain name the matcher selects, or undefined (no match). */
export function evaluateChainMatcher(m: ChainMatcher, i: MatchInput): string | undefined {
  const r = treeMatch(m, i);
  if (r !== undefined) return r;
  return m.onNoMatch ? resolve(m.onNoMatch, i) : undefined;
}

/** Whether the matcher reads inputs only listener filters provide (SNI, transport, ALPN). */
export function matcherNeedsInspection(m: ChainMatcher): boolean {
  const inspects = (x: ChainMatchInput): boolean =>
    x === 'server_name' || x === 'transport_protocol' || x === 'application_protocol';
  const om = (o: ChainOnMatch | undefined): boolean => o !== undefined && o.kind === 'matcher' && matcherNeedsInspection(o.matcher);
  const pred = (p: ChainPredicate): boolean =>
    p.kind === 'single' ? inspects(p.input) : p.kind === 'not' ? pred(p.predicate) : p.predicates.some(pred);
  if (om(m.onNoMatch)) return true;
  switch (m.kind) {
    case 'list':
      return m.matchers.some((f) => pred(f.predicate) || om(f.onMatch));
    case 'ip':
      return inspects(m.input) || m.ranges.some((r) => om(r.onMatch));
    default:
      for (const e of m.map.values()) if (om(e)) return true;
      return inspects(m.input);
  }
}

/**
 * A matcher listener's choice: the name the tree gives and the chain of that name (undefined when
 * nothing matched or no chain has the name — the caller then takes default_filter_chain or
 * closes). The listener and admin /explain both select through this.
 */
export function selectByMatcher(
  m: ChainMatcher,
  chains: readonly FilterChainConfig[],
  i: MatchInput,
): { readonly name: string | undefined; readonly chain: FilterChainConfig | undefined } {
  const name = evaluateChainMatcher(m, i);
  if (name === undefined) return { name, chain: undefined };
  for (const c of chains) if (c.name === name) return { name, chain: c };
  return { name, chain: undefined };
}
