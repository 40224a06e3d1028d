/**
 * Istio's peer metadata on the wire, shared by the HTTP exchange (`x-envoy-peer-metadata` /
 * `x-envoy-peer-metadata-id` headers) and the TCP exchange (ALPN `istio-peer-exchange`).
 *
 * What istio-proxy sends is the node's metadata reduced to its "flat node" fields — NAME,
 * NAMESPACE, OWNER, WORKLOAD_NAME, ISTIO_VERSION, MESH_ID, CLUSTER_ID, LABELS and
 * PLATFORM_METADATA (string maps), APP_CONTAINERS (comma-joined) — as a `google.protobuf.Struct`
 * serialized deterministically (map entries in key order). The HTTP header carries it in base64;
 * TCP frames an `Any` of it (type.googleapis.com/google.protobuf.Struct) behind an 8-byte header:
 * magic 0x3D230467 and the Any's length, both big-endian. The peer's workload, namespace,
 * cluster and its app / version / canonical-name / canonical-revision labels are what the Istio
 * metrics read.
 *
 * The Struct codec is written here against protobuf's wire format (Struct.fields = 1 as map
 * entries {key = 1, value = 2}; Value: null 1, number 2, string 3, bool 4, struct 5, list 6;
 * ListValue.values = 1) so encoding and decoding need no Root. Leans bounded: decoding stops at
 * a depth of 8 and at 64 KiB, and decoded peers are cached by their header value in a bounded map
 * so one peer is one object (the metric label caches key on its identity).
 */
import type * as protobuf from 'protobufjs';
import type { NodeInfo } from '../config/types';

// protobufjs only when metadata is exchanged: a proxy without Istio's filters never loads it.
let pbMod: typeof protobuf | undefined;
const pb = (): typeof protobuf => (pbMod ??= require('protobufjs') as typeof protobuf);

export const PEER_METADATA_HEADER = 'x-envoy-peer-metadata';
export const PEER_METADATA_ID_HEADER = 'x-envoy-peer-metadata-id';
export const PEER_EXCHANGE_ALPN = 'istio-peer-exchange';
export const MX_MAGIC = 0x3d230467;
export const STRUCT_TYPE_URL = 'type.googleapis.com/google.protobuf.Struct';

/** JSON form of a google.protobuf.Value. */
export type StructValue = null | number | string | boolean | StructValue[] | { [k: string]: StructValue };
export type StructObject = { [k: string]: StructValue };

/** A peer as the Istio metrics see it ("" = not known). */
export interface PeerMetadata {
  readonly id: string;
  readonly name: string;
  readonly workload: string;
  readonly namespace: string;
  readonly cluster: string;
  readonly app: string;
  readonly version: string;
  readonly canonicalService: string;
  readonly canonicalRevision: string;
  readonly owner: string;
}

const MAX_BYTES = 64 * 1024;
const MAX_DEPTH = 8;

// ───────────────────────────── Struct ↔ bytes ─────────────────────────────

function writeValue(w: protobuf.Writer, v: StructValue, depth: number): void {
  if (v === null) w.uint32((1 << 3) | 0).int32(0);
  else if (typeof v === 'number') w.uint32((2 << 3) | 1).double(v);
  else if (typeof v === 'string') w.uint32((3 << 3) | 2).string(v);
  else if (typeof v === 'boolean') w.uint32((4 << 3) | 0).bool(v);
  else if (Array.isArray(v)) {
    w.uint32((6 << 3) | 2).fork();
    for (const x of v) {
      w.uint32((1 << 3) | 2).fork();
      writeValue(w, x, depth + 1);
      w.ldelim();
    }
    w.ldelim();
  } else {
    w.uint32((5 << 3) | 2).fork();
    writeStruct(w, v, depth + 1);
    w.ldelim();
  }
}

function writeStruct(w: protobuf.Writer, s: StructObject, depth: number): void {
  if (depth > MAX_DEPTH) throw new Error('struct nested too deep');
  // Deterministic serialization: map entries in key order (as istio-proxy writes them).
  for (const key of Object.keys(s).sort()) {
    w.uint32((1 << 3) | 2).fork();
    w.uint32((1 << 3) | 2).string(key);
    w.uint32((2 << 3) | 2).fork();
    writeValue(w, s[key]!, depth);
    w.ldelim();
    w.ldelim();
  }
}

/** Serialize a Struct (deterministic). */
export function encodeStruct(s: StructObject): Uint8Array {
  const w = pb().Writer.create();
  writeStruct(w, s, 0);
  return w.finish();
}

function readValue(r: protobuf.Reader, end: number, depth: number): StructValue {
  let out: StructValue = null;
  while (r.pos < end) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        r.int32();
        out = null;
        break;
      case 2:
        out = r.double();
        break;
      case 3:
        out = r.string();
        break;
      case 4:
        out = r.bool();
        break;
      case 5: {
        const len = r.uint32();
        out = readStruct(r, r.pos + len, depth + 1);
        break;
      }
      case 6: {
        const len = r.uint32();
        const listEnd = r.pos + len;
        const list: StructValue[] = [];
        while (r.pos < listEnd) {
          const t = r.uint32();
          if (t >>> 3 === 1 && (t & 7) === 2) {
            const l = r.uint32();
            list.push(readValue(r, r.pos + l, depth + 1));
          } else r.skipType(t & 7);
        }
        out = list;
        break;
      }
      default:
        r.skipType(tag & 7);
    }
  }
  return out;
}

function readStruct(r: protobuf.Reader, end: number, depth: number): StructObject {
  if (depth > MAX_DEPTH) throw new Error('struct nested too deep');
  const out: StructObject = {};
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag >>> 3 !== 1 || (tag & 7) !== 2) {
      r.skipType(tag & 7);
      continue;
    }
    const entryEnd = r.pos + r.uint32();
    let key = '';
    let value: StructValue = null;
    while (r.pos < entryEnd) {
      const t = r.uint32();
      if (t >>> 3 === 1 && (t & 7) === 2) key = r.string();
      else if (t >>> 3 === 2 && (t & 7) === 2) {
        const l = r.uint32();
        value = readValue(r, r.pos + l, depth);
      } else r.skipType(t & 7);
    }
    if (key !== '__proto__') out[key] = value;
  }
  if (r.pos !== end) throw new Error('truncated struct');
  return out;
}

/** Parse a serialized Struct; throws on malformed or oversized input. */
export function decodeStruct(bytes: Uint8Array): StructObject {
  if (bytes.length > MAX_BYTES) throw new Error(`peer metadata larger than ${MAX_BYTES} bytes`);
  const r = pb().Reader.create(bytes);
  return readStruct(r, bytes.length, 0);
}

// ───────────────────────────── node metadata ↔ Struct ─────────────────────────────

const FLAT_STRINGS = ['NAME', 'NAMESPACE', 'OWNER', 'WORKLOAD_NAME', 'ISTIO_VERSION', 'MESH_ID', 'CLUSTER_ID'] as const;
const FLAT_MAPS = ['LABELS', 'PLATFORM_METADATA'] as const;

function stringMap(v: unknown): StructObject | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const out: StructObject = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = typeof x === 'string' ? x : '';
  return out;
}

/** The Struct istio-proxy sends for a node: its metadata reduced to the flat-node fields. */
export function localPeerStruct(node: NodeInfo): StructObject {
  const md = node.metadata ?? {};
  const out: StructObject = {};
  for (const k of FLAT_STRINGS) if (typeof md[k] === 'string') out[k] = md[k];
  for (const k of FLAT_MAPS) {
    const m = stringMap(md[k]);
    if (m) out[k] = m;
  }
  const containers = md.APP_CONTAINERS;
  if (typeof containers === 'string') out.APP_CONTAINERS = containers;
  else if (Array.isArray(containers)) out.APP_CONTAINERS = containers.filter((c) => typeof c === 'string').join(',');
  return out;
}

/** The x-envoy-peer-metadata value for a node (base64 of the Struct). */
export function encodePeerHeader(node: NodeInfo): string {
  return Buffer.from(encodeStruct(localPeerStruct(node))).toString('base64');
}

function s(v: StructValue | undefined): string {
  return typeof v === 'string' ? v : '';
}

/** The metric-relevant view of a peer Struct. */
export function peerFromStruct(st: StructObject, id = ''): PeerMetadata {
  const labels = st.LABELS !== null && typeof st.LABELS === 'object' && !Array.isArray(st.LABELS) ? st.LABELS : {};
  return {
    id,
    name: s(st.NAME),
    workload: s(st.WORKLOAD_NAME),
    namespace: s(st.NAMESPACE),
    cluster: s(st.CLUSTER_ID),
    // istio-proxy: the qualified app.kubernetes.io/name and /version labels win over app and version.
    app: s(labels['app.kubernetes.io/name']) || s(labels.app),
    version: s(labels['app.kubernetes.io/version']) || s(labels.version),
    canonicalService: s(labels['service.istio.io/canonical-name']),
    canonicalRevision: s(labels['service.istio.io/canonical-revision']),
    owner: s(st.OWNER),
  };
}

/**
 * Istio's endpoint metadata encoding (`filter_metadata.istio.workload` on an EDS endpoint):
 * "workload;namespace;canonical-name;canonical-revision;cluster", the client side's fallback peer.
 */
export function peerFromEndpointWorkload(encoded: string): PeerMetadata | undefined {
  const p = encoded.split(';');
  if (p.length < 5) return undefined;
  return { id: '', name: '', workload: p[0]!, namespace: p[1]!, canonicalService: p[2]!, canonicalRevision: p[3]!, cluster: p[4]!, app: '', version: '', owner: '' };
}

// ───────────────────────────── bounded cache ─────────────────────────────

const MAX_CACHED = 1000;
const cache = new Map<string, PeerMetadata | null>();

function remember(key: string, v: PeerMetadata | null): void {
  if (cache.size >= MAX_CACHED) {
    // Drop the oldest quarter (insertion order), as istio-proxy trims its peer cache.
    let n = MAX_CACHED / 4;
    for (const k of cache.keys()) {
      cache.delete(k);
      if (--n <= 0) break;
    }
  }
  cache.set(key, v);
}

/** Decode an x-envoy-peer-metadata value (base64, padding optional); undefined when malformed. */
export function decodePeerHeader(value: string, id = ''): PeerMetadata | undefined {
  const key = id === '' ? value : `${id}\u0000${value}`;
  const hit = cache.get(key);
  if (hit !== undefined) return hit ?? undefined;
  let peer: PeerMetadata | null = null;
  try {
    if (value.length <= (MAX_BYTES * 4) / 3 + 4) peer = peerFromStruct(decodeStruct(Buffer.from(value, 'base64')), id);
  } catch {
    peer = null;
  }
  remember(key, peer);
  return peer ?? undefined;
}

/** The same interning for endpoint-encoded peers. */
export function endpointPeer(encoded: string): PeerMetadata | undefined {
  const key = `\u0001${encoded}`;
  const hit = cache.get(key);
  if (hit !== undefined) return hit ?? undefined;
  const peer = peerFromEndpointWorkload(encoded) ?? null;
  remember(key, peer);
  return peer ?? undefined;
}

/** Intern a peer decoded from the TCP exchange, by its serialized bytes. */
export function internPeer(bytesKey: string, make: () => PeerMetadata | undefined): PeerMetadata | undefined {
  const key = `\u0002${bytesKey}`;
  const hit = cache.get(key);
  if (hit !== undefined) return hit ?? undefined;
  let peer: PeerMetadata | null = null;
  try {
    peer = make() ?? null;
  } catch {
    peer = null;
  }
  remember(key, peer);
  return peer ?? undefined;
}

// ───────────────────────────── TCP exchange frame ─────────────────────────────

/** The frame's fixed header: magic and the Any's length, both 32-bit big-endian. */
export const MX_HEADER_BYTES = 8;
const OWNER_PREFIX = 'kubernetes://apis/apps/v1/namespaces/';
const WORKLOAD_TYPES = new Set(['pod', 'deployment', 'job', 'cronjob']);

/**
 * The workload Struct istio-proxy writes on the TCP exchange (its WorkloadMetadataObject of the
 * node): NAME, NAMESPACE, WORKLOAD_NAME, CLUSTER_ID, LABELS with the canonical name and revision
 * and app / version (the app.kubernetes.io/ labels first), OWNER rebuilt from its workload type
 * (pod, deployment, job, cronjob; otherwise absent), REGION and AVAILABILITY_ZONE from the node's
 * locality. Empty strings are left out; LABELS is always there.
 */
export function localWorkloadStruct(node: NodeInfo): StructObject {
  const md = node.metadata ?? {};
  const str = (k: string): string => (typeof md[k] === 'string' ? (md[k] as string) : '');
  const labelsIn = stringMap(md.LABELS) ?? {};
  const label = (k: string): string => s(labelsIn[k]);
  const out: StructObject = {};
  const put = (o: StructObject, k: string, v: string): void => {
    if (v !== '') o[k] = v;
  };
  const ns = str('NAMESPACE');
  const workload = str('WORKLOAD_NAME');
  put(out, 'NAME', str('NAME'));
  put(out, 'NAMESPACE', ns);
  put(out, 'WORKLOAD_NAME', workload);
  put(out, 'CLUSTER_ID', str('CLUSTER_ID'));
  const labels: StructObject = {};
  put(labels, 'service.istio.io/canonical-name', label('service.istio.io/canonical-name'));
  put(labels, 'service.istio.io/canonical-revision', label('service.istio.io/canonical-revision'));
  put(labels, 'app', label('app.kubernetes.io/name') || label('app'));
  put(labels, 'version', label('app.kubernetes.io/version') || label('version'));
  out.LABELS = labels;
  const owner = str('OWNER');
  if (owner.length > workload.length + 2) {
    const head = owner.slice(0, owner.length - workload.length - 2);
    const type = head.slice(head.lastIndexOf('/') + 1);
    if (WORKLOAD_TYPES.has(type)) out.OWNER = `${OWNER_PREFIX}${ns}/${type}s/${workload}`;
  }
  put(out, 'REGION', node.locality?.region ?? '');
  put(out, 'AVAILABILITY_ZONE', node.locality?.zone ?? '');
  return out;
}

/**
 * The whole frame one side writes first on an `istio-peer-exchange` connection: magic
 * 0x3D230467, the length of what follows, then a google.protobuf.Any (type_url = 1, value = 2) of
 * a Struct {"x-envoy-peer-metadata": workload Struct, "x-envoy-peer-metadata-id": node id}.
 */
export function encodeExchangeFrame(node: NodeInfo): Buffer {
  const body: StructObject = { [PEER_METADATA_HEADER]: localWorkloadStruct(node) };
  if (node.id !== '') body[PEER_METADATA_ID_HEADER] = node.id;
  const w = pb().Writer.create();
  w.uint32((1 << 3) | 2).string(STRUCT_TYPE_URL);
  w.uint32((2 << 3) | 2).bytes(encodeStruct(body));
  const any = w.finish();
  const frame = Buffer.allocUnsafe(MX_HEADER_BYTES + any.length);
  frame.writeUInt32BE(MX_MAGIC, 0);
  frame.writeUInt32BE(any.length, 4);
  frame.set(any, MX_HEADER_BYTES);
  return frame;
}

/** The Any's largest accepted length (istio-proxy has no bound; meshlet keeps one). */
export const MX_MAX_BYTES = MAX_BYTES;

/**
 * The peer of a received frame body (the Any after the 8-byte header): undefined when it is not
 * an Any of a Struct, or the Struct has no "x-envoy-peer-metadata" Struct in it. Interned by the
 * bytes, so a peer seen again is the same object.
 */
export function decodeExchangeAny(any: Uint8Array): PeerMetadata | undefined {
  return internPeer(Buffer.from(any.buffer, any.byteOffset, any.byteLength).toString('latin1'), () => {
    const r = pb().Reader.create(any);
    let typeUrl = '';
    let value: Uint8Array | undefined;
    while (r.pos < any.length) {
      const tag = r.uint32();
      if (tag === ((1 << 3) | 2)) typeUrl = r.string();
      else if (tag === ((2 << 3) | 2)) value = r.bytes();
      else r.skipType(tag & 7);
    }
    if (typeUrl !== STRUCT_TYPE_URL) return undefined;
    const outer = decodeStruct(value ?? new Uint8Array(0));
    const inner = outer[PEER_METADATA_HEADER];
    if (inner === null || inner === undefined || typeof inner !== 'object' || Array.isArray(inner)) return undefined;
    const id = outer[PEER_METADATA_ID_HEADER];
    return peerFromStruct(inner, typeof id === 'string' ? id : '');
  });
}
