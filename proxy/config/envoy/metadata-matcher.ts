/**
 * Decoders for envoy.type.matcher.v3.MetadataMatcher and ValueMatcher (RBAC metadata principals
 * and permissions, ext_authz filter_enabled_metadata). Every match pattern of ValueMatcher is
 * read; a path segment other than `key` does not exist in the API.
 */
import type { Reader } from '../../../common/reader';
import type { MetadataMatcher, ValueMatcher } from '../types';
import { decodeStringMatcher } from './matchers';

const VALUE_PATTERNS = ['null_match', 'double_match', 'string_match', 'bool_match', 'present_match', 'list_match', 'or_match'] as const;

/** envoy.type.matcher.v3.ValueMatcher */
export function decodeValueMatcher(r: Reader): ValueMatcher | undefined {
  const which = r.oneof(VALUE_PATTERNS);
  let out: ValueMatcher | undefined;
  switch (which) {
    case undefined:
      r.issues.error(r.path, `one of ${VALUE_PATTERNS.join(', ')} must be set`);
      break;
    case 'null_match':
      r.obj(which)?.done();
      out = { kind: 'null' };
      break;
    case 'double_match': {
      const d = r.obj(which);
      if (!d) break;
      const m = d.oneof(['range', 'exact'] as const);
      if (m === 'exact') out = { kind: 'double', exact: d.num('exact', 0) };
      else if (m === 'range') {
        const rg = d.obj('range');
        if (rg) {
          out = { kind: 'double', start: rg.num('start', 0), end: rg.num('end', 0) };
          rg.done();
        }
      } else d.issues.error(d.path, 'one of range, exact must be set');
      d.done();
      break;
    }
    case 'string_match': {
      const s = r.obj(which);
      const matcher = s ? decodeStringMatcher(s) : undefined;
      if (matcher) out = { kind: 'string', matcher };
      break;
    }
    case 'bool_match':
      out = { kind: 'bool', value: r.bool(which, false) };
      break;
    case 'present_match':
      out = { kind: 'present', value: r.bool(which, false) };
      break;
    case 'list_match': {
      const l = r.obj(which);
      if (!l) break;
      const o = l.obj('one_of');
      if (!o) l.error('one_of', 'is required');
      const oneOf = o ? decodeValueMatcher(o) : undefined;
      l.done();
      if (oneOf) out = { kind: 'list', oneOf };
      break;
    }
    case 'or_match': {
      const l = r.obj(which);
      if (!l) break;
      const list = l.arr('value_matchers');
      if (list.length < 2) l.error('value_matchers', 'at least two value matchers are required');
      const matchers: ValueMatcher[] = [];
      let ok = list.length >= 2;
      for (const x of list) {
        const v = decodeValueMatcher(x);
        if (v) matchers.push(v);
        else ok = false;
      }
      l.done();
      if (ok) out = { kind: 'or', matchers };
      break;
    }
  }
  r.done();
  return out;
}

/** envoy.type.matcher.v3.MetadataMatcher */
export function decodeMetadataMatcher(r: Reader): MetadataMatcher | undefined {
  const filter = r.requiredStr('filter');
  const path: string[] = [];
  const segs = r.arr('path');
  if (segs.length === 0) r.error('path', 'at least one path segment is required');
  for (const s of segs) {
    const k = s.requiredStr('key');
    s.done();
    if (k) path.push(k);
  }
  const v = r.obj('value');
  if (!v) r.error('value', 'is required');
  const value = v ? decodeValueMatcher(v) : undefined;
  const invert = r.bool('invert', false);
  r.done();
  if (!filter || !value || path.length !== segs.length || path.length === 0) return undefined;
  return { filter, path, value, invert };
}
