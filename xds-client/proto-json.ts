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
 * Encoding direction (jsonToMessage / jsonToAny, in proto-json-encode.ts and re-exported here) is
 * used by the embedded control plane to build resources; it is strict and collects every problem
 * with its field path before throwing one ConfigError.
 */

import type * as protobuf from 'protobufjs';
import { ConfigError } from '../common/errors';
import {
  type FieldPlan,
  hasOwn,
  isSpecialWkt,
  type Json,
  type JsonObject,
  Kind,
  lookupType,
  planOf,
  valueNames,
  WRAPPERS,
} from './proto-schema';

import { wireFormatError } from './wire-check';
export { jsonToAny, jsonToMessage, toStructProto } from './proto-json-encode';
export { type Json, type JsonObject, lookupType, typeUrlOf } from './proto-schema';

// ───────────────────────────── message → JSON ─────────────────────────────

/**
 * An embedded Any whose bytes do not decode as the type its URL names. Thrown from deep inside the
 * walk with no path; each enclosing field adds its segment while the error unwinds, so the
 * success path builds no path strings at all.
 */
class NestedDecodeError extends Error {
  readonly segments: string[] = [];
  constructor(
    readonly typeUrl: string,
    readonly detail: string,
  ) {
    super(detail);
  }
}

function withSegment(err: unknown, name: string, index: number, key: string | undefined): unknown {
  if (err instanceof NestedDecodeError) {
    err.segments.unshift(
      index >= 0 ? `${name}[${index}]` : key !== undefined ? `${name}[${JSON.stringify(key)}]` : name,
    );
  }
  return err;
}

function toConfigError(err: unknown): unknown {
  if (!(err instanceof NestedDecodeError)) return err;
  return new ConfigError(
    `cannot decode ${err.typeUrl}`,
    [{ path: err.segments.join('.') || '(root)', message: err.detail }],
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
      return (v as { length?: number }).length === 0;
    case Kind.Message:
      return false;
    default:
      return v === 0;
  }
}

const EMPTY_BYTES = new Uint8Array(0);

/**
 * A bytes field as protobufjs hands it over: a Buffer or Uint8Array normally, but a plain array
 * (its `util.emptyArray` default when it found no Buffer; also what a hand-built object may hold)
 * or a base64 string (proto-loader's `bytes: String`) in other set-ups; undefined when absent.
 */
function asBytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return Buffer.from(v, 'base64');
  if (Array.isArray(v)) return Uint8Array.from(v as number[]);
  return EMPTY_BYTES;
}

function bytesToBase64(v: unknown): string {
  if (typeof v === 'string') return v;
  const u = asBytes(v);
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

function messageValueToJson(type: protobuf.Type, msg: Record<string, unknown>): Json {
  const fullName = type.fullName;
  if (fullName.startsWith('.google.protobuf.')) {
    if (fullName === '.google.protobuf.Any') return anyObjectToJson(msg);
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
  return fieldsToJson(type, msg, {});
}

function singleToJson(fp: FieldPlan, v: unknown): Json {
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
      return messageValueToJson(fp.messageType as protobuf.Type, v as Record<string, unknown>);
    default:
      return v as Json;
  }
}

function fieldsToJson(type: protobuf.Type, msg: Record<string, unknown>, out: JsonObject): JsonObject {
  const { fields } = planOf(type);
  for (let i = 0; i < fields.length; i++) {
    const fp = fields[i];
    if (!hasOwn.call(msg, fp.name)) continue;
    const v = msg[fp.name];
    if (v == null) continue;
    let index = -1;
    let key: string | undefined;
    try {
      if (fp.map) {
        const keys = Object.keys(v as object);
        if (keys.length === 0) continue;
        const m: JsonObject = {};
        for (key of keys) m[key] = singleToJson(fp, (v as Record<string, unknown>)[key]);
        out[fp.name] = m;
      } else if (fp.repeated) {
        const arr = v as unknown[];
        if (arr.length === 0) continue;
        const a: Json[] = new Array(arr.length);
        for (index = 0; index < arr.length; index++) a[index] = singleToJson(fp, arr[index]);
        out[fp.name] = a;
      } else {
        if (!fp.presence && isDefaultScalar(fp.kind, v)) continue;
        out[fp.name] = singleToJson(fp, v);
      }
    } catch (err) {
      throw withSegment(err, fp.name, index, key);
    }
  }
  return out;
}

function anyObjectToJson(msg: Record<string, unknown>): JsonObject {
  const url = (msg.type_url as string | undefined) ?? '';
  const value = asBytes(msg.value);
  if (url === '') return {};
  const type = lookupType(url);
  if (!type) return { '@type': url, value: bytesToBase64(value) };
  let decoded: protobuf.Message;
  try {
    const malformed = wireFormatError(type, value);
    if (malformed !== undefined) throw new Error(malformed);
    decoded = type.decode(value);
  } catch (err) {
    throw new NestedDecodeError(url, err instanceof Error ? err.message : String(err));
  }
  const out: JsonObject = { '@type': url };
  if (isSpecialWkt(type.fullName)) {
    out.value = messageValueToJson(type, decoded as unknown as Record<string, unknown>);
    return out;
  }
  return fieldsToJson(type, decoded as unknown as Record<string, unknown>, out);
}

/**
 * Convert a decoded protobufjs message (or a plain object with the .proto's field names, as
 * proto-loader produces) of `type` into proto3 JSON. Throws ConfigError only when an embedded Any's
 * bytes do not decode as the type its URL names.
 */
export function messageToJson(type: protobuf.Type, msg: object): Json {
  try {
    return messageValueToJson(type, msg as Record<string, unknown>);
  } catch (err) {
    throw toConfigError(err);
  }
}

/**
 * `{type_url, value}` → `{"@type": url, ...fields}` (or `{"@type", value: <json>}` for well-known
 * types, `{"@type", value: base64}` for types not in the Root).
 */
export function anyToJson(any: { type_url: string; value: Uint8Array }): JsonObject {
  try {
    return anyObjectToJson(any as unknown as Record<string, unknown>);
  } catch (err) {
    throw toConfigError(err);
  }
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
  try {
    let decoded: protobuf.Message;
    try {
      // protobufjs accepts truncated strings and invalid UTF-8 that Envoy rejects (wire-check.ts).
      const malformed = wireFormatError(type, value);
      if (malformed !== undefined) throw new Error(malformed);
      decoded = type.decode(value);
    } catch (err) {
      throw new NestedDecodeError(typeUrl, err instanceof Error ? err.message : String(err));
    }
    return fieldsToJson(type, decoded as unknown as Record<string, unknown>, {});
  } catch (err) {
    throw toConfigError(err);
  }
}
