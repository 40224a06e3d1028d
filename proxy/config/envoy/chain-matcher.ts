/**
 * Decoder for a listener's filter_chain_matcher: an xds.type.matcher.v3.Matcher tree over the
 * network matching inputs (envoy.extensions.matching.common_inputs.network.v3.*), whose actions
 * are google.protobuf.StringValue filter chain names. Istio writes these (exact_match_map over
 * destination port, application protocol as `'h2c'`, an IPMatcher custom_match over destination
 * IP); Envoy's listener docs define the rest: names must be unique, an action naming no chain is
 * a failed match, filter_chain_match is ignored.
 */
import type { Reader } from '../../../common/reader';
import type { ChainMatcher, ChainMatchInput, ChainOnMatch, ChainPredicate, CidrRange } from '../types';
import { decodeCidrList, decodeStringMatcher } from './matchers';

const NETWORK_INPUTS: Readonly<Record<string, ChainMatchInput>> = {
  'envoy.extensions.matching.common_inputs.network.v3.DestinationIPInput': 'destination_ip',
  'envoy.extensions.matching.common_inputs.network.v3.DestinationPortInput': 'destination_port',
  'envoy.extensions.matching.common_inputs.network.v3.SourceIPInput': 'source_ip',
  'envoy.extensions.matching.common_inputs.network.v3.SourcePortInput': 'source_port',
  'envoy.extensions.matching.common_inputs.network.v3.DirectSourceIPInput': 'direct_source_ip',
  'envoy.extensions.matching.common_inputs.network.v3.SourceTypeInput': 'source_type',
  'envoy.extensions.matching.common_inputs.network.v3.ServerNameInput': 'server_name',
  'envoy.extensions.matching.common_inputs.network.v3.TransportProtocolInput': 'transport_protocol',
  'envoy.extensions.matching.common_inputs.network.v3.ApplicationProtocolInput': 'application_protocol',
};
const T_IP_MATCHER = 'xds.type.matcher.v3.IPMatcher';
const T_IP_INPUT_MATCHER = 'envoy.extensions.matching.input_matchers.ip.v3.Ip';
const T_STRING_VALUE = 'google.protobuf.StringValue';
/** Nesting bound: a config, not a program; Istio's trees are 3–4 levels deep. */
const MAX_DEPTH = 16;

/** Chain names the matcher's actions refer to (checked against the chains by the listener). */
export interface MatcherNames {
  readonly referenced: { readonly name: string; readonly path: string }[];
}

/** core.v3.TypedExtensionConfig naming a network input. */
function decodeInput(r: Reader | undefined, at: Reader, key: string): ChainMatchInput | undefined {
  if (!r) {
    at.error(key, 'is required');
    return undefined;
  }
  r.str('name');
  const tc = r.any('typed_config');
  r.done();
  if (!tc) {
    if (!r.has('typed_config')) r.error('typed_config', 'is required');
    return undefined;
  }
  const input = NETWORK_INPUTS[tc.type];
  if (!input) {
    const why = tc.type.endsWith('FilterStateInput')
      ? 'filter state inputs are set by ambient/HBONE listeners, which meshlet does not support'
      : 'not a network matching input meshlet supports';
    tc.reader.issues.error(tc.reader.sub('@type'), `unsupported matching input ${tc.type}: ${why}`);
    return undefined;
  }
  tc.reader.done();
  return input;
}

function decodeOnMatch(r: Reader, names: MatcherNames, depth: number): ChainOnMatch | undefined {
  const which = r.oneof(['matcher', 'action'] as const);
  r.ignore('keep_matching');
  if (r.bool('keep_matching', false)) r.error('keep_matching', 'is not supported for filter chain selection');
  let out: ChainOnMatch | undefined;
  if (which === undefined) r.issues.error(r.path, 'one of matcher, action must be set');
  else if (which === 'matcher') {
    const m = r.obj('matcher');
    const matcher = m ? decodeMatcherR(m, names, depth + 1) : undefined;
    if (matcher) out = { kind: 'matcher', matcher };
  } else {
    const a = r.obj('action');
    if (a) {
      a.str('name');
      const tc = a.any('typed_config');
      if (!tc && !a.has('typed_config')) a.error('typed_config', 'is required');
      if (tc && tc.type !== T_STRING_VALUE) {
        tc.reader.issues.error(
          tc.reader.sub('@type'),
          `a filter chain matcher action must be a ${T_STRING_VALUE} naming a filter chain, got ${tc.type}`,
        );
      } else if (tc) {
        const name = tc.reader.str('value', '');
        tc.reader.done();
        names.referenced.push({ name, path: tc.reader.sub('value') });
        out = { kind: 'chain', name };
      }
      a.done();
    }
  }
  r.done();
  return out;
}

function decodePredicate(r: Reader, names: MatcherNames, depth: number): ChainPredicate | undefined {
  const which = r.oneof(['single_predicate', 'or_matcher', 'and_matcher', 'not_matcher'] as const);
  let out: ChainPredicate | undefined;
  if (depth > MAX_DEPTH) r.issues.error(r.path, `predicates nest deeper than ${MAX_DEPTH} levels`);
  else if (which === undefined) r.issues.error(r.path, 'one of single_predicate, or_matcher, and_matcher, not_matcher must be set');
  else if (which === 'single_predicate') {
    const s = r.obj(which)!;
    const input = decodeInput(s.obj('input'), s, 'input');
    const kind = s.oneof(['value_match', 'custom_match'] as const);
    if (kind === undefined) s.issues.error(s.path, 'one of value_match, custom_match must be set');
    let value;
    let cidrs: CidrRange[] | undefined;
    if (kind === 'value_match') {
      const v = s.obj('value_match');
      value = v ? decodeStringMatcher(v) : undefined;
    } else if (kind === 'custom_match') {
      const c = s.obj('custom_match')!;
      c.str('name');
      const tc = c.any('typed_config');
      if (tc && tc.type === T_IP_INPUT_MATCHER) {
        cidrs = decodeCidrList(tc.reader, 'cidr_ranges');
        if (cidrs.length === 0) tc.reader.error('cidr_ranges', 'needs at least one range');
        tc.reader.ignore('stat_prefix');
        tc.reader.done();
      } else if (tc) {
        tc.reader.issues.error(tc.reader.sub('@type'), `unsupported input matcher ${tc.type}`);
      }
      c.done();
    }
    s.done();
    if (input && (value || cidrs)) out = { kind: 'single', input, ...(value ? { value } : { cidrs }) };
  } else if (which === 'not_matcher') {
    const n = r.obj(which);
    const predicate = n ? decodePredicate(n, names, depth + 1) : undefined;
    if (predicate) out = { kind: 'not', predicate };
  } else {
    const l = r.obj(which)!;
    const list = l.arr('predicate');
    if (list.length < 2) l.error('predicate', 'needs at least 2 predicates');
    const predicates = list.map((p: Reader) => decodePredicate(p, names, depth + 1));
    l.done();
    if (list.length >= 2 && predicates.every((p: ChainPredicate | undefined) => p !== undefined))
      out = { kind: which === 'or_matcher' ? 'or' : 'and', predicates: predicates as ChainPredicate[] };
  }
  r.done();
  return out;
}

function decodeMap(r: Reader | undefined, names: MatcherNames, depth: number): Map<string, ChainOnMatch> | undefined {
  if (!r) return undefined;
  const raw = r.map('map') ?? {};
  const out = new Map<string, ChainOnMatch>();
  const keys = Object.keys(raw);
  if (keys.length === 0) r.error('map', 'needs at least one entry');
  for (const k of keys) {
    const e = r.obj('map');
    const v = e?.obj(k);
    const m = v ? decodeOnMatch(v, names, depth) : undefined;
    if (m) out.set(k, m);
  }
  r.done();
  return out.size === keys.length && keys.length > 0 ? out : undefined;
}

function decodeMatcherR(r: Reader, names: MatcherNames, depth: number): ChainMatcher | undefined {
  if (depth > MAX_DEPTH) {
    r.issues.error(r.path, `matchers nest deeper than ${MAX_DEPTH} levels`);
    return undefined;
  }
  const which = r.oneof(['matcher_list', 'matcher_tree'] as const);
  const nm = r.obj('on_no_match');
  const onNoMatch = nm ? decodeOnMatch(nm, names, depth) : undefined;
  let out: ChainMatcher | undefined;
  if (which === undefined) {
    // Only on_no_match: every connection takes it.
    if (onNoMatch) out = { kind: 'list', matchers: [], onNoMatch };
    else if (!nm) r.issues.error(r.path, 'one of matcher_list, matcher_tree, on_no_match must be set');
  } else if (which === 'matcher_list') {
    const l = r.obj(which)!;
    const list = l.arr('matchers');
    if (list.length === 0) l.error('matchers', 'needs at least one matcher');
    const matchers: { predicate: ChainPredicate; onMatch: ChainOnMatch }[] = [];
    for (const f of list) {
      const pr = f.obj('predicate');
      if (!pr) f.error('predicate', 'is required');
      const predicate = pr ? decodePredicate(pr, names, depth) : undefined;
      const om = f.obj('on_match');
      if (!om) f.error('on_match', 'is required');
      const onMatch = om ? decodeOnMatch(om, names, depth) : undefined;
      f.done();
      if (predicate && onMatch) matchers.push({ predicate, onMatch });
    }
    l.done();
    if (matchers.length === list.length && list.length > 0) out = { kind: 'list', matchers, ...(onNoMatch ? { onNoMatch } : {}) };
  } else {
    const t = r.obj(which)!;
    const input = decodeInput(t.obj('input'), t, 'input');
    const tree = t.oneof(['exact_match_map', 'prefix_match_map', 'custom_match'] as const);
    if (tree === undefined) t.issues.error(t.path, 'one of exact_match_map, prefix_match_map, custom_match must be set');
    else if (tree === 'custom_match') {
      const c = t.obj(tree)!;
      c.str('name');
      const tc = c.any('typed_config');
      if (tc && tc.type !== T_IP_MATCHER) {
        tc.reader.issues.error(tc.reader.sub('@type'), `unsupported custom matcher ${tc.type} (meshlet supports ${T_IP_MATCHER})`);
      } else if (tc) {
        const ranges: { cidrs: CidrRange[]; onMatch: ChainOnMatch; exclusive: boolean }[] = [];
        const list = tc.reader.arr('range_matchers');
        for (const rm of list) {
          const cidrs = decodeCidrList(rm, 'ranges');
          if (cidrs.length === 0) rm.error('ranges', 'needs at least one range');
          const om = rm.obj('on_match');
          const onMatch = om ? decodeOnMatch(om, names, depth + 1) : undefined;
          if (!om) rm.error('on_match', 'is required');
          const exclusive = rm.bool('exclusive', false);
          rm.done();
          if (onMatch && cidrs.length > 0) ranges.push({ cidrs, onMatch, exclusive });
        }
        tc.reader.done();
        if (input && ranges.length === list.length) out = { kind: 'ip', input, ranges, ...(onNoMatch ? { onNoMatch } : {}) };
      }
      c.done();
    } else {
      const map = decodeMap(t.obj(tree), names, depth + 1);
      if (input && map) out = { kind: tree === 'exact_match_map' ? 'exact' : 'prefix', input, map, ...(onNoMatch ? { onNoMatch } : {}) };
    }
    t.done();
  }
  r.done();
  return out;
}

/** Listener.filter_chain_matcher; `names` collects the chain names its actions use. */
export function decodeChainMatcher(r: Reader, names: MatcherNames): ChainMatcher | undefined {
  return decodeMatcherR(r, names, 0);
}
