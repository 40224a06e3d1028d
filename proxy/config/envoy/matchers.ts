/**
 * Decoders for envoy.type.matcher.v3 (StringMatcher, RegexMatcher), route HeaderMatcher and
 * QueryParameterMatcher, and core CidrRange. Regexes follow Envoy's RE2 semantics as far as a JS
 * RegExp allows: RE2-only syntax is translated ((?P<name>…), leading (?i)/(?s)/(?m), \A, \z) and
 * what RE2 would refuse (lookaround, backreferences) is rejected at decode time, so a config that
 * Envoy NACKs is NACKed here too. safe_regex matchers are full-string matches, hence anchored.
 */
import { isIP } from 'node:net';
import type { Issues, Reader } from '../../../common/reader';
import type { CidrRange, HeaderMatcher, QueryParameterMatcher, StringMatcher } from '../types';

const INLINE_FLAGS: Readonly<Record<string, string>> = { i: 'i', s: 's', m: 'm' };

/**
 * Compile an RE2 pattern into a RegExp. `anchor` makes it a full match (^(?:…)$), as Envoy's
 * safe_regex matching is. Problems are recorded at `path`; returns undefined then.
 */
export function compileRe2(pattern: string, path: string, issues: Issues, anchor = true): RegExp | undefined {
  let flags = '';
  let src = '';
  let i = 0;
  const lead = /^\(\?([a-zA-Z]+)\)/.exec(pattern);
  if (lead) {
    for (const f of lead[1]!) {
      const jf = INLINE_FLAGS[f];
      if (!jf) {
        issues.error(path, `invalid regex ${JSON.stringify(pattern)}: flag (?${f}) is not supported`);
        return undefined;
      }
      if (!flags.includes(jf)) flags += jf;
    }
    i = lead[0].length;
  }
  let inClass = false;
  const fail = (why: string): undefined => {
    issues.error(path, `invalid regex ${JSON.stringify(pattern)}: ${why} (Envoy uses RE2)`);
    return undefined;
  };
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === '\\') {
      const n = pattern[i + 1];
      if (n === undefined) return fail('trailing backslash');
      if (!inClass && n >= '1' && n <= '9') return fail('backreferences are not supported');
      if (!inClass && n === 'k' && pattern[i + 2] === '<') return fail('backreferences are not supported');
      if (!inClass && n === 'A') src += '(?<![\\s\\S])';
      else if (!inClass && n === 'z') src += '(?![\\s\\S])';
      else if (n === 'p' || n === 'P') {
        // RE2 \pL / \p{Lu} are general categories, \p{Greek} a script (JS needs Script=).
        if (!flags.includes('u')) flags += 'u';
        const m = /^\{\^?([A-Za-z_]+)\}|^([A-Za-z])/.exec(pattern.slice(i + 2));
        if (!m) return fail(`invalid Unicode class at offset ${i}`);
        const name = m[1] ?? m[2]!;
        const neg = m[0].startsWith('{^');
        const cls = /^[A-Z][a-z]?$/.test(name) || name === 'Any' ? name : `Script=${name}`;
        src += `\\${neg !== (n === 'P') ? 'P' : 'p'}{${cls}}`;
        i += 2 + m[0].length;
        continue;
      } else src += c + n;
      i += 2;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      src += c;
      i++;
      continue;
    }
    if (c === '[') {
      inClass = true;
      src += c;
      i++;
      // A ']' right after '[' or '[^' is a literal.
      if (pattern[i] === '^') {
        src += '^';
        i++;
      }
      if (pattern[i] === ']') {
        src += '\\]';
        i++;
      }
      continue;
    }
    if (c === '(' && pattern[i + 1] === '?') {
      const rest = pattern.slice(i + 2);
      if (rest.startsWith('=') || rest.startsWith('!') || rest.startsWith('<=') || rest.startsWith('<!')) {
        return fail('lookaround assertions are not supported');
      }
      if (rest.startsWith('P<')) {
        src += '(?<';
        i += 4;
        continue;
      }
      if (!rest.startsWith(':') && !rest.startsWith('<')) return fail('inline flags are only supported at the start');
    }
    src += c;
    i++;
  }
  try {
    return new RegExp(anchor ? `^(?:${src})$` : src, flags);
  } catch (e) {
    issues.error(path, `invalid regex ${JSON.stringify(pattern)}: ${(e as Error).message}`);
    return undefined;
  }
}

/** envoy.type.matcher.v3.RegexMatcher ({google_re2: {}, regex}). */
export function decodeRegexMatcher(r: Reader, anchor = true): { value: string; regex: RegExp } | undefined {
  const g = r.obj('google_re2');
  if (g) {
    g.warnNoEffect('max_program_size', 'regexes run on the JavaScript engine, which has no program-size cap');
    g.done();
  }
  const value = r.requiredStr('regex');
  r.done();
  if (!value) return undefined;
  const regex = compileRe2(value, r.sub('regex'), r.issues, anchor);
  return regex ? { value, regex } : undefined;
}

const STRING_MATCH_KEYS = ['exact', 'prefix', 'suffix', 'contains', 'safe_regex', 'custom'] as const;

/** envoy.type.matcher.v3.StringMatcher. */
export function decodeStringMatcher(r: Reader): StringMatcher | undefined {
  const which = r.oneof(STRING_MATCH_KEYS);
  const ignoreCase = r.bool('ignore_case', false);
  let out: StringMatcher | undefined;
  if (which === undefined) {
    r.issues.error(r.path, `one of ${STRING_MATCH_KEYS.slice(0, 5).join(', ')} must be set`);
  } else if (which === 'custom') {
    r.error(which, 'custom string matchers are not supported by meshlet');
  } else if (which === 'safe_regex') {
    const sr = r.obj(which);
    const m = sr ? decodeRegexMatcher(sr) : undefined;
    if (ignoreCase) r.issues.warn(r.sub('ignore_case'), 'has no effect with safe_regex (as in Envoy)');
    if (m) out = { kind: 'safe_regex', value: m.value, regex: m.regex, ignoreCase: false };
  } else {
    const value = r.str(which, '');
    if (which !== 'exact' && value === '') r.error(which, 'must not be empty');
    else out = { kind: which, value, ignoreCase };
  }
  r.done();
  return out;
}

const HEADER_NAME_RE = /^:?[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HEADER_MATCH_KEYS = [
  'string_match',
  'exact_match',
  'safe_regex_match',
  'prefix_match',
  'suffix_match',
  'contains_match',
  'present_match',
  'range_match',
] as const;

/** Validates an HTTP header name; returns it lower-cased, or undefined after recording an error. */
export function headerName(r: Reader, key: string): string | undefined {
  const name = r.requiredStr(key);
  if (!name) return undefined;
  if (!HEADER_NAME_RE.test(name)) {
    r.error(key, `invalid header name ${JSON.stringify(name)}`);
    return undefined;
  }
  return name.toLowerCase();
}

/** envoy.config.route.v3.HeaderMatcher (no match specifier = header present, as in Envoy). */
export function decodeHeaderMatcher(r: Reader): HeaderMatcher | undefined {
  const name = headerName(r, 'name');
  const invert = r.bool('invert_match', false);
  const treatMissingAsEmpty = r.bool('treat_missing_header_as_empty', false);
  const which = r.oneof(HEADER_MATCH_KEYS);
  let match: HeaderMatcher['match'] | undefined;
  switch (which) {
    case undefined:
      match = { kind: 'present', present: true };
      break;
    case 'string_match': {
      const s = r.obj(which);
      const m = s ? decodeStringMatcher(s) : undefined;
      if (m) match = { kind: 'string', matcher: m };
      break;
    }
    case 'safe_regex_match': {
      const s = r.obj(which);
      const m = s ? decodeRegexMatcher(s) : undefined;
      if (m)
        match = { kind: 'string', matcher: { kind: 'safe_regex', value: m.value, regex: m.regex, ignoreCase: false } };
      break;
    }
    case 'present_match':
      match = { kind: 'present', present: r.bool(which, true) };
      break;
    case 'range_match': {
      const rr = r.obj(which);
      if (rr) {
        const start = rr.int('start', 0, Number.MIN_SAFE_INTEGER);
        const end = rr.int('end', 0, Number.MIN_SAFE_INTEGER);
        rr.done();
        match = { kind: 'range', start, end };
      }
      break;
    }
    default: {
      // Legacy exact_match / prefix_match / suffix_match / contains_match.
      const value = r.str(which, '');
      const kind = which.slice(0, which.indexOf('_')) as 'exact' | 'prefix' | 'suffix' | 'contains';
      if (kind !== 'exact' && value === '') r.error(which, 'must not be empty');
      else match = { kind: 'string', matcher: { kind, value, ignoreCase: false } };
    }
  }
  r.done();
  if (!name || !match) return undefined;
  return { name, match, invert, treatMissingAsEmpty };
}

/** envoy.config.route.v3.QueryParameterMatcher (no specifier = parameter present). */
export function decodeQueryParameterMatcher(r: Reader): QueryParameterMatcher | undefined {
  const name = r.requiredStr('name');
  if (name.length > 1024) r.error('name', 'must be at most 1024 characters');
  const which = r.oneof(['string_match', 'present_match'] as const);
  let match: QueryParameterMatcher['match'] | undefined = { kind: 'present' };
  if (which === 'string_match') {
    const s = r.obj(which);
    const m = s ? decodeStringMatcher(s) : undefined;
    match = m ? { kind: 'string', matcher: m } : undefined;
  } else if (which === 'present_match') {
    r.bool(which, true);
  }
  r.done();
  if (!name || !match) return undefined;
  return { name, match };
}

/** envoy.config.core.v3.CidrRange (prefix_len defaults to 0, as in Envoy). */
export function decodeCidr(r: Reader): CidrRange | undefined {
  const addressPrefix = r.requiredStr('address_prefix');
  const family = addressPrefix ? isIP(addressPrefix) : 0;
  const prefixLen = r.int('prefix_len', 0, 0, 128);
  r.done();
  if (!addressPrefix) return undefined;
  if (family === 0) {
    r.error('address_prefix', `malformed IP address: ${JSON.stringify(addressPrefix)}`);
    return undefined;
  }
  if (family === 4 && prefixLen > 32) {
    r.error('prefix_len', `must be at most 32 for an IPv4 prefix, got ${prefixLen}`);
    return undefined;
  }
  return { addressPrefix, prefixLen };
}

/** A repeated CidrRange field. */
export function decodeCidrList(r: Reader, key: string): CidrRange[] {
  const out: CidrRange[] = [];
  for (const c of r.arr(key)) {
    const v = decodeCidr(c);
    if (v) out.push(v);
  }
  return out;
}
