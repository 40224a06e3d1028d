/**
 * Per-endpoint transport socket selection (Cluster.transport_socket_matches; Istio's auto-mTLS:
 * endpoints whose metadata says `tlsMode: istio` get the mTLS socket, the others plaintext).
 *
 * Envoy's order (TransportSocketMatcherImpl::resolve): every match against the endpoint's
 * `envoy.transport_socket_match` filter metadata first, then every match against the locality's,
 * then the cluster's own transport_socket, named "default". A match holds when each of its keys is
 * in that metadata with an equal value (protobuf Value equality: kind and value); an empty match
 * holds for any endpoint, with or without metadata.
 *
 * Resolved once per host and metadata version (EDS pushes bring new metadata objects), not per
 * request; the cluster keys its connection pools by the result.
 */
import type { TransportSocketMatch } from '../config/types';
import type { TransportSocketFactory } from './types';

/** The filter_metadata namespace Envoy reads the match labels from. */
export const TRANSPORT_SOCKET_MATCH_NS = 'envoy.transport_socket_match';

/** One selectable socket: its match name ("default" for the cluster's transport_socket). */
export interface ResolvedSocket {
  readonly name: string;
  readonly factory: TransportSocketFactory;
  /** Hosts resolved to this socket (Envoy's total_match_count). */
  matchCount: number;
}

interface Entry {
  readonly labels: readonly (readonly [string, unknown])[];
  readonly socket: ResolvedSocket;
}

export class TransportSocketMatcher {
  private readonly entries: readonly Entry[];
  readonly defaultSocket: ResolvedSocket;

  constructor(
    matches: readonly TransportSocketMatch[],
    factoryFor: (m: TransportSocketMatch) => TransportSocketFactory,
    defaultFactory: TransportSocketFactory,
  ) {
    this.entries = matches.map((m) => ({
      labels: Object.entries(m.match),
      socket: { name: m.name, factory: factoryFor(m), matchCount: 0 },
    }));
    this.defaultSocket = { name: 'default', factory: defaultFactory, matchCount: 0 };
  }

  /** Every selectable socket, the default last (stats, admin). */
  get sockets(): ResolvedSocket[] {
    return [...this.entries.map((e) => e.socket), this.defaultSocket];
  }

  resolve(
    endpointMetadata: Readonly<Record<string, unknown>> | undefined,
    localityMetadata: Readonly<Record<string, unknown>> | undefined,
  ): ResolvedSocket {
    for (const e of this.entries) if (labelsMatch(e.labels, endpointMetadata)) return counted(e.socket);
    for (const e of this.entries) if (labelsMatch(e.labels, localityMetadata)) return counted(e.socket);
    return counted(this.defaultSocket);
  }
}

function counted(s: ResolvedSocket): ResolvedSocket {
  s.matchCount++;
  return s;
}

/** Envoy's Metadata::metadataLabelMatch over `envoy.transport_socket_match`, lists compared whole. */
function labelsMatch(labels: Entry['labels'], metadata: Readonly<Record<string, unknown>> | undefined): boolean {
  const ns = metadata?.[TRANSPORT_SOCKET_MATCH_NS];
  if (ns === undefined || ns === null || typeof ns !== 'object') return labels.length === 0;
  const fields = ns as Record<string, unknown>;
  for (const [k, v] of labels) {
    if (!Object.hasOwn(fields, k) || !valueEqual(fields[k], v)) return false;
  }
  return true;
}

/** google.protobuf.Value equality on the JSON form (null, number, string, bool, list, struct). */
export function valueEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!valueEqual(a[i], b[i])) return false;
    return true;
  }
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.hasOwn(b, k) || !valueEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}
