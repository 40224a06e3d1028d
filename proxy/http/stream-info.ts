/**
 * Per-request facts (Envoy's StreamInfo): what access logs, metrics and tracing read once a stream
 * is complete — timings, byte counts, the route and upstream chosen, the response code, response
 * flags and response code details.
 *
 * Owns only data. The connection manager creates one per stream and fills the downstream side;
 * the router fills the upstream side. Leans cheap: plain fields with primitive values, flags as
 * a small bit set, metadata map created only when a filter sets something.
 */
import type { ResponseFlag } from '../../common/errors';
import type { DownstreamConnectionInfo, HeaderList, HttpProtocol, RequestHead } from './codec';
import type { PeerMetadata } from './peer-metadata';
import type { Route } from '../config/types';

/** Bit per response flag, in Envoy's printing order. */
const FLAG_ORDER: readonly ResponseFlag[] = [
  'DC',
  'UH',
  'UT',
  'UF',
  'UO',
  'NR',
  'URX',
  'UR',
  'NC',
  'UPE',
  'DPE',
  'RL',
  'RBAC',
  'FI',
  'DI',
  'SI',
  'UMSDR',
  'DR',
  'UAEX',
  'RLSE',
];
const FLAG_BIT: Readonly<Record<string, number>> = Object.fromEntries(FLAG_ORDER.map((f, i) => [f, 1 << i]));

/** Bounds for filter metadata (setMetadata): keys and values are truncated, entries capped. */
const MAX_METADATA_ENTRIES = 32;
const MAX_METADATA_VALUE = 256;

export class StreamInfo {
  /** Wall-clock start (ms since epoch) and monotonic start (ms, performance.now()). */
  readonly startTime = Date.now();
  readonly startMono = performance.now();
  /** Monotonic ms offsets from start; -1 = did not happen. */
  lastDownstreamRxByteMs = -1;
  firstUpstreamTxByteMs = -1;
  firstUpstreamRxByteMs = -1;
  firstDownstreamTxByteMs = -1;
  lastDownstreamTxByteMs = -1;

  protocol: HttpProtocol;
  method = '';
  path = '';
  authority = '';
  requestId = '';
  userAgent = '';
  /** Whether the request came from an internal (trusted) client. */
  internal = false;
  grpc = false;

  virtualHostName = '';
  routeName = '';
  /** The route last selected (tracing reads its decorator). */
  route: Route | undefined = undefined;
  clusterName = '';
  /** "ip:port" of the host that served the final attempt. */
  upstreamHost = '';
  /** The chosen upstream host's filter_metadata (for %UPSTREAM_METADATA(…)%); undefined before one is chosen. */
  upstreamHostMetadata: Readonly<Record<string, unknown>> | undefined = undefined;
  upstreamLocalAddress = '';
  upstreamPeerPrincipal = '';
  /** Istio peer metadata learned from the request (downstream) and response (upstream) exchange headers. */
  downstreamPeer: PeerMetadata | undefined = undefined;
  upstreamPeer: PeerMetadata | undefined = undefined;
  /** istio.alpn: the ALPN list upstream TLS connections offer for this request (Envoy's application_protocols filter state). */
  upstreamAlpnOverride: readonly string[] | undefined = undefined;
  upstreamTransportFailureReason = '';
  /** Attempts made upstream (1 + retries). */
  attemptCount = 0;

  /** Response code sent downstream; 0 when none was sent (reset before headers). */
  responseCode = 0;
  /** Envoy's %RESPONSE_CODE_DETAILS% (e.g. "via_upstream", "route_not_found"). */
  responseCodeDetails = '';
  /** grpc-status seen in the response headers or trailers, -1 when none. */
  grpcStatus = -1;
  bytesReceived = 0;
  bytesSent = 0;
  /** The request headers as forwarded (set by the connection manager; read by access logs). */
  requestHeaders: HeaderList | undefined = undefined;
  /** This stream's tracing span; undefined when the connection manager does not trace. */
  span: StreamSpan | undefined = undefined;

  private flags = 0;
  private meta: Map<string, string> | undefined;
  /** Structured dynamic metadata by filter namespace (created when a filter sets some). */
  private dyn: Map<string, Record<string, unknown>> | undefined;

  constructor(
    readonly connection: DownstreamConnectionInfo,
    protocol: HttpProtocol,
  ) {
    this.protocol = protocol;
  }

  /** ms since the start of the stream. */
  now(): number {
    return performance.now() - this.startMono;
  }

  setResponseFlag(flag: ResponseFlag): void {
    this.flags |= FLAG_BIT[flag] ?? 0;
  }

  hasResponseFlag(flag: ResponseFlag): boolean {
    return (this.flags & (FLAG_BIT[flag] ?? 0)) !== 0;
  }

  /** Whether any flag is set. */
  get hasAnyResponseFlag(): boolean {
    return this.flags !== 0;
  }

  /** Envoy's %RESPONSE_FLAGS%: comma-separated short names, "-" when none. */
  responseFlags(): string {
    if (this.flags === 0) return '-';
    let out = '';
    for (let i = 0; i < FLAG_ORDER.length; i++) {
      if (this.flags & (1 << i)) out = out === '' ? FLAG_ORDER[i]! : `${out},${FLAG_ORDER[i]}`;
    }
    return out;
  }

  /** The set flags as a list (for structured logs). */
  responseFlagList(): ResponseFlag[] {
    const out: ResponseFlag[] = [];
    for (let i = 0; i < FLAG_ORDER.length; i++) if (this.flags & (1 << i)) out.push(FLAG_ORDER[i]!);
    return out;
  }

  /** Bounded free-form facts from filters (filter_state / dynamic metadata). */
  setMetadata(key: string, value: string): void {
    if (!this.meta) this.meta = new Map();
    if (!this.meta.has(key) && this.meta.size >= MAX_METADATA_ENTRIES) return;
    this.meta.set(key.slice(0, 64), value.length > MAX_METADATA_VALUE ? value.slice(0, MAX_METADATA_VALUE) : value);
  }

  metadata(key: string): string | undefined {
    return this.meta?.get(key);
  }

  metadataEntries(): ReadonlyMap<string, string> {
    return this.meta ?? EMPTY_MAP;
  }

  /**
   * Envoy's dynamic metadata: `value` under `key` in the `namespace` struct (e.g. jwt_authn's
   * verified payload), read by RBAC metadata matchers and ext_authz filter_enabled_metadata.
   */
  setDynamicMetadata(namespace: string, key: string, value: unknown): void {
    if (!this.dyn) this.dyn = new Map();
    let ns = this.dyn.get(namespace);
    if (ns === undefined) {
      ns = {};
      this.dyn.set(namespace, ns);
    }
    ns[key] = value;
  }

  /** One namespace of dynamic metadata; undefined when nothing was set under it. */
  readonly dynamicMetadataOf = (namespace: string): Readonly<Record<string, unknown>> | undefined => this.dyn?.get(namespace);

  /** Total duration in ms, measured until the last byte was sent (or now, when still running). */
  get durationMs(): number {
    return this.lastDownstreamTxByteMs >= 0 ? this.lastDownstreamTxByteMs : this.now();
  }
}

const EMPTY_MAP: ReadonlyMap<string, string> = new Map();

/** A stream's tracing span (telemetry/tracing.ts). */
export interface StreamSpan {
  /** Write the propagation headers (traceparent, tracestate, B3 when the caller used it) upstream. */
  inject(headers: HeaderList): void;
  /** The response headers towards the downstream (Envoy's x-envoy-decorator-operation there). */
  encodeHeaders(headers: HeaderList): void;
  /** Finish the span from the completed stream's facts. */
  end(info: StreamInfo): void;
}

/** Starts a span per stream; given to a connection manager only when it traces. */
export interface HttpTracer {
  startSpan(head: RequestHead, info: StreamInfo): StreamSpan | undefined;
}

/** Called by the connection manager when a stream is complete (access logs, metrics, tracing). */
export type StreamCompleteListener = (info: StreamInfo) => void;
