/**
 * Network filters as strategies, like HTTP filters (http/filter.ts): one factory per decoded
 * network filter kind, registered explicitly in proxy/registry.ts, that adds its part to the filter
 * chain being built — a connection gate (connection_limit, rbac), the terminal handler
 * (http_connection_manager, tcp_proxy), or a wrapper in front of the terminal handler (ext_authz,
 * which holds each connection while it asks). The composition (server.ts) only loops over the
 * chain's filters; adding a network filter is a decoder in proxy/config plus a factory here.
 *
 * Decoding stays in proxy/config/envoy/listener.ts (pure, below the data plane); the registry is
 * keyed by the decoded config's `kind`.
 */
import type { RuntimeReader } from '../../common/runtime';
import type { IstioStatsConfig } from '../config/filters/istio-stats';
import type { NodeInfo } from '../config/types';
import type { HcmConfig, ListenerConfig, NetworkFilterConfig, RouteConfiguration, TcpProxyConfig } from '../config/types';
import type { HttpFilterRegistry } from '../http/filter';
import type { HttpTracer, StreamCompleteListener } from '../http/stream-info';
import type { TcpProxyOptions } from '../tcp/tcp-proxy';
import type { ClusterLookup } from '../upstream/types';
import type { NetworkFilter } from './listener';
import type { ConnectionHandler } from './types';

type Kind = NetworkFilterConfig['kind'];
type ConfigOf<K extends Kind> = Extract<NetworkFilterConfig, { kind: K }>;

/** The filter chain being built, in config order. */
export interface FilterChainParts {
  /** Run in order on each accepted connection; any false closes it. */
  readonly filters: NetworkFilter[];
  /** Set by the terminal filter. */
  handler: ConnectionHandler | undefined;
  /** Wrapped around the terminal handler once every filter is built; the first listed is outermost. */
  readonly wrappers: ((inner: ConnectionHandler) => ConnectionHandler)[];
  /** The chain's istio.stats network filter config, for the tcp_proxy after it (Istio TCP metrics). */
  istioStats?: IstioStatsConfig;
}

/** What a factory may use while building (all resolved at config time, nothing per connection). */
export interface NetworkFilterContext {
  readonly listener: ListenerConfig;
  readonly clusters: ClusterLookup;
  /** The proxy's layered runtime (optional: components default to an empty one). */
  readonly runtime?: RuntimeReader;
  /** The proxy's node (Istio's peer metadata exchange sends its metadata). */
  readonly node?: NodeInfo;
  readonly httpFilters: HttpFilterRegistry;
  /** The RDS route table of that name as of now (undefined until it arrives). */
  routeTable(name: string): RouteConfiguration | undefined;
  /** Telemetry of one HTTP connection manager: completion callback and tracer. */
  forHcm(hcm: HcmConfig, listener: ListenerConfig): { onStreamComplete: StreamCompleteListener; tracer: HttpTracer | undefined };
  /** Telemetry of one TCP proxy: session callbacks. */
  forTcp(
    tcp: TcpProxyConfig,
    listener: ListenerConfig,
    istioStats?: IstioStatsConfig,
  ): Pick<TcpProxyOptions, 'onSessionStart' | 'onSessionEnd' | 'onSessionProgress' | 'progressIntervalMs'>;
}

export interface NetworkFilterFactory<K extends Kind = Kind> {
  readonly kind: K;
  build(config: ConfigOf<K>, parts: FilterChainParts, ctx: NetworkFilterContext): void;
}

export class NetworkFilterRegistry {
  private readonly byKind = new Map<Kind, NetworkFilterFactory>();

  register<K extends Kind>(factory: NetworkFilterFactory<K>): this {
    if (this.byKind.has(factory.kind)) throw new Error(`network filter ${factory.kind} is registered twice`);
    this.byKind.set(factory.kind, factory as unknown as NetworkFilterFactory);
    return this;
  }

  get(kind: Kind): NetworkFilterFactory | undefined {
    return this.byKind.get(kind);
  }

  kinds(): Kind[] {
    return [...this.byKind.keys()];
  }
}

/** Build one filter chain's parts from its decoded filters. Throws when a kind is not registered. */
export function buildNetworkFilters(
  registry: NetworkFilterRegistry,
  filters: readonly NetworkFilterConfig[],
  ctx: NetworkFilterContext,
): { filters: NetworkFilter[]; handler: ConnectionHandler | undefined } {
  const parts: FilterChainParts = { filters: [], handler: undefined, wrappers: [] };
  for (const f of filters) {
    const factory = registry.get(f.kind);
    if (!factory) throw new Error(`network filter ${f.kind} (${f.name}) has no registered factory`);
    factory.build(f, parts, ctx);
  }
  let handler = parts.handler;
  if (handler) for (let i = parts.wrappers.length - 1; i >= 0; i--) handler = parts.wrappers[i]!(handler);
  return { filters: parts.filters, handler };
}
