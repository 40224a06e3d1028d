/**
 * Evaluation of envoy.type.matcher.v3.MetadataMatcher against a stream's dynamic metadata, as
 * Envoy's Matchers::MetadataMatcher does: the value at the path (struct keys only; anything else
 * on the way means "not set"), then the ValueMatcher, then `invert`. A value that is not set
 * matches nothing (not even null_match or present_match: false), as in Envoy.
 */
import type { MetadataMatcher, ValueMatcher } from '../config/types';
import { matchString } from '../http/route-matcher';

/** Reads one namespace of dynamic metadata (undefined: nothing was set under it). */
export type DynamicMetadataReader = (namespace: string) => Readonly<Record<string, unknown>> | undefined;

function valueMatches(m: ValueMatcher, v: unknown): boolean {
  if (v === undefined) return false;
  switch (m.kind) {
    case 'null':
      return v === null;
    case 'double':
      if (typeof v !== 'number') return false;
      if (m.exact !== undefined) return v === m.exact;
      return v >= (m.start ?? 0) && v < (m.end ?? 0);
    case 'string':
      return typeof v === 'string' && matchString(m.matcher, v);
    case 'bool':
      return typeof v === 'boolean' && v === m.value;
    case 'present':
      return m.value;
    case 'list':
      if (!Array.isArray(v)) return false;
      for (let i = 0; i < v.length; i++) if (valueMatches(m.oneOf, v[i])) return true;
      return false;
    case 'or':
      for (let i = 0; i < m.matchers.length; i++) if (valueMatches(m.matchers[i]!, v)) return true;
      return false;
  }
  return false;
}

export function metadataMatches(m: MetadataMatcher, read: DynamicMetadataReader | undefined): boolean {
  let v: unknown = read?.(m.filter);
  for (let i = 0; i < m.path.length && v !== undefined; i++) {
    v = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)[m.path[i]!] : undefined;
  }
  return valueMatches(m.value, v) !== m.invert;
}
