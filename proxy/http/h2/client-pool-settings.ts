/**
 * Settings of upstream HTTP/2 connection pools (client-pool.ts): what a pool takes from its
 * cluster's config, which HTTP/2 implementation drives its connections (MESHLET_H2_UPSTREAM_CODEC),
 * the ALPN it offers, and the window and header-list limits its connections start with.
 */
import type { Http2Options } from '../../config/types';
import type { UpstreamCluster } from '../../upstream/types';

/** What the pool needs to know about its cluster. */
export interface H2PoolSettings {
  readonly connectTimeoutMs: number;
  /** Our SETTINGS and the per-connection stream cap (max_concurrent_streams). */
  readonly http2: Http2Options;
  /** Close a connection with no streams after this long; 0 = never. */
  readonly idleTimeoutMs: number;
  /** Streams per connection before it is drained; 0 = unlimited. */
  readonly maxRequestsPerConnection: number;
  /** The transport is TLS: offer ALPN h2; :scheme https for requests that carry none. */
  readonly secure: boolean;
  /**
   * Which HTTP/2 implementation drives the connections: meshlet's own framing ('meshlet', the
   * default: raw-client-session.ts) or node:http2 ('nghttp2'). The default comes from
   * MESHLET_H2_UPSTREAM_CODEC (=nghttp2 selects node:http2).
   */
  readonly codec: H2Codec;
}

export type H2Codec = 'nghttp2' | 'meshlet';

/** The process-wide default codec: meshlet's own framing; MESHLET_H2_UPSTREAM_CODEC=nghttp2 selects node:http2. */
export function defaultH2Codec(): H2Codec {
  return process.env.MESHLET_H2_UPSTREAM_CODEC === 'nghttp2' ? 'nghttp2' : 'meshlet';
}

const MAX_WINDOW = 2 ** 31 - 1;
/** ALPN offered on TLS upstream connections. */
export const H2_ALPN: readonly string[] = Object.freeze(['h2']);

/** The subset of a cluster a pool uses (lets tests build a pool without a cluster manager). */
export type H2PoolCluster = Pick<UpstreamCluster, 'config' | 'stats' | 'resources' | 'transport' | 'transportFor'>;

/** Pool settings from a cluster's config. */
export function h2PoolSettings(cluster: Pick<UpstreamCluster, 'config'>): H2PoolSettings {
  const c = cluster.config;
  return {
    connectTimeoutMs: c.connectTimeoutMs,
    http2: c.http2,
    idleTimeoutMs: c.upstreamIdleTimeoutMs,
    maxRequestsPerConnection: c.maxRequestsPerConnection,
    secure: c.transportSocket !== undefined,
    codec: defaultH2Codec(),
  };
}

/** Response header list limit on meshlet's own framing (Envoy's max_response_headers_kb default, 60 KiB). */
export const RAW_MAX_RESPONSE_HEADERS = 60 * 1024;

/** A window size within RFC 9113's bounds (at least the default 65,535, at most 2^31 − 1). */
export function clampWindow(n: number): number {
  return Math.min(MAX_WINDOW, Math.max(65535, n));
}
