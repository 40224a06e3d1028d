/**
 * Decoders for Envoy's runtime config: the bootstrap's `layered_runtime`
 * (envoy.config.bootstrap.v3.LayeredRuntime) and `RuntimeFractionalPercent`, the shape every
 * component with a runtime-controlled percentage reads.
 *
 * Layers meshlet honours: `static_layer` (a Struct, flattened to "a.b.c" keys; an object with a
 * `numerator` is a FractionalPercent) and `admin_layer` (written by `/runtime_modify`).
 * `disk_layer` (a watched directory tree) and `rtds_layer` (runtime over xDS) are rejected with
 * their path.
 */
import type { Reader } from '../../../common/reader';
import type { Denominator, RuntimeFraction, RuntimeLayerConfig, RuntimeValue } from '../../../common/runtime';
import { enumNamed } from './core';

const DENOMINATORS = { HUNDRED: 0, TEN_THOUSAND: 1, MILLION: 2 } as const;

/** A static_layer Struct → flat keys. Lists and nulls are errors naming their key. */
function flatten(v: unknown, prefix: string, out: Map<string, RuntimeValue>, r: Reader, path: string): void {
  if (typeof v === 'string' || typeof v === 'boolean') out.set(prefix, v);
  else if (typeof v === 'number' && Number.isFinite(v)) out.set(prefix, v);
  else if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if ('numerator' in o && prefix !== '') {
      const num = o.numerator;
      const den = o.denominator ?? 'HUNDRED';
      if (typeof num !== 'number' || !Number.isInteger(num) || num < 0 || typeof den !== 'string' || !(den in DENOMINATORS)) {
        r.issues.error(path, 'a FractionalPercent needs an integer numerator ≥ 0 and denominator HUNDRED, TEN_THOUSAND or MILLION');
      } else out.set(prefix, { numerator: num, denominator: den as Denominator });
      return;
    }
    for (const [k, sub] of Object.entries(o)) flatten(sub, prefix === '' ? k : `${prefix}.${k}`, out, r, `${path}.${k}`);
  } else r.issues.error(path, `a runtime value must be a string, number, boolean or map, got ${JSON.stringify(v)}`);
}

/** envoy.config.bootstrap.v3.LayeredRuntime. */
export function decodeLayeredRuntime(r: Reader): RuntimeLayerConfig[] {
  const out: RuntimeLayerConfig[] = [];
  const names = new Set<string>();
  for (const l of r.arr('layers')) {
    const name = l.requiredStr('name');
    if (name && names.has(name)) l.error('name', `duplicate runtime layer name ${JSON.stringify(name)}`);
    names.add(name);
    const which = l.oneof(['static_layer', 'disk_layer', 'admin_layer', 'rtds_layer'] as const);
    if (which === 'static_layer') {
      const values = new Map<string, RuntimeValue>();
      const s = l.map('static_layer');
      if (s) flatten(s, '', values, l, l.sub('static_layer'));
      out.push({ name, kind: 'static', values });
    } else if (which === 'admin_layer') {
      l.obj('admin_layer')?.done();
      if (out.some((x) => x.kind === 'admin')) l.error('admin_layer', 'only one admin layer may be set (as in Envoy)');
      else out.push({ name, kind: 'admin' });
    } else if (which === 'disk_layer') {
      l.raw('disk_layer');
      l.error('disk_layer', 'runtime disk layers are not supported by meshlet (use static_layer, or admin_layer with /runtime_modify)');
    } else if (which === 'rtds_layer') {
      l.raw('rtds_layer');
      l.error('rtds_layer', 'runtime over xDS (RTDS) is not supported by meshlet (use static_layer, or admin_layer with /runtime_modify)');
    } else l.issues.error(l.path, 'one of static_layer, disk_layer, admin_layer, rtds_layer must be set');
    l.done();
  }
  r.done();
  return out;
}

/** envoy.type.v3.FractionalPercent at `key` as a fraction (no runtime key); `def` when unset. */
export function decodeFraction(r: Reader, key: string, def: RuntimeFraction, runtimeKey?: string): RuntimeFraction {
  const f = r.obj(key);
  if (!f) return runtimeKey === undefined ? def : { ...def, runtimeKey };
  const numerator = f.int('numerator', 0, 0, 0xffffffff);
  const denominator = enumNamed(f, 'denominator', DENOMINATORS, 'HUNDRED') as Denominator;
  f.done();
  return { numerator, denominator, ...(runtimeKey !== undefined ? { runtimeKey } : {}) };
}

/**
 * envoy.config.core.v3.RuntimeFractionalPercent at `key`: `default_value` (required, as Envoy)
 * read under `runtime_key`. Returns `def` when the field is unset.
 */
export function decodeRuntimeFraction(r: Reader, key: string, def: RuntimeFraction): RuntimeFraction {
  const o = r.obj(key);
  if (!o) return def;
  if (!o.has('default_value')) o.error('default_value', 'is required');
  const runtimeKey = o.str('runtime_key', '');
  const v = decodeFraction(o, 'default_value', def, runtimeKey === '' ? undefined : runtimeKey);
  o.done();
  return v;
}

/** A fraction as a percentage 0–100 (for display and percentage-based callers). */
export function percentOf(f: RuntimeFraction): number {
  const den = f.denominator === 'HUNDRED' ? 100 : f.denominator === 'TEN_THOUSAND' ? 10_000 : 1_000_000;
  return Math.min(100, (f.numerator * 100) / den);
}

/** 100 %: the default of a RuntimeFractionalPercent filter_enabled that is not set. */
export const ALWAYS: RuntimeFraction = { numerator: 100, denominator: 'HUNDRED' };
/** 0 %. */
export const NEVER: RuntimeFraction = { numerator: 0, denominator: 'HUNDRED' };
