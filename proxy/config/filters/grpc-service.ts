/**
 * Pure decoders for the side-call targets of filters: envoy.config.core.v3.GrpcService in its
 * envoy_grpc form (meshlet dials through its own clusters) and HttpUri, plus the ext_authz
 * `grpc_service` / `transport_api_version` fields shared by the HTTP and the network filter.
 * Decoders only; the calls themselves are made by proxy/http/filters/service-client.ts. Filter
 * fields are documented in docs/filters.md (proxy/config/envoy/ holds the bootstrap.md ones).
 */
import type { Reader } from '../../../common/reader';
import { dur } from '../envoy/core';

/** envoy.config.core.v3.GrpcService (envoy_grpc form) as the gateway filters use it. */
export interface GrpcTarget {
  /** envoy_grpc.cluster_name: the cluster whose hosts serve the API. */
  readonly clusterName: string;
  /** envoy_grpc.authority (defaults to the cluster name, as in Envoy). */
  readonly authority: string;
  /** GrpcService.timeout in ms. */
  readonly timeoutMs: number;
  /** initial_metadata sent on every call. */
  readonly initialMetadata: readonly (readonly [string, string])[];
}

/** envoy.config.core.v3.HttpUri */
export interface HttpUriConfig {
  readonly uri: string;
  readonly cluster: string;
  readonly timeoutMs: number;
}

/** Decode a GrpcService (only envoy_grpc: meshlet dials through its own clusters). */
export function decodeGrpcTarget(r: Reader, defaultTimeoutMs: number): GrpcTarget | undefined {
  const which = r.oneof(['envoy_grpc', 'google_grpc'] as const);
  const timeoutMs = dur(r, 'timeout', defaultTimeoutMs);
  const initialMetadata: [string, string][] = [];
  for (const m of r.arr('initial_metadata')) {
    const key = m.requiredStr('key').toLowerCase();
    const value = m.str('value', '');
    m.done();
    if (key) initialMetadata.push([key, value]);
  }
  let out: GrpcTarget | undefined;
  if (which === undefined) r.issues.error(r.path, 'one of envoy_grpc, google_grpc must be set');
  else if (which === 'google_grpc') {
    r.error('google_grpc', 'google_grpc is not supported here by meshlet; use envoy_grpc with a cluster');
    r.raw('google_grpc');
  } else {
    const e = r.obj('envoy_grpc');
    if (e) {
      const clusterName = e.requiredStr('cluster_name');
      const authority = e.str('authority', clusterName);
      e.done();
      if (clusterName) out = { clusterName, authority, timeoutMs, initialMetadata };
    }
  }
  r.done();
  return out;
}

/** Decode an HttpUri: uri, cluster and timeout are all required (Envoy's validation rules). */
export function decodeHttpUri(r: Reader, opts: { schemeOptional?: boolean } = {}): HttpUriConfig | undefined {
  let uri = r.requiredStr('uri');
  // ext_authz only names the cluster with the URI; Envoy accepts "ext_authz" or "127.0.0.1:10003".
  if (uri && opts.schemeOptional && !uri.includes('://')) uri = `http://${uri}`;
  const cluster = r.requiredStr('cluster');
  if (!r.has('timeout')) r.error('timeout', 'is required');
  const timeoutMs = dur(r, 'timeout', 1000);
  if (uri && !/^https?:\/\//.test(uri)) r.error('uri', `must be an http:// or https:// URI, got ${JSON.stringify(uri)}`);
  r.done();
  if (!uri || !cluster) return undefined;
  return { uri, cluster, timeoutMs };
}

export const EXT_AUTHZ_DEFAULT_TIMEOUT_MS = 200;

/** Shared by the HTTP and network filters: grpc_service / transport_api_version / stat_prefix. */
export function decodeGrpcServiceField(r: Reader): GrpcTarget | undefined {
  const g = r.obj('grpc_service');
  return g ? decodeGrpcTarget(g, EXT_AUTHZ_DEFAULT_TIMEOUT_MS) : undefined;
}

export function checkTransportApiVersion(r: Reader): void {
  const v = r.enumOf('transport_api_version', ['AUTO', 'V2', 'V3'] as const, 'AUTO');
  if (v === 'V2') r.error('transport_api_version', 'only V3 is supported');
}
