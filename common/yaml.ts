/**
 * The one way meshlet parses YAML it did not write (bootstraps, the mesh file, PROXY_CONFIG):
 * bounded and linear, and never throwing.
 *
 * - Size: text over `maxBytes` (default 16 MiB, far above any real bootstrap or mesh file) is
 *   refused before parsing, with its size in the message.
 * - Aliases: expansion is bounded (`maxAliasCount`, default 1000, the `yaml` package's own
 *   "billion laughs" guard); a bomb becomes an error, not an exception out of the caller.
 * - Time: the `yaml` package's `uniqueKeys` check compares every key of a mapping with every other
 *   (4 s at 25k keys, 15 s at 50k, issue 18.8); it is turned off and duplicates are found here in
 *   one pass with a Set per mapping, reported with their line.
 *
 * Errors come back as FieldIssues (`line N` or `(file)`) so callers report them like any other
 * validation problem. The parser module loads on first use: JSON-only processes never pay for it.
 */
import type * as Yaml from 'yaml';
import type { FieldIssue } from './errors';

export interface YamlLimits {
  /** Largest accepted text, in UTF-16 code units (≈ bytes for YAML). Default 16 MiB. */
  readonly maxBytes?: number;
  /** Largest number of alias expansions per document. Default 1000. */
  readonly maxAliasCount?: number;
  /** Honour `<<` merge keys (YAML 1.1). Default true. */
  readonly merge?: boolean;
}

export const DEFAULT_YAML_MAX_BYTES = 16 * 1024 * 1024;
export const DEFAULT_YAML_MAX_ALIASES = 1000;

export type YamlResult = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly errors: FieldIssue[] };

let lib: typeof Yaml | undefined;
function yamlLib(): typeof Yaml {
  lib ??= require('yaml') as typeof Yaml;
  return lib;
}

/** Parse one YAML document into plain JS values, within the limits. Never throws. */
export function parseYaml(text: string, limits: YamlLimits = {}): YamlResult {
  const maxBytes = limits.maxBytes ?? DEFAULT_YAML_MAX_BYTES;
  if (text.length > maxBytes) {
    return { ok: false, errors: [{ path: '(file)', message: `is ${text.length} bytes, over the ${maxBytes}-byte limit for YAML input` }] };
  }
  const Y = yamlLib();
  let doc: Yaml.Document.Parsed;
  try {
    doc = Y.parseDocument(text, { merge: limits.merge ?? true, uniqueKeys: false, prettyErrors: true });
  } catch (e) {
    return { ok: false, errors: [{ path: '(file)', message: `invalid YAML: ${(e as Error).message}` }] };
  }
  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return { path: pos ? `line ${pos.line}` : '(file)', message: `invalid YAML: ${e.message.split('\n')[0]}` };
      }),
    };
  }
  const dups = duplicateKeys(Y, doc, text);
  if (dups.length > 0) return { ok: false, errors: dups };
  // Building the value can still fail: an alias bomb, a merge key whose source is not a map, an
  // alias to nothing. Those are the input's problems, reported like the others.
  try {
    return { ok: true, value: doc.toJS({ maxAliasCount: limits.maxAliasCount ?? DEFAULT_YAML_MAX_ALIASES }) };
  } catch (e) {
    return { ok: false, errors: [{ path: '(file)', message: `invalid YAML: ${(e as Error).message}` }] };
  }
}

/** One document of a stream: the parsed document (its text survives `toString()`) and its value. */
export interface YamlStreamDocument {
  readonly doc: Yaml.Document.Parsed;
  readonly value: unknown;
}

export type YamlStreamResult =
  | { readonly ok: true; readonly docs: readonly YamlStreamDocument[] }
  | { readonly ok: false; readonly errors: FieldIssue[] };

/**
 * Parse a multi-document YAML stream (`---`-separated, as kubectl manifests are) within the same
 * limits as parseYaml: the size cap applies to the whole text, duplicate keys are found in one
 * pass, alias expansion is bounded per document. Errors name the document (`document N, line M`).
 * Never throws.
 */
export function parseYamlStream(text: string, limits: YamlLimits = {}): YamlStreamResult {
  const maxBytes = limits.maxBytes ?? DEFAULT_YAML_MAX_BYTES;
  if (text.length > maxBytes) {
    return { ok: false, errors: [{ path: '(file)', message: `is ${text.length} bytes, over the ${maxBytes}-byte limit for YAML input` }] };
  }
  const Y = yamlLib();
  let parsed: Yaml.Document.Parsed[];
  try {
    const all = Y.parseAllDocuments(text, { merge: limits.merge ?? true, uniqueKeys: false, prettyErrors: true });
    parsed = Array.isArray(all) ? all : [];
  } catch (e) {
    return { ok: false, errors: [{ path: '(file)', message: `invalid YAML: ${(e as Error).message}` }] };
  }
  const errors: FieldIssue[] = [];
  const docs: YamlStreamDocument[] = [];
  parsed.forEach((doc, i) => {
    const where = `document ${i + 1}`;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const pos = e.linePos?.[0];
        errors.push({ path: pos ? `${where}, line ${pos.line}` : where, message: `invalid YAML: ${e.message.split('\n')[0]}` });
      }
      return;
    }
    for (const d of duplicateKeys(Y, doc, text)) errors.push({ path: `${where}, ${d.path}`, message: d.message });
    try {
      docs.push({ doc, value: doc.toJS({ maxAliasCount: limits.maxAliasCount ?? DEFAULT_YAML_MAX_ALIASES }) });
    } catch (e) {
      errors.push({ path: where, message: `invalid YAML: ${(e as Error).message}` });
    }
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, docs };
}

/** Every repeated scalar key of every mapping, in one pass (a Set per mapping). */
function duplicateKeys(Y: typeof Yaml, doc: Yaml.Document.Parsed, text: string): FieldIssue[] {
  const out: FieldIssue[] = [];
  let lineStarts: number[] | undefined;
  const lineOf = (offset: number | undefined): string => {
    if (offset === undefined) return '(file)';
    if (!lineStarts) {
      lineStarts = [0];
      for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) lineStarts.push(i + 1);
    }
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return `line ${lo + 1}`;
  };
  Y.visit(doc, {
    Map(_key, map) {
      const seen = new Set<unknown>();
      for (const pair of map.items) {
        const k = pair.key;
        if (!Y.isScalar(k)) continue;
        const v = k.value;
        if (v === '<<' || typeof v === 'symbol') continue; // merge keys may repeat
        if (seen.has(v)) out.push({ path: lineOf(k.range?.[0]), message: `invalid YAML: map keys must be unique ("${String(v)}" repeats)` });
        else seen.add(v);
      }
    },
  });
  // Outer mappings are visited before inner ones: report in file order.
  return out.sort((a, b) => lineNo(a.path) - lineNo(b.path));
}

function lineNo(path: string): number {
  return path.startsWith('line ') ? Number(path.slice(5)) : 0;
}
