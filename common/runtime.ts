/**
 * Envoy's layered runtime: string-keyed values in layers (the bootstrap's `layered_runtime`:
 * static layers, then the admin layer that `/runtime_modify` writes), the last layer holding a
 * key winning. Components read it where Envoy reads a `runtime_key` or a
 * `RuntimeFractionalPercent` (fault injection percentages, route `runtime_fraction`, a filter's
 * `filter_enabled`, mirroring's `runtime_fraction`), each time they decide, so a change through
 * the admin endpoint applies to the next request.
 *
 * The interface for components is `RuntimeReader` and `RuntimeFraction`; `Runtime` is what the
 * composition root builds and the admin endpoints change. Lookups are one Map read per layer
 * holding the key: the final values are kept merged, rebuilt on a change (rare), never per request.
 */

/** FractionalPercent denominators, Envoy's names. */
export type Denominator = 'HUNDRED' | 'TEN_THOUSAND' | 'MILLION';

const DENOMINATOR_VALUE: Readonly<Record<Denominator, number>> = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 };

/**
 * envoy.config.core.v3.RuntimeFractionalPercent (or a FractionalPercent read under a runtime key):
 * `numerator` over `denominator` unless the runtime has `runtimeKey`.
 */
export interface RuntimeFraction {
  readonly runtimeKey?: string;
  readonly numerator: number;
  readonly denominator: Denominator;
}

/** What components read. */
export interface RuntimeReader {
  /**
   * Envoy's featureEnabled(key, FractionalPercent): the runtime value of `f.runtimeKey` (a
   * FractionalPercent, or an integer numerator over the default's denominator) or the default,
   * tested against `random` (0 ≤ random < 1). A key whose value does not parse uses the default.
   */
  fractionEnabled(f: RuntimeFraction, random: number): boolean;
  /** Envoy's featureEnabled(key, default_percent 0-100) with an integer percent. */
  percentEnabled(key: string, defaultPercent: number, random: number): boolean;
  /** An integer value, or `def` when the key is absent or not a non-negative integer. */
  getInteger(key: string, def: number): number;
  /** A boolean value ("true"/"false" or a number ≠ 0), or `def`. */
  getBoolean(key: string, def: boolean): boolean;
  /** The raw final value of a key, or undefined. */
  get(key: string): RuntimeValue | undefined;
}

/** A value in a layer: what the static layer's Struct held, or a string from the admin layer. */
export type RuntimeValue = string | number | boolean | { readonly numerator: number; readonly denominator: Denominator };

export interface RuntimeLayerConfig {
  readonly name: string;
  readonly kind: 'static' | 'admin';
  /** static: the flattened `static_layer` ("a.b.c" keys). */
  readonly values?: ReadonlyMap<string, RuntimeValue>;
}

/** The default when the bootstrap has no layered_runtime: one admin layer, as Envoy creates. */
export const DEFAULT_RUNTIME_LAYERS: readonly RuntimeLayerConfig[] = [{ name: 'admin', kind: 'admin' }];

function isFraction(v: RuntimeValue): v is { numerator: number; denominator: Denominator } {
  return typeof v === 'object';
}

function toInteger(v: RuntimeValue | undefined): number | undefined {
  if (v === undefined || typeof v === 'boolean' || typeof v === 'object') return undefined;
  const n = typeof v === 'number' ? v : /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

/** How a layer value prints in `/runtime` (Envoy prints every value as its string). */
export function runtimeValueString(v: RuntimeValue): string {
  if (isFraction(v)) return JSON.stringify({ numerator: v.numerator, denominator: v.denominator });
  return String(v);
}

export class Runtime implements RuntimeReader {
  private readonly layers: { readonly config: RuntimeLayerConfig; readonly values: Map<string, RuntimeValue> }[];
  private merged = new Map<string, RuntimeValue>();

  constructor(layers: readonly RuntimeLayerConfig[] = DEFAULT_RUNTIME_LAYERS) {
    this.layers = layers.map((config) => ({ config, values: new Map(config.values ?? []) }));
    this.merge();
  }

  private merge(): void {
    const m = new Map<string, RuntimeValue>();
    for (const l of this.layers) for (const [k, v] of l.values) m.set(k, v);
    this.merged = m;
  }

  get(key: string): RuntimeValue | undefined {
    return this.merged.get(key);
  }

  getInteger(key: string, def: number): number {
    return toInteger(this.merged.get(key)) ?? def;
  }

  getBoolean(key: string, def: boolean): boolean {
    const v = this.merged.get(key);
    if (typeof v === 'boolean') return v;
    if (typeof v === 'number') return v !== 0;
    if (v === 'true') return true;
    if (v === 'false') return false;
    const n = toInteger(v);
    return n === undefined ? def : n !== 0;
  }

  percentEnabled(key: string, defaultPercent: number, random: number): boolean {
    const p = Math.min(100, this.getInteger(key, defaultPercent));
    return random * 100 < p;
  }

  fractionEnabled(f: RuntimeFraction, random: number): boolean {
    let numerator = f.numerator;
    let denominator = DENOMINATOR_VALUE[f.denominator];
    if (f.runtimeKey !== undefined) {
      const v = this.merged.get(f.runtimeKey);
      if (v !== undefined) {
        if (isFraction(v)) {
          numerator = v.numerator;
          denominator = DENOMINATOR_VALUE[v.denominator];
        } else if (typeof v === 'string' && v.trim().startsWith('{')) {
          const parsed = parseFractionJson(v);
          if (parsed) {
            numerator = parsed.numerator;
            denominator = DENOMINATOR_VALUE[parsed.denominator];
          }
        } else {
          const n = toInteger(v);
          if (n !== undefined) numerator = n;
        }
      }
    }
    if (numerator >= denominator) return true;
    if (numerator <= 0) return false;
    return Math.floor(random * denominator) < numerator;
  }

  /** The layer names, lowest first (`/runtime` "layers"). */
  layerNames(): string[] {
    return this.layers.map((l) => l.config.name);
  }

  /** Every key with its value in each layer ("" where absent) and the final value (`/runtime`). */
  entries(): Map<string, { layerValues: string[]; finalValue: string }> {
    const out = new Map<string, { layerValues: string[]; finalValue: string }>();
    for (const k of [...this.merged.keys()].sort()) {
      out.set(k, {
        layerValues: this.layers.map((l) => {
          const v = l.values.get(k);
          return v === undefined ? '' : runtimeValueString(v);
        }),
        finalValue: runtimeValueString(this.merged.get(k)!),
      });
    }
    return out;
  }

  /** Whether there is an admin layer (`/runtime_modify` needs one, as in Envoy). */
  get hasAdminLayer(): boolean {
    return this.layers.some((l) => l.config.kind === 'admin');
  }

  /**
   * Set keys in the admin layer (Envoy's `/runtime_modify`); an empty value removes the key from
   * that layer. Returns false when there is no admin layer.
   */
  modify(changes: Iterable<readonly [string, string]>): boolean {
    const admin = this.layers.find((l) => l.config.kind === 'admin');
    if (!admin) return false;
    for (const [k, v] of changes) {
      if (v === '') admin.values.delete(k);
      else admin.values.set(k, v);
    }
    this.merge();
    return true;
  }
}

function parseFractionJson(text: string): { numerator: number; denominator: Denominator } | undefined {
  try {
    const o = JSON.parse(text) as { numerator?: unknown; denominator?: unknown };
    const num = Number(o.numerator ?? 0);
    const den = (o.denominator ?? 'HUNDRED') as Denominator;
    if (!Number.isInteger(num) || num < 0 || !(den in DENOMINATOR_VALUE)) return undefined;
    return { numerator: num, denominator: den };
  } catch {
    return undefined;
  }
}

/** A runtime with no layers at all, for components built without one (unit tests). */
export const EMPTY_RUNTIME: RuntimeReader = new Runtime([]);
