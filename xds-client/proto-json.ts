/**
 * protobuf ↔ proto3 JSON, in the form Envoy users write in YAML: field names as in the .proto
 * (snake_case), `Any` as `{"@type": url, ...fields}`, Duration as "1.5s", wrappers as plain values,
 * Struct/Value as plain JSON, enums by name, 64-bit integers as numbers when safe (else strings),
 * bytes as base64, unset fields omitted.
 *
 * Decoding direction (messageToJson / anyToJson) is used by the xDS client on every response, so it
 * leans towards speed: one walk, per-type field plans computed once, no intermediate copies; cost is
 * linear in the message size. An Any whose type is not in the Root is kept as
 * `{"@type": url, "value": base64}` so decoders can report the unsupported type by name.
 *
 * Encoding direction (jsonToMessage / jsonToAny) is used by the embedded control plane to build
 * resources; it is strict (unknown fields, wrong types and unknown enum names are errors) and
 * collects every problem with its field path before throwing one ConfigError.
 */

import * as protobuf from 'protobufjs';
import { ConfigError, type FieldIssue } from '../proxy/errors';
import { resourceProtoRoot, type StructProto, TYPE_URL_PREFIX, type ValueProto } from './protos';

/** A proto3 JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const hasOwn = Object.prototype.hasOwnProperty;

// ───────────────────────────── per-type plans ─────────────────────────────

enum Kind {
  String,
  Bool,
  Int32,
  Uint32,
  Float,
  Long,
  Bytes,
  Enum,
  Message,
}

interface FieldPlan {
  /** Field name as in the .proto (the Root is loaded with keepCase). */
  readonly name: string;
  /** lowerCamelCase JSON name, accepted on input. */
  readonly jsonName: string;
  readonly kind: Kind;
  readonly repeated: boolean;
  /** Map fields: value kind is `kind`; keys are strings in JSON. */
  readonly map: boolean;
  readonly mapKeyKind?: Kind;
  readonly enumType?: protobuf.Enum;
  readonly messageType?: protobuf.Type;
  /** Field has explicit presence (oneof member or proto3 `optional`): defaults are not omitted. */
  readonly presence: boolean;
  readonly oneof?: string;
  readonly unsigned: boolean;
}

interface TypePlan {
  readonly fields: readonly FieldPlan[];
  readonly byName: ReadonlyMap<string, FieldPlan>;
}

const plans = new WeakMap<protobuf.Type, TypePlan>();

function scalarKind(type: string): Kind {
  switch (type) {
    case 'string':
      return Kind.String;
    case 'bool':
      return Kind.Bool;
    case 'int32':
    case 'sint32':
    case 'sfixed32':
      return Kind.Int32;
    case 'uint32':
    case 'fixed32':
      return Kind.Uint32;
    case 'float':
    case 'double':
      return Kind.Float;
    case 'int64':
    case 'uint64':
    case 'sint64':
    case 'fixed64':
    case 'sfixed64':
      return Kind.Long;
    case 'bytes':
      return Kind.Bytes;
    default:
      return Kind.Message;
  }
}

function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function planOf(type: protobuf.Type): TypePlan {
  let plan = plans.get(type);
  if (plan) return plan;
  const fields: FieldPlan[] = [];
  const byName = new Map<string, FieldPlan>();
  for (const f of type.fieldsArray) {
    f.resolve();
    let kind = scalarKind(f.type);
    let enumType: protobuf.Enum | undefined;
    let messageType: protobuf.Type | undefined;
    if (kind === Kind.Message) {
      if (f.resolvedType instanceof protobuf.Enum) {
        kind = Kind.Enum;
        enumType = f.resolvedType;
      } else if (f.resolvedType instanceof protobuf.Type) {
        messageType = f.resolvedType;
      } else {
        throw new Error(`proto-json: unresolved type ${f.type} of ${type.fullName}.${f.name}`);
      }
    }
    const isMap = f instanceof protobuf.MapField;
    const fp: FieldPlan = {
      name: f.name,
      jsonName: camel(f.name),
      kind,
      repeated: f.repeated,
      map: isMap,
      mapKeyKind: isMap ? scalarKind((f as protobuf.MapField).keyType) : undefined,
      enumType,
      messageType,
      presence: f.partOf != null,
      oneof: f.partOf && !isSyntheticOneof(f.partOf) ? f.partOf.name : undefined,
      unsigned: f.type === 'uint64' || f.type === 'fixed64',
    };
    fields.push(fp);
    byName.set(fp.name, fp);
    if (fp.jsonName !== fp.name) byName.set(fp.jsonName, fp);
  }
  plan = { fields, byName };
  plans.set(type, plan);
  return plan;
}

function isSyntheticOneof(o: protobuf.OneOf): boolean {
  // proto3 `optional` is a one-member oneof named `_<field>`.
  return o.oneof.length === 1 && o.name === `_${o.oneof[0]}`;
}

// ───────────────────────────── type lookup ─────────────────────────────

const typeCache = new Map<string, protobuf.Type | null>();

/** Find a message type by full name (`envoy.config.listener.v3.Listener`) or type URL; null if unknown. */
export function lookupType(nameOrUrl: string): protobuf.Type | null {
  let t = typeCache.get(nameOrUrl);
  if (t !== undefined) return t;
  const slash = nameOrUrl.lastIndexOf('/');
  const name = slash >= 0 ? nameOrUrl.slice(slash + 1) : nameOrUrl;
  let found: protobuf.ReflectionObject | null = null;
  if (name.length > 0) {
    try {
      found = resourceProtoRoot().lookup(name.startsWith('.') ? name : `.${name}`);
    } catch {
      found = null;
    }
  }
  t = found instanceof protobuf.Type ? found : null;
  typeCache.set(nameOrUrl, t);
  return t;
}

/** `type.googleapis.com/<full name>` for a type. */
export function typeUrlOf(type: protobuf.Type | string): string {
  const name = typeof type === 'string' ? type : type.fullName.replace(/^\./, '');
  return TYPE_URL_PREFIX + name;
}

// ───────────────────────────── message → JSON ─────────────────────────────

/** Raised when bytes cannot be decoded as the type they claim to be. */
function decodeFailure(path: string, what: string, err: unknown): ConfigError {
  const detail = err instanceof Error ? err.message : String(err);
  return new ConfigError(
    `cannot decode ${what}`,
    [{ path: path || '(root)', message: detail }],
    'MESHLET_ERR_XDS_RESOURCE',
  );
}

function isLong(v: unknown): v is protobuf.Long {
  return typeof v === 'object' && v !== null && 'low' in v && 'high' in v;
}

function longToJson(v: unknown, unsigned: boolean): number | string {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : v;
  }
  if (isLong(v)) {
    const signed = !(unsigned || v.unsigned);
    // Fast paths: small non-negative, and small negative signed values.
    if (v.high === 0 && v.low >= 0) return v.low;
    if (signed && v.high === -1 && v.low < 0) return v.low;
    const bits = (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
    const b = signed ? BigInt.asIntN(64, bits) : bits;
    const n = Number(b);
    return Number.isSafeInteger(n) ? n : b.toString();
  }
  if (typeof v === 'bigint') {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : v.toString();
  }
  return 0;
}

function isDefaultScalar(kind: Kind, v: unknown): boolean {
  switch (kind) {
    case Kind.String:
      return v === '';
    case Kind.Bool:
      return v === false;
    case Kind.Long:
      return v === 0 || v === '0' || (isLong(v) && v.low === 0 && v.high === 0);
    case Kind.Bytes:
      return (v as Uint8Array).length === 0;
    case Kind.Message:
      return false;
    default:
      return v === 0;
  }
}

function bytesToBase64(v: unknown): string {
  if (typeof v === 'string') return v;
  const u = v as Uint8Array;
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString('base64');
}

function floatToJson(v: number): number | string {
  if (Number.isFinite(v)) return v;
  if (Number.isNaN(v)) return 'NaN';
  return v > 0 ? 'Infinity' : '-Infinity';
}

function fraction(nanos: number): string {
  if (nanos === 0) return '';
  let s = String(nanos).padStart(9, '0');
  let end = s.length;
  while (end > 1 && s.charCodeAt(end - 1) === 48 /* '0' */) end--;
  s = s.slice(0, end);
  return `.${s}`;
}

function durationToJson(msg: Record<string, unknown>): string {
  const seconds = longToJson(hasOwn.call(msg, 'seconds') ? msg.seconds : 0, false);
  const nanos = hasOwn.call(msg, 'nanos') ? Number(msg.nanos) : 0;
  const secStr = String(seconds);
  const negative = secStr.startsWith('-') || nanos < 0;
  const absSec = secStr.startsWith('-') ? secStr.slice(1) : secStr;
  return `${negative ? '-' : ''}${absSec}${fraction(Math.abs(nanos))}s`;
}

function timestampToJson(msg: Record<string, unknown>): string {
  const seconds = Number(longToJson(hasOwn.call(msg, 'seconds') ? msg.seconds : 0, false));
  const nanos = hasOwn.call(msg, 'nanos') ? Number(msg.nanos) : 0;
  const iso = new Date(seconds * 1000).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z
  return `${iso.slice(0, 19)}${fraction(nanos)}Z`;
}

/**
 * google.protobuf.Value's field names. protobufjs supplies struct.proto from its bundled JSON, whose
 * field names are camelCase (`nullValue`) regardless of keepCase, so they are looked up, not assumed.
 */
interface ValueNames {
  readonly null: string;
  readonly number: string;
  readonly string: string;
  readonly bool: string;
  readonly struct: string;
  readonly list: string;
}
let valueNamesCache: ValueNames | undefined;
function valueNames(): ValueNames {
  if (valueNamesCache) return valueNamesCache;
  const t = resourceProtoRoot().lookupType('google.protobuf.Value');
  const pick = (snake: string): string => (t.fields[snake] ? snake : camel(snake));
  valueNamesCache = {
    null: pick('null_value'),
    number: pick('number_value'),
    string: pick('string_value'),
    bool: pick('bool_value'),
    struct: pick('struct_value'),
    list: pick('list_value'),
  };
  return valueNamesCache;
}

function valueToJson(msg: Record<string, unknown>): Json {
  const n = valueNames();
  if (hasOwn.call(msg, n.null) && msg[n.null] != null) return null;
  if (hasOwn.call(msg, n.number) && msg[n.number] != null) return floatToJson(msg[n.number] as number);
  if (hasOwn.call(msg, n.string) && msg[n.string] != null) return msg[n.string] as string;
  if (hasOwn.call(msg, n.bool) && msg[n.bool] != null) return msg[n.bool] as boolean;
  if (hasOwn.call(msg, n.struct) && msg[n.struct] != null)
    return structToJson(msg[n.struct] as Record<string, unknown>);
  if (hasOwn.call(msg, n.list) && msg[n.list] != null) return listToJson(msg[n.list] as Record<string, unknown>);
  return null;
}

function structToJson(msg: Record<string, unknown>): JsonObject {
  const out: JsonObject = {};
  const fields = msg.fields as Record<string, Record<string, unknown>> | undefined;
  if (fields) for (const k of Object.keys(fields)) out[k] = valueToJson(fields[k]);
  return out;
}

function listToJson(msg: Record<string, unknown>): Json[] {
  const values = (msg.values as Record<string, unknown>[] | undefined) ?? [];
  const out: Json[] = new Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = valueToJson(values[i]);
  return out;
}

const WRAPPERS = new Set([
  '.google.protobuf.DoubleValue',
  '.google.protobuf.FloatValue',
  '.google.protobuf.Int64Value',
  '.google.protobuf.UInt64Value',
  '.google.protobuf.Int32Value',
  '.google.protobuf.UInt32Value',
  '.google.protobuf.BoolValue',
  '.google.protobuf.StringValue',
  '.google.protobuf.BytesValue',
]);

/** Well-known types whose JSON form is not an object of fields (so inside Any they sit under "value"). */
function isSpecialWkt(fullName: string): boolean {
  return (
    WRAPPERS.has(fullName) ||
    fullName === '.google.protobuf.Duration' ||
    fullName === '.google.protobuf.Timestamp' ||
    fullName === '.google.protobuf.Struct' ||
    fullName === '.google.protobuf.Value' ||
    fullName === '.google.protobuf.ListValue' ||
    fullName === '.google.protobuf.FieldMask'
  );
}

function wrapperToJson(fullName: string, msg: Record<string, unknown>): Json {
  const has = hasOwn.call(msg, 'value') && msg.value != null;
  switch (fullName) {
    case '.google.protobuf.Int64Value':
      return has ? longToJson(msg.value, false) : 0;
    case '.google.protobuf.UInt64Value':
      return has ? longToJson(msg.value, true) : 0;
    case '.google.protobuf.BoolValue':
      return has ? (msg.value as boolean) : false;
    case '.google.protobuf.StringValue':
      return has ? (msg.value as string) : '';
    case '.google.protobuf.BytesValue':
      return has ? bytesToBase64(msg.value) : '';
    case '.google.protobuf.DoubleValue':
    case '.google.protobuf.FloatValue':
      return has ? floatToJson(msg.value as number) : 0;
    default:
      return has ? (msg.value as number) : 0;
  }
}

function messageValueToJson(type: protobuf.Type, msg: Record<string, unknown>, path: string): Json {
  const fullName = type.fullName;
  if (fullName.startsWith('.google.protobuf.')) {
    if (fullName === '.google.protobuf.Any') return anyObjectToJson(msg, path);
    if (WRAPPERS.has(fullName)) return wrapperToJson(fullName, msg);
    switch (fullName) {
      case '.google.protobuf.Duration':
        return durationToJson(msg);
      case '.google.protobuf.Timestamp':
        return timestampToJson(msg);
      case '.google.protobuf.Struct':
        return structToJson(msg);
      case '.google.protobuf.Value':
        return valueToJson(msg);
      case '.google.protobuf.ListValue':
        return listToJson(msg);
      case '.google.protobuf.FieldMask':
        return ((msg.paths as string[] | undefined) ?? []).join(',');
    }
  }
  return fieldsToJson(type, msg, path, {});
}

function singleToJson(fp: FieldPlan, v: unknown, path: string): Json {
  switch (fp.kind) {
    case Kind.Long:
      return longToJson(v, fp.unsigned);
    case Kind.Bytes:
      return bytesToBase64(v);
    case Kind.Float:
      return floatToJson(v as number);
    case Kind.Enum: {
      if (typeof v === 'string') return v;
      const name = (fp.enumType as protobuf.Enum).valuesById[v as number];
      return name === undefined ? (v as number) : name;
    }
    case Kind.Message:
      return messageValueToJson(fp.messageType as protobuf.Type, v as Record<string, unknown>, path);
    default:
      return v as Json;
  }
}

function fieldsToJson(type: protobuf.Type, msg: Record<string, unknown>, path: string, out: JsonObject): JsonObject {
  const { fields } = planOf(type);
  for (let i = 0; i < fields.length; i++) {
    const fp = fields[i];
    if (!hasOwn.call(msg, fp.name)) continue;
    const v = msg[fp.name];
    if (v == null) continue;
    if (fp.map) {
      const keys = Object.keys(v as object);
      if (keys.length === 0) continue;
      const m: JsonObject = {};
      const base = path ? `${path}.${fp.name}` : fp.name;
      for (const k of keys) m[k] = singleToJson(fp, (v as Record<string, unknown>)[k], `${base}["${k}"]`);
      out[fp.name] = m;
    } else if (fp.repeated) {
      const arr = v as unknown[];
      if (arr.length === 0) continue;
      const a: Json[] = new Array(arr.length);
      if (fp.kind === Kind.Message) {
        const base = path ? `${path}.${fp.name}` : fp.name;
        for (let j = 0; j < arr.length; j++) a[j] = singleToJson(fp, arr[j], `${base}[${j}]`);
      } else {
        for (let j = 0; j < arr.length; j++) a[j] = singleToJson(fp, arr[j], '');
      }
      out[fp.name] = a;
    } else {
      if (!fp.presence && isDefaultScalar(fp.kind, v)) continue;
      out[fp.name] = singleToJson(fp, v, fp.kind === Kind.Message ? (path ? `${path}.${fp.name}` : fp.name) : '');
    }
  }
  return out;
}

function anyObjectToJson(msg: Record<string, unknown>, path: string): JsonObject {
  const url = (msg.type_url as string | undefined) ?? '';
  const value = (msg.value as Uint8Array | undefined) ?? new Uint8Array(0);
  if (url === '') return {};
  const type = lookupType(url);
  if (!type) return { '@type': url, value: bytesToBase64(value) };
  let decoded: protobuf.Message;
  try {
    decoded = type.decode(value);
  } catch (err) {
    throw decodeFailure(path, url, err);
  }
  const out: JsonObject = { '@type': url };
  if (isSpecialWkt(type.fullName)) {
    out.value = messageValueToJson(type, decoded as unknown as Record<string, unknown>, path);
    return out;
  }
  return fieldsToJson(type, decoded as unknown as Record<string, unknown>, path, out);
}

/**
 * Convert a decoded protobufjs message (or a plain object with the .proto's field names, as
 * proto-loader produces) of `type` into proto3 JSON. Throws ConfigError only when an embedded Any's
 * bytes do not decode as the type its URL names.
 */
export function messageToJson(type: protobuf.Type, msg: object): Json {
  return messageValueToJson(type, msg as Record<string, unknown>, '');
}

/**
 * `{type_url, value}` → `{"@type": url, ...fields}` (or `{"@type", value: <json>}` for well-known
 * types, `{"@type", value: base64}` for types not in the Root).
 */
export function anyToJson(any: { type_url: string; value: Uint8Array }): JsonObject {
  return anyObjectToJson(any as unknown as Record<string, unknown>, '');
}

/**
 * Decode the bytes of an xDS resource of a known type into proto3 JSON *without* the "@type" key
 * (the resource's own fields only), as the config decoders take it. Throws ConfigError if the type
 * is unknown or the bytes are malformed.
 */
export function decodeResourceJson(typeUrl: string, value: Uint8Array): JsonObject {
  const type = lookupType(typeUrl);
  if (!type) {
    throw new ConfigError(
      'unknown resource type',
      [{ path: '(root)', message: `type ${typeUrl} is not known` }],
      'MESHLET_ERR_XDS_RESOURCE',
    );
  }
  let decoded: protobuf.Message;
  try {
    decoded = type.decode(value);
  } catch (err) {
    throw decodeFailure('', typeUrl, err);
  }
  return fieldsToJson(type, decoded as unknown as Record<string, unknown>, '', {});
}

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

/** Encode `{"@type": url, ...fields}` into a google.protobuf.Any `{type_url, value}`. */
export function jsonToAny(json: unknown): { type_url: string; value: Buffer } {
  const enc = new Encoder();
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
