/**
 * The per-type knowledge proto-json's two directions share: field plans (kind, presence, oneof,
 * JSON name) computed once per protobuf Type, type lookup by name or type URL, and the well-known
 * types whose JSON form is special.
 *
 * Leans towards compute-once: plans and lookups are memoised for the life of the process (the
 * Root never changes after it is loaded).
 */

import type * as protobuf from 'protobufjs';

/** protobufjs, loaded on the first decode (not when xds-client is imported). */
function pb(): typeof protobuf {
  return require('protobufjs') as typeof protobuf;
}
import { MeshletError } from '../common/errors';
import { resourceProtoRoot, TYPE_URL_PREFIX } from './protos';

/** A proto3 JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export const hasOwn = Object.prototype.hasOwnProperty;
// ───────────────────────────── per-type plans ─────────────────────────────

export enum Kind {
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

export interface FieldPlan {
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

export function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

export function planOf(type: protobuf.Type): TypePlan {
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
      if (f.resolvedType instanceof pb().Enum) {
        kind = Kind.Enum;
        enumType = f.resolvedType;
      } else if (f.resolvedType instanceof pb().Type) {
        messageType = f.resolvedType;
      } else {
        throw new MeshletError(
          'MESHLET_ERR_INTERNAL',
          `proto-json: unresolved type ${f.type} of ${type.fullName}.${f.name}`,
        );
      }
    }
    const isMap = f instanceof pb().MapField;
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
  t = found instanceof pb().Type ? found : null;
  typeCache.set(nameOrUrl, t);
  return t;
}

/** `type.googleapis.com/<full name>` for a type. */
export function typeUrlOf(type: protobuf.Type | string): string {
  const name = typeof type === 'string' ? type : type.fullName.replace(/^\./, '');
  return TYPE_URL_PREFIX + name;
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
export function valueNames(): ValueNames {
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

export const WRAPPERS = new Set([
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
export function isSpecialWkt(fullName: string): boolean {
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
