/**
 * Response parser: turns the `Any` resources of one (Delta)DiscoveryResponse into named, decoded
 * values or per-resource errors. Pure: it reads the cache only to skip re-decoding resources whose
 * bytes did not change, and never touches versions, nonces or the stream.
 *
 * Leans towards linear cost on big pushes (1,000 clusters / 10,000 endpoints): each resource is
 * decoded once; an unchanged resource is recognised by comparing its bytes with the cached bytes
 * before any protobuf decoding (its name is peeked from the wire).
 */

import type { FieldIssue } from '../common/errors';
import { decodeResourceJson, lookupType } from './proto-json';
import type { AnyProto } from './protos';
import { defaultNameOf, type ResourceTypeDef } from './resource-types';

const RESOURCE_WRAPPER_URL = 'type.googleapis.com/envoy.service.discovery.v3.Resource';

/** One resource of a response after parsing. */
export interface ParsedResource<T> {
  /** Position in the response, for messages when the name is unknown. */
  readonly index: number;
  /** Resource name; undefined when it could not be determined (the resource is then invalid). */
  readonly name?: string;
  /** The resource's serialized bytes (inner Any value): change detection and /config_dump. */
  readonly raw?: Buffer;
  /** Per-resource version (delta, or a SotW Resource wrapper). */
  readonly version?: string;
  /** Decoded value when valid and changed. */
  readonly value?: T;
  /** True when the bytes equal the cached copy: not decoded again, nothing to notify. */
  readonly unchanged: boolean;
  /** Why the resource is rejected; empty when valid. */
  readonly issues: readonly FieldIssue[];
  readonly warnings: readonly FieldIssue[];
}

/** Lookup of the cached bytes of a resource by name (for change detection). */
export type CachedBytes = (name: string) => Buffer | undefined;

function asBuffer(u: Uint8Array | Buffer | undefined): Buffer {
  if (!u) return Buffer.alloc(0);
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/**
 * Read the string in top-level field 1 of a serialized message without decoding it: Listener,
 * RouteConfiguration, Cluster, ClusterLoadAssignment (cluster_name) and Secret all keep their name
 * there. Returns undefined when absent or malformed; only used as a hint.
 */
export function peekName(buf: Buffer): string | undefined {
  let pos = 0;
  const len = buf.length;
  while (pos < len) {
    let tag = 0;
    let shift = 0;
    let b: number;
    do {
      if (pos >= len || shift > 28) return undefined;
      b = buf[pos++];
      tag |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    const field = tag >>> 3;
    const wire = tag & 7;
    if (wire === 0) {
      while (pos < len && buf[pos] & 0x80) pos++;
      pos++;
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 5) {
      pos += 4;
    } else if (wire === 2) {
      let n = 0;
      shift = 0;
      do {
        if (pos >= len || shift > 28) return undefined;
        b = buf[pos++];
        n |= (b & 0x7f) << shift;
        shift += 7;
      } while (b & 0x80);
      // A 5-byte length overflows the 32-bit shifts into a negative number: malformed.
      if (n < 0) return undefined;
      if (field === 1) return pos + n <= len ? buf.toString('utf8', pos, pos + n) : undefined;
      pos += n;
    } else {
      return undefined;
    }
  }
  return undefined;
}

function issue(path: string, message: string): FieldIssue {
  return { path, message };
}

/**
 * Parse one resource. `any` is the Any from a SotW response (possibly a Resource wrapper), or the
 * `resource` of a delta Resource (then `deltaName`/`deltaVersion` come from the wrapper).
 */
export function parseResource<T>(
  def: ResourceTypeDef<T>,
  index: number,
  any: AnyProto | undefined,
  cached: CachedBytes,
  deltaName?: string,
  deltaVersion?: string,
): ParsedResource<T> {
  let name = deltaName || undefined;
  let version = deltaVersion;
  let inner = any;
  if (inner && inner.type_url === RESOURCE_WRAPPER_URL) {
    // SotW responses may wrap each resource in envoy.service.discovery.v3.Resource (client feature
    // xds.config.resource-in-sotw).
    try {
      const wrapperType = lookupType(RESOURCE_WRAPPER_URL);
      const w = wrapperType?.decode(asBuffer(inner.value)) as unknown as {
        name?: string;
        version?: string;
        resource?: AnyProto;
      };
      name = name ?? (w.name || undefined);
      version = version ?? (w.version || undefined);
      inner = w.resource;
    } catch (err) {
      return invalid(index, name, version, [
        issue('(resource)', `malformed Resource wrapper: ${(err as Error).message}`),
      ]);
    }
  }
  if (!inner) return invalid(index, name, version, [issue('(resource)', 'resource body is missing')]);
  if (inner.type_url !== def.typeUrl) {
    return invalid(index, name, version, [issue('(resource)', `type ${inner.type_url} does not match ${def.typeUrl}`)]);
  }
  const raw = asBuffer(inner.value);
  const hint = name ?? peekName(raw);
  if (hint !== undefined) {
    const prev = cached(hint);
    if (prev?.equals(raw)) {
      return { index, name: hint, raw, version, unchanged: true, issues: [], warnings: [] };
    }
  }
  let json: Record<string, unknown>;
  try {
    json = decodeResourceJson(def.typeUrl, raw);
  } catch (err) {
    const issues = (err as { issues?: FieldIssue[] }).issues ?? [issue('(resource)', (err as Error).message)];
    // An empty peeked name is no name: an undecodable resource must never be skipped as "not
    // subscribed" (that would ACK garbage); unnamed, it makes the response a NACK.
    return invalid(index, name ?? (hint || undefined), version, issues, raw);
  }
  const jsonName = (def.nameOf ?? defaultNameOf)(json);
  if (name === undefined) name = jsonName;
  if (name === undefined) return invalid(index, undefined, version, [issue('name', 'resource has no name')], raw);
  let result: { value?: T; errors: readonly FieldIssue[]; warnings: readonly FieldIssue[] };
  try {
    result = def.decode(json);
  } catch (err) {
    result = { errors: [issue('(resource)', `decoder failed: ${(err as Error).message}`)], warnings: [] };
  }
  if (result.errors.length > 0 || result.value === undefined) {
    const issues = result.errors.length > 0 ? result.errors : [issue('(resource)', 'decoder returned no value')];
    return { index, name, raw, version, unchanged: false, issues, warnings: result.warnings };
  }
  return { index, name, raw, version, value: result.value, unchanged: false, issues: [], warnings: result.warnings };
}

function invalid<T>(
  index: number,
  name: string | undefined,
  version: string | undefined,
  issues: FieldIssue[],
  raw?: Buffer,
): ParsedResource<T> {
  return { index, name, raw, version, unchanged: false, issues, warnings: [] };
}

/** One readable line per problem, naming the resource, its field path and the problem. */
export function describeIssues(
  typeName: string,
  r: { index: number; name?: string; issues: readonly FieldIssue[] },
): string {
  const who = r.name !== undefined ? `${typeName} ${quoteName(r.name)}` : `${typeName} at index ${r.index}`;
  return truncateMessage(r.issues.map((i) => `${who}: ${i.path}: ${i.message}`).join('\n'), MAX_RESOURCE_MESSAGE);
}

/** Longest resource name quoted verbatim in an error message (a hostile name can be MiBs long). */
const MAX_NAME_IN_MESSAGE = 256;
/** Bound of one resource's error description (its error_state in /config_dump). */
const MAX_RESOURCE_MESSAGE = 4096;

/** A resource name for messages: quoted, and cut (with its length) when very long. */
export function quoteName(name: string): string {
  if (name.length <= MAX_NAME_IN_MESSAGE) return `"${name}"`;
  return `"${name.slice(0, MAX_NAME_IN_MESSAGE)}…" (${name.length} chars)`;
}

/** Cut `s` to at most `max` characters, saying so. */
export function truncateMessage(s: string, max: number): string {
  if (s.length <= max) return s;
  const note = ` … (truncated, ${s.length} chars)`;
  return s.slice(0, Math.max(0, max - note.length)) + note;
}
