/**
 * The protocol-neutral HTTP stream contract between codecs and the connection manager / router.
 *
 * Shape follows Envoy's codec split (StreamDecoder / StreamEncoder): a downstream codec (HTTP/1.1
 * or HTTP/2) turns bytes into calls on a RequestSink and writes responses through a
 * ResponseEncoder; an upstream codec does the mirror image through RequestEncoder / ResponseSink.
 * The router connects the two, so any downstream protocol can talk to any upstream protocol.
 *
 * Hot-path rules for implementers:
 *  - Headers are flat arrays [name0, value0, name1, value1, …] with lower-case names and no
 *    pseudo-headers (method, path, authority, scheme and status are separate fields). No objects
 *    per header, no Maps per request.
 *  - Calls are direct method calls, not EventEmitter events or streams.
 *  - Body chunks are passed through as the Buffers the socket produced, never copied.
 *  - Flow control: write*() returns false above the high watermark; the peer side then calls
 *    pause*() on the other half until the matching onXxxWritable() callback fires.
 */
import type { PeerMetadata } from './peer-metadata';
import type { Duplex } from 'node:stream';
import type { ResponseFlag } from '../../common/errors';

/** Flat header list: [name0, value0, name1, value1, …]; names lower-case. */
export type HeaderList = string[];

export type HttpProtocol = 'HTTP/1.0' | 'HTTP/1.1' | 'HTTP/2';

export interface RequestHead {
  method: string;
  /** origin-form path with query ("/a/b?c=d"); for CONNECT, the authority. */
  path: string;
  /** Host header (HTTP/1) or :authority (HTTP/2). Empty string when absent. */
  authority: string;
  /** 'http' or 'https' (x-forwarded-proto semantics are applied by the connection manager). */
  scheme: string;
  protocol: HttpProtocol;
  /** All other headers, names lower-case; hop-by-hop headers already removed by the codec. */
  headers: HeaderList;
  /** Lower-case upgrade token ("websocket") for HTTP/1.1 Upgrade or HTTP/2 extended CONNECT. */
  upgrade?: string;
  /**
   * Declared body length when known: content-length, or 0 for a request with no body.
   * -1 = unknown/streamed (chunked, HTTP/2 without content-length).
   */
  contentLength: number;
}

export interface ResponseHead {
  status: number;
  headers: HeaderList;
  /** -1 when unknown/streamed. */
  contentLength: number;
}

/** Why a stream ended abnormally. Maps to Envoy response flags and retry_on conditions. */
export type ResetReason =
  | 'connect_failure'
  | 'connection_termination'
  | 'local_reset'
  | 'remote_reset'
  | 'refused_stream'
  | 'overflow'
  | 'protocol_error'
  | 'timeout'
  | 'tls_failure';

/** Facts about the downstream connection, filled by the listener and TLS layers. */
export interface DownstreamConnectionInfo {
  readonly id: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** Where the client meant to connect (SO_ORIGINAL_DST), when intercepted. */
  readonly originalDst?: { readonly address: string; readonly port: number };
  readonly tls?: {
    readonly sni?: string;
    readonly alpn?: string;
    /** Peer's SPIFFE ID (URI SAN) when a client certificate was verified. */
    readonly peerPrincipal?: string;
    /** Local workload's SPIFFE ID from the serving certificate. */
    readonly localPrincipal?: string;
    readonly peerCertificatePem?: string;
    readonly peerCertificateHash?: string;
    readonly peerSubject?: string;
    readonly peerDnsSans?: readonly string[];
    readonly peerUriSans?: readonly string[];
  };
  /**
   * Envoy's connection filter state, the keys meshlet's network filters write: set (mutably, once
   * per connection) by istio_authn and the TCP metadata exchange before the terminal filter runs.
   */
  filterState?: ConnectionFilterState;
  /**
   * Envoy's connection dynamic metadata by filter namespace, set by network filters before the
   * terminal filter runs (network RBAC's shadow result under `envoy.filters.network.rbac`), read by
   * network ext_authz filter_enabled_metadata. Created when a filter sets something.
   */
  dynamicMetadata?: Map<string, Record<string, unknown>>;
}

/** Connection-lifetime filter state (Envoy FilterState, LifeSpan::Connection). */
export interface ConnectionFilterState {
  /** io.istio.peer_principal: the peer certificate's first spiffe:// URI SAN (istio_authn). */
  peerPrincipal?: string;
  /** io.istio.local_principal: the local certificate's first spiffe:// URI SAN (istio_authn). */
  localPrincipal?: string;
  /** The downstream peer's Istio metadata from the TCP metadata exchange (envoy.tcp.metadataexchange). */
  downstreamPeer?: PeerMetadata;
}

// ───────────── downstream side (implemented by codecs, consumed by the HCM) ─────────────

/** Implemented by the connection manager's active stream; called by a downstream codec. */
export interface RequestSink {
  onRequestHeaders(head: RequestHead, endStream: boolean): void;
  onRequestData(chunk: Buffer, endStream: boolean): void;
  onRequestTrailers(trailers: HeaderList): void;
  /** The downstream went away or reset the stream; no more calls follow. */
  onDownstreamReset(reason: ResetReason): void;
  /** The downstream's write buffer drained below the low watermark. */
  onDownstreamWritable(): void;
}

/** Implemented by a downstream codec; the connection manager writes the response through it. */
export interface ResponseEncoder {
  readonly protocol: HttpProtocol;
  readonly connection: DownstreamConnectionInfo;
  writeHeaders(head: ResponseHead, endStream: boolean): void;
  /** Returns false when the downstream is above its high watermark. */
  writeData(chunk: Buffer, endStream: boolean): boolean;
  writeTrailers(trailers: HeaderList): void;
  /** Abort the stream (HTTP/2 RST_STREAM; HTTP/1 closes the connection). */
  reset(reason: ResetReason): void;
  /** Stop / resume reading the request body (read-disable). */
  pauseRequest(): void;
  resumeRequest(): void;
  /**
   * For an accepted upgrade (101) or CONNECT (2xx): after writing the response head, take the raw
   * byte stream of this request. HTTP/1 returns the socket; HTTP/2 the stream.
   */
  takeTunnel(): Duplex;
  /** Ask the codec to close the connection after this response (Connection: close / GOAWAY). */
  closeAfterResponse(): void;
}

/** Given to a downstream codec: creates the sink for each new request stream. */
export interface ServerCodecCallbacks {
  newStream(encoder: ResponseEncoder): RequestSink;
}

/**
 * A request the codec rejected before it became a stream (parse error, limits): the codec answers
 * it itself (400/413/431…, connection closed) and reports it here for logs and metrics.
 */
export interface CodecErrorReport {
  readonly status: number;
  readonly flag: ResponseFlag;
  readonly detail: string;
}

// ───────────── upstream side (implemented by codecs/pools, consumed by the router) ─────────────

/** Implemented by the router's upstream request; called by an upstream codec. */
export interface ResponseSink {
  onResponseHeaders(head: ResponseHead, endStream: boolean): void;
  onResponseData(chunk: Buffer, endStream: boolean): void;
  onResponseTrailers(trailers: HeaderList): void;
  onUpstreamReset(reason: ResetReason, detail?: string): void;
  /** The upstream's write buffer drained below the low watermark. */
  onUpstreamWritable(): void;
}

/** Implemented by an upstream codec stream; the router writes the request through it. */
export interface RequestEncoder {
  writeHeaders(head: RequestHead, endStream: boolean): void;
  writeData(chunk: Buffer, endStream: boolean): boolean;
  writeTrailers(trailers: HeaderList): void;
  reset(reason: ResetReason): void;
  pauseResponse(): void;
  resumeResponse(): void;
  /** After a 101/2xx to an upgrade/CONNECT, take the raw upstream byte stream. */
  takeTunnel(): Duplex;
}

/** Callbacks for ConnectionPool.newStream (Envoy's ConnectionPool::Callbacks). */
export interface PoolCallbacks {
  onPoolReady(encoder: RequestEncoder, info: UpstreamInfo): void;
  onPoolFailure(reason: ResetReason, detail: string): void;
}

export interface UpstreamInfo {
  readonly localAddress: string;
  readonly localPort: number;
  readonly protocol: HttpProtocol;
  /** The upstream peer's SPIFFE ID when the upstream connection is mTLS. */
  readonly peerPrincipal?: string;
}

/** Cancels a pending pool request (the caller gave up before onPoolReady). */
export interface Cancellable {
  cancel(): void;
}

/** Per-host HTTP connection pool (one per host × protocol × TLS context). */
export interface ConnectionPool {
  readonly protocol: HttpProtocol;
  /**
   * Get a stream on an idle or new connection. Exactly one of the callbacks fires, possibly
   * synchronously. Returns undefined when it fired synchronously; otherwise a handle to cancel.
   */
  newStream(sink: ResponseSink, callbacks: PoolCallbacks): Cancellable | undefined;
  /** Number of streams in use, connections open, requests waiting for a connection. */
  readonly activeStreams: number;
  readonly connections: number;
  readonly pending: number;
  /** Stop handing out existing connections; close each once idle. */
  drain(): void;
  /** Close everything now. */
  destroy(): void;
}
