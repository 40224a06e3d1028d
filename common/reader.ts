/**
 * A small reader for Envoy-shaped configuration in proto3 JSON form (what an Envoy YAML bootstrap
 * contains, and what xds-client turns decoded protobuf resources into).
 *
 * Contract (style rule 1): a decoder walks raw `unknown` input with a Reader, which records every
 * problem with its full path into one shared `Issues` list instead of throwing at the first one.
 * Keys are accepted in snake_case (Envoy docs) and lowerCamelCase (proto3 JSON). Keys a decoder
 * never asked for are reported by `done()` as warnings ("not supported by meshlet"), so nothing
 * a user wrote is silently dropped.
 */
import type { FieldIssue } from './errors';

export class Issues {
  readonly errors: FieldIssue[] = [];
  readonly warnings: FieldIssue[] = [];
  private once: Set<string> | undefined;
  /** True the first time `key` is seen by this list (for warnings given once per config). */
  firstTime(key: string): boolean {
    this.once ??= new Set();
    if (this.once.has(key)) return false;
    this.once.add(key);
    return true;
  }
  error(path: string, message: string): void {
    this.errors.push({ path, message });
  }
  warn(path: string, message: string): void {
    this.warnings.push({ path, message });
  }
  get ok(): boolean {
    return this.errors.length === 0;
  }
}

/**
 * snake_case → lowerCamelCase, memoized: the keys are the field names decoders ask for (a bounded
 * set from the code), and a 1,000-cluster CDS push asks for each of them thousands of times.
 */
const camelCache = new Map<string, string>();
function camel(snake: string): string {
  let c = camelCache.get(snake);
  if (c === undefined) {
    c = snake.replace(/_([a-z0-9])/g, (_m, ch: string) => ch.toUpperCase());
    if (camelCache.size < 4096) camelCache.set(snake, c);
  }
  return c;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

const DURATION_RE = /^(-?\d+(?:\.\d{1,9})?)s$/;

export class Reader {
  private readonly data: Record<string, unknown>;
  private readonly used = new Set<string>();

  /** `raw` must already be known to be an object; use `Reader.of` otherwise. */
  constructor(
    raw: Record<string, unknown>,
    readonly path: string,
    readonly issues: Issues,
  ) {
    this.data = raw;
  }

  /** Reader over `raw` if it is a plain object; otherwise records an error and returns undefined. */
  static of(raw: unknown, path: string, issues: Issues): Reader | undefined {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      issues.error(path || '(root)', `expected an object, got ${typeName(raw)}`);
      return undefined;
    }
    return new Reader(raw as Record<string, unknown>, path, issues);
  }

  sub(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }

  /** Raw value of a field, marking it used. snake_case key, camelCase accepted. */
  raw(key: string): unknown {
    this.used.add(key);
    if (key in this.data) return this.data[key];
    const c = camel(key);
    if (c !== key && c in this.data) {
      this.used.add(c);
      return this.data[c];
    }
    return undefined;
  }

  has(key: string): boolean {
    return this.data[key] !== undefined || this.data[camel(key)] !== undefined;
  }

  /** Mark a key as intentionally accepted but ignored (no warning). */
  ignore(...keys: string[]): void {
    for (const k of keys) {
      this.used.add(k);
      this.used.add(camel(k));
    }
  }

  /** A start-up warning at `key` (the field is read, but something about it needs saying). */
  warnAt(key: string, message: string): void {
    this.issues.warn(this.sub(key), message);
  }

  /**
   * A field Envoy acts on and meshlet does not: when present it is accepted with a start-up
   * warning naming its path and why it changes nothing here (never silently).
   */
  warnNoEffect(key: string, reason: string): void {
    if (!this.has(key)) return;
    this.ignore(key);
    this.issues.warn(this.sub(key), `accepted, but has no effect in meshlet: ${reason}`);
  }

  /**
   * `warnNoEffect` for a field a control plane writes on every resource: warned at its first
   * occurrence in this configuration (a bootstrap, or one xDS resource) only, so one warning
   * stands for all of them instead of burying the others.
   */
  warnNoEffectOnce(key: string, reason: string): void {
    if (!this.has(key)) return;
    this.ignore(key);
    if (this.issues.firstTime(`${key}\u0000${reason}`))
      this.issues.warn(this.sub(key), `accepted, but has no effect in meshlet: ${reason} (warned once)`);
  }

  error(key: string, message: string): void {
    this.issues.error(this.sub(key), message);
  }

  str(key: string): string | undefined;
  str(key: string, def: string): string;
  str(key: string, def?: string): string | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null) return def;
    if (typeof v !== 'string') {
      this.error(key, `expected a string, got ${typeName(v)}`);
      return def;
    }
    return v;
  }

  requiredStr(key: string): string {
    const v = this.str(key);
    if (v === undefined) {
      this.error(key, 'is required');
      return '';
    }
    if (v === '') this.error(key, 'must not be empty');
    return v;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.raw(key);
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') {
      this.error(key, `expected true or false, got ${typeName(v)}`);
      return def;
    }
    return v;
  }

  /** Integer (proto uint32/int64; strings of digits accepted as proto3 JSON allows for 64-bit). */
  int(key: string, def: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.raw(key);
    if (v === undefined || v === null) return def;
    const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n)) {
      this.error(key, `expected an integer, got ${JSON.stringify(v)}`);
      return def;
    }
    if (n < min || n > max) {
      this.error(key, `must be between ${min} and ${max}, got ${n}`);
      return def;
    }
    return n;
  }

  optInt(key: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
    if (!this.has(key)) {
      this.used.add(key);
      return undefined;
    }
    return this.int(key, 0, min, max);
  }

  num(key: string, def: number, min = -Infinity, max = Infinity): number {
    const v = this.raw(key);
    if (v === undefined || v === null) return def;
    if (typeof v !== 'number' || Number.isNaN(v)) {
      this.error(key, `expected a number, got ${typeName(v)}`);
      return def;
    }
    if (v < min || v > max) {
      this.error(key, `must be between ${min} and ${max}, got ${v}`);
      return def;
    }
    return v;
  }

  /** Enum by name (proto3 JSON), e.g. lb_policy: ROUND_ROBIN. Numbers are accepted by index. */
  enumOf<T extends string>(key: string, values: readonly T[], def: T): T {
    const v = this.raw(key);
    if (v === undefined || v === null) return def;
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < values.length) return values[v]!;
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
      this.error(key, `unknown value ${JSON.stringify(v)} (expected one of ${values.join(', ')})`);
      return def;
    }
    return v as T;
  }

  /** google.protobuf.Duration: "1.5s" or {seconds, nanos}. Returns milliseconds. */
  durationMs(key: string): number | undefined;
  durationMs(key: string, def: number): number;
  durationMs(key: string, def?: number): number | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null) return def;
    const ms = parseDurationMs(v);
    if (ms === undefined) {
      this.error(key, `expected a duration such as "0.25s", got ${JSON.stringify(v)}`);
      return def;
    }
    return ms;
  }

  /** Nested message. Missing → undefined; wrong type → error + undefined. */
  obj(key: string): Reader | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null) return undefined;
    return Reader.of(v, this.sub(key), this.issues);
  }

  /** Repeated message field: one Reader per element (bad elements are reported and skipped). */
  arr(key: string): Reader[] {
    const out: Reader[] = [];
    for (const [i, v] of this.list(key).entries()) {
      const r = Reader.of(v, `${this.sub(key)}[${i}]`, this.issues);
      if (r) out.push(r);
    }
    return out;
  }

  /** Repeated scalar field or anything list-shaped. */
  list(key: string): unknown[] {
    const v = this.raw(key);
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) {
      this.error(key, `expected a list, got ${typeName(v)}`);
      return [];
    }
    return v;
  }

  strList(key: string): string[] {
    const out: string[] = [];
    for (const [i, v] of this.list(key).entries()) {
      if (typeof v === 'string') out.push(v);
      else this.issues.error(`${this.sub(key)}[${i}]`, `expected a string, got ${typeName(v)}`);
    }
    return out;
  }

  /** A map field (proto map<string, T> or google.protobuf.Struct): the plain object, unchecked. */
  map(key: string): Record<string, unknown> | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) {
      this.error(key, `expected a map, got ${typeName(v)}`);
      return undefined;
    }
    return v as Record<string, unknown>;
  }

  /**
   * google.protobuf.Any in proto3 JSON form: {"@type": "type.googleapis.com/x.y.Z", ...fields}.
   * Returns the fully-qualified type name and a Reader over the remaining fields.
   */
  any(key: string): { type: string; reader: Reader } | undefined {
    const r = this.obj(key);
    if (!r) return undefined;
    return r.asAny();
  }

  /** Treat this object as an Any. */
  asAny(): { type: string; reader: Reader } | undefined {
    const t = this.raw('@type');
    if (typeof t !== 'string' || t === '') {
      this.issues.error(this.sub('@type'), 'is required for a typed config');
      return undefined;
    }
    const slash = t.lastIndexOf('/');
    return { type: slash >= 0 ? t.slice(slash + 1) : t, reader: this };
  }

  /** Which of `keys` (a proto oneof) is set; reports more than one set. */
  oneof<K extends string>(keys: readonly K[]): K | undefined {
    let found: K | undefined;
    for (const k of keys) {
      if (this.has(k)) {
        if (found) this.error(k, `only one of ${keys.join(', ')} may be set (also found ${found})`);
        else found = k;
      }
    }
    return found;
  }

  /** Warn about every key present but never read: "not supported by meshlet, ignored". */
  done(): void {
    for (const k of Object.keys(this.data)) {
      if (!this.used.has(k) && this.data[k] !== undefined) {
        this.issues.warn(this.sub(k), 'not supported by meshlet, ignored');
      }
    }
  }
}

export function parseDurationMs(v: unknown): number | undefined {
  if (typeof v === 'string') {
    const m = DURATION_RE.exec(v);
    if (!m) return undefined;
    return Number(m[1]) * 1000;
  }
  if (typeof v === 'number' && Number.isFinite(v)) return v * 1000;
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as { seconds?: unknown; nanos?: unknown };
    const s = o.seconds === undefined ? 0 : Number(o.seconds);
    const n = o.nanos === undefined ? 0 : Number(o.nanos);
    if (!Number.isFinite(s) || !Number.isFinite(n)) return undefined;
    return s * 1000 + n / 1e6;
  }
  return undefined;
}
