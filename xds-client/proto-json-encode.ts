/**
 * proto3 JSON → protobuf bytes, for the embedded control plane (and tests) to build resources from
 * the YAML-shaped objects Envoy users write. Accepts .proto (snake_case) and lowerCamelCase field
 * names; `Any` as `{"@type", ...fields}`.
 *
 * Leans strict: unknown fields, wrong JSON types, out-of-range integers, unknown enum names and two
 * members of one oneof are errors. Every problem is collected with its field path, then one
 * ConfigError (MESHLET_ERR_XDS_RESOURCE) is thrown.
 */

import type * as protobuf from 'protobufjs';
import { ConfigError, type FieldIssue } from '../common/errors';
import { type FieldPlan, hasOwn, isSpecialWkt, Kind, lookupType, planOf, valueNames, WRAPPERS } from './proto-schema';
import { resourceProtoRoot, type StructProto, type ValueProto } from './protos';

// ───────────────────────────── JSON → message ─────────────────────────────

function join(path: string, name: string): string {
  return path ? `${path}.${name}` : name;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const INT_RE = /^-?\d+$/;
const UINT_RE = /^\d+$/;
const DURATION_RE = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/;
const BASE64_RE = /^[A-Za-z0-9+/_-]*={0,2}$/;

class Encoder {
  readonly issues: FieldIssue[] = [];

  /** `singleAsList`: a lone value where a list is expected is a list of one (see jsonToAny). */
  constructor(private readonly singleAsList = false) {}

  private fail(path: string, message: string): undefined {
    this.issues.push({ path: path || '(root)', message });
    return undefined;
  }

  /** JSON object → plain object with .proto field names, ready for `type.encode`. */
  message(type: protobuf.Type, json: unknown, path: string): Record<string, unknown> | undefined {
    const full = type.fullName;
    if (full.startsWith('.google.protobuf.')) {
      const special = this.wellKnown(full, json, path);
      if (special !== NOT_SPECIAL) return special as Record<string, unknown> | undefined;
    }
    if (!isPlainObject(json)) return this.fail(path, `expected an object for ${full.slice(1)}, got ${describe(json)}`);
    return this.fields(type, json, path, false);
  }

  private fields(
    type: protobuf.Type,
    json: Record<string, unknown>,
    path: string,
    allowAtType: boolean,
  ): Record<string, unknown> {
    const plan = planOf(type);
    const out: Record<string, unknown> = {};
    const oneofSeen = new Map<string, string>();
    for (const key of Object.keys(json)) {
      if (allowAtType && key === '@type') continue;
      const fp = plan.byName.get(key);
      const p = join(path, key);
      if (!fp) {
        this.fail(p, `unknown field "${key}" in ${type.fullName.slice(1)}`);
        continue;
      }
      const v = json[key];
      if (v === null && !(fp.kind === Kind.Message && fp.messageType?.fullName === '.google.protobuf.Value')) continue;
      if (fp.oneof) {
        const other = oneofSeen.get(fp.oneof);
        if (other !== undefined && other !== fp.name) {
          this.fail(p, `only one of the oneof "${fp.oneof}" may be set (also set: ${other})`);
          continue;
        }
        oneofSeen.set(fp.oneof, fp.name);
      }
      if (hasOwn.call(out, fp.name)) {
        this.fail(p, `field set twice (as ${fp.name} and ${fp.jsonName})`);
        continue;
      }
      let converted: unknown;
      if (fp.map) {
        if (!isPlainObject(v)) {
          this.fail(p, `expected an object (map), got ${describe(v)}`);
          continue;
        }
        const m: Record<string, unknown> = {};
        for (const k of Object.keys(v)) {
          const item = this.single(fp, v[k], `${p}["${k}"]`);
          if (item !== undefined) m[k] = item;
        }
        converted = m;
      } else if (fp.repeated) {
        if (!Array.isArray(v) && this.singleAsList && isPlainObject(v)) {
          const item = this.single(fp, v, `${p}[0]`);
          if (item !== undefined) out[fp.name] = [item];
          continue;
        }
        if (!Array.isArray(v)) {
          this.fail(p, `expected an array, got ${describe(v)}`);
          continue;
        }
        const a: unknown[] = [];
        for (let i = 0; i < v.length; i++) {
          const item = this.single(fp, v[i], `${p}[${i}]`);
          if (item !== undefined) a.push(item);
        }
        converted = a;
      } else {
        converted = this.single(fp, v, p);
      }
      if (converted !== undefined) out[fp.name] = converted;
    }
    return out;
  }

  private single(fp: FieldPlan, v: unknown, path: string): unknown {
    switch (fp.kind) {
      case Kind.String:
        return typeof v === 'string' ? v : this.fail(path, `expected a string, got ${describe(v)}`);
      case Kind.Bool:
        return typeof v === 'boolean' ? v : this.fail(path, `expected a boolean, got ${describe(v)}`);
      case Kind.Int32:
        return this.int(v, path, -2147483648, 2147483647);
      case Kind.Uint32:
        return this.int(v, path, 0, 4294967295);
      case Kind.Float:
        return this.float(v, path);
      case Kind.Long:
        return this.long(v, path, fp.unsigned);
      case Kind.Bytes:
        return this.bytes(v, path);
      case Kind.Enum:
        return this.enumValue(fp.enumType as protobuf.Enum, v, path);
      default:
        return this.message(fp.messageType as protobuf.Type, v, path);
    }
  }

  private int(v: unknown, path: string, min: number, max: number): number | undefined {
    let n: number;
    if (typeof v === 'number') n = v;
    else if (typeof v === 'string' && INT_RE.test(v)) n = Number(v);
    else return this.fail(path, `expected an integer, got ${describe(v)}`);
    if (!Number.isInteger(n) || n < min || n > max)
      return this.fail(path, `integer ${v} out of range [${min}, ${max}]`);
    return n;
  }

  private long(v: unknown, path: string, unsigned: boolean): number | string | undefined {
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v))
        return this.fail(path, `expected a 64-bit integer (use a string above 2^53), got ${v}`);
      if (unsigned && v < 0) return this.fail(path, `expected an unsigned integer, got ${v}`);
      return v;
    }
    if (typeof v === 'string' && (unsigned ? UINT_RE : INT_RE).test(v)) {
      const b = BigInt(v);
      const ok = unsigned ? b <= 18446744073709551615n : b >= -9223372036854775808n && b <= 9223372036854775807n;
      if (!ok) return this.fail(path, `integer ${v} out of 64-bit range`);
      return v;
    }
    return this.fail(path, `expected ${unsigned ? 'an unsigned' : 'a'} 64-bit integer, got ${describe(v)}`);
  }

  private float(v: unknown, path: string): number | undefined {
    if (typeof v === 'number') return v;
    if (v === 'NaN') return Number.NaN;
    if (v === 'Infinity') return Number.POSITIVE_INFINITY;
    if (v === '-Infinity') return Number.NEGATIVE_INFINITY;
    if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
    return this.fail(path, `expected a number, got ${describe(v)}`);
  }

  private bytes(v: unknown, path: string): Buffer | undefined {
    if (typeof v !== 'string' || !BASE64_RE.test(v))
      return this.fail(path, `expected base64 bytes, got ${describe(v)}`);
    return Buffer.from(v, v.includes('-') || v.includes('_') ? 'base64url' : 'base64');
  }

  private enumValue(e: protobuf.Enum, v: unknown, path: string): number | undefined {
    if (typeof v === 'string') {
      const n = e.values[v];
      if (n === undefined)
        return this.fail(path, `unknown ${e.name} value "${v}" (expected one of ${Object.keys(e.values).join(', ')})`);
      return n;
    }
    if (typeof v === 'number' && Number.isInteger(v)) return v;
    return this.fail(path, `expected an enum name of ${e.name}, got ${describe(v)}`);
  }

  private wellKnown(full: string, json: unknown, path: string): unknown {
    if (WRAPPERS.has(full)) {
      const fp = planOf(resourceProtoRoot().lookupType(full)).byName.get('value') as FieldPlan;
      const v = this.single(fp, json, path);
      return v === undefined ? undefined : { value: v };
    }
    switch (full) {
      case '.google.protobuf.Any':
        return this.any(json, path);
      case '.google.protobuf.Duration':
        return this.duration(json, path);
      case '.google.protobuf.Timestamp':
        return this.timestamp(json, path);
      case '.google.protobuf.Struct':
        return isPlainObject(json)
          ? this.struct(json, path)
          : this.fail(path, `expected an object (Struct), got ${describe(json)}`);
      case '.google.protobuf.Value':
        return this.value(json, path);
      case '.google.protobuf.ListValue':
        return Array.isArray(json)
          ? this.list(json, path)
          : this.fail(path, `expected an array (ListValue), got ${describe(json)}`);
      case '.google.protobuf.FieldMask':
        return typeof json === 'string'
          ? { paths: json === '' ? [] : json.split(',') }
          : this.fail(path, `expected a comma-separated string (FieldMask), got ${describe(json)}`);
      case '.google.protobuf.Empty':
        return isPlainObject(json) && Object.keys(json).length === 0 ? {} : this.fail(path, 'expected {} (Empty)');
      default:
        return NOT_SPECIAL;
    }
  }

  any(json: unknown, path: string): { type_url: string; value: Buffer } | undefined {
    if (!isPlainObject(json)) return this.fail(path, `expected an object with "@type" (Any), got ${describe(json)}`);
    const url = json['@type'];
    if (typeof url !== 'string' || url === '') return this.fail(join(path, '@type'), 'an Any needs a "@type" string');
    const type = lookupType(url);
    if (!type) {
      const keys = Object.keys(json);
      if (keys.length === 2 && typeof json.value === 'string') {
        const raw = this.bytes(json.value, join(path, 'value'));
        return raw === undefined ? undefined : { type_url: url, value: raw };
      }
      return this.fail(join(path, '@type'), `unknown type ${url}`);
    }
    let obj: Record<string, unknown> | undefined;
    if (isSpecialWkt(type.fullName)) {
      for (const k of Object.keys(json))
        if (k !== '@type' && k !== 'value') this.fail(join(path, k), `unknown field "${k}"`);
      obj = this.message(type, json.value, join(path, 'value'));
    } else {
      obj = this.fields(type, json, path, true);
    }
    if (obj === undefined) return undefined;
    return { type_url: url, value: toBuffer(type.encode(obj).finish()) };
  }

  private duration(json: unknown, path: string): { seconds: number | string; nanos: number } | undefined {
    const m = typeof json === 'string' ? DURATION_RE.exec(json) : null;
    if (!m) return this.fail(path, `expected a duration like "1.5s", got ${describe(json)}`);
    const neg = m[1] === '-';
    const secs = BigInt(m[2]);
    if (secs > 315576000000n) return this.fail(path, `duration ${json} out of range`);
    const nanos = m[3] ? Number(m[3].padEnd(9, '0')) : 0;
    const s = neg ? -secs : secs;
    return { seconds: Number(s), nanos: neg ? -nanos : nanos };
  }

  private timestamp(json: unknown, path: string): { seconds: number; nanos: number } | undefined {
    if (typeof json !== 'string') return this.fail(path, `expected an RFC 3339 timestamp, got ${describe(json)}`);
    const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/.exec(json);
    const ms = m ? Date.parse(`${m[1]}${m[3]}`) : Number.NaN;
    if (!m || Number.isNaN(ms)) return this.fail(path, `expected an RFC 3339 timestamp, got ${describe(json)}`);
    return { seconds: Math.floor(ms / 1000), nanos: m[2] ? Number(m[2].padEnd(9, '0')) : 0 };
  }

  private struct(json: Record<string, unknown>, path: string): { fields: Record<string, unknown> } {
    const fields: Record<string, unknown> = {};
    for (const k of Object.keys(json)) {
      const v = this.value(json[k], `${path}["${k}"]`);
      if (v !== undefined) fields[k] = v;
    }
    return { fields };
  }

  private list(json: unknown[], path: string): { values: unknown[] } {
    const values: unknown[] = [];
    for (let i = 0; i < json.length; i++) {
      const v = this.value(json[i], `${path}[${i}]`);
      if (v !== undefined) values.push(v);
    }
    return { values };
  }

  private value(json: unknown, path: string): Record<string, unknown> | undefined {
    const n = valueNames();
    if (json === null) return { [n.null]: 0 };
    if (typeof json === 'number') return { [n.number]: json };
    if (typeof json === 'string') return { [n.string]: json };
    if (typeof json === 'boolean') return { [n.bool]: json };
    if (Array.isArray(json)) return { [n.list]: this.list(json, path) };
    if (isPlainObject(json)) return { [n.struct]: this.struct(json, path) };
    return this.fail(path, `not representable as a JSON value: ${describe(json)}`);
  }
}

const NOT_SPECIAL = Symbol('not-special');

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/**
 * Encode proto3 JSON (snake_case or lowerCamelCase field names) as `typeName`
 * (`envoy.config.cluster.v3.Cluster` or its type URL). Collects every problem and throws one
 * ConfigError (code MESHLET_ERR_XDS_RESOURCE) whose issues name the field paths.
 */
export function jsonToMessage(typeName: string, json: unknown): Buffer {
  const type = lookupType(typeName);
  if (!type)
    throw new ConfigError(
      `cannot encode ${typeName}`,
      [{ path: '(root)', message: `unknown type ${typeName}` }],
      'MESHLET_ERR_XDS_RESOURCE',
    );
  const enc = new Encoder();
  const obj = enc.message(type, json, '');
  if (enc.issues.length > 0 || obj === undefined)
    throw new ConfigError(`invalid ${type.name}`, enc.issues, 'MESHLET_ERR_XDS_RESOURCE');
  return toBuffer(type.encode(obj).finish());
}

/**
 * Encode `{"@type": url, ...fields}` into a google.protobuf.Any `{type_url, value}`.
 * `singleAsList`: accept one object where a repeated message field expects a list, as Envoy's YAML
 * loading does (its own examples write `filters:` with a single mapping).
 */
export function jsonToAny(json: unknown, opts: { singleAsList?: boolean } = {}): { type_url: string; value: Buffer } {
  const enc = new Encoder(opts.singleAsList === true);
  const any = enc.any(json, '');
  if (enc.issues.length > 0 || any === undefined) {
    const url = isPlainObject(json) && typeof json['@type'] === 'string' ? json['@type'] : 'Any';
    throw new ConfigError(`invalid ${url}`, enc.issues, 'MESHLET_ERR_XDS_RESOURCE');
  }
  return any;
}

/**
 * Plain JSON object → google.protobuf.Struct in proto-loader object form
 * (`{fields: {k: {stringValue: 'x'}}}`; see valueNames for the field-name casing), for Node.metadata
 * on the wire. Non-JSON values (undefined, functions) are dropped.
 */
export function toStructProto(obj: Readonly<Record<string, unknown>>): StructProto {
  const fields: StructProto['fields'] = {};
  for (const k of Object.keys(obj)) {
    const v = toValueProto(obj[k]);
    if (v !== undefined) fields[k] = v;
  }
  return { fields };
}

function toValueProto(v: unknown): ValueProto | undefined {
  const n = valueNames();
  if (v === null) return { [n.null]: 'NULL_VALUE' };
  if (typeof v === 'number') return { [n.number]: v };
  if (typeof v === 'string') return { [n.string]: v };
  if (typeof v === 'boolean') return { [n.bool]: v };
  if (Array.isArray(v)) {
    const values: ValueProto[] = [];
    for (const item of v) {
      const x = toValueProto(item);
      values.push(x ?? ({ [n.null]: 'NULL_VALUE' } as ValueProto));
    }
    return { [n.list]: { values } };
  }
  if (typeof v === 'object') return { [n.struct]: toStructProto(v as Record<string, unknown>) };
  return undefined;
}
