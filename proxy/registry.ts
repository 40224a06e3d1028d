/**
 * The explicit registrations of every built-in strategy (style rule 4): HTTP filters, network
 * filters and load-balancing policies. Called by the composition (server.ts, and the bootstrap
 * loader in cli/proxy.ts for the decoders); nothing registers itself on import. A new filter or LB
 * policy is added here (docs/architecture.md).
 */
import { HttpFilterRegistry } from './http/filter';
import { bufferFilterFactory, bufferPerRouteFactory } from './http/filters/buffer';
import { cacheFilterFactory } from './http/filters/cache';
import { compressorFilterFactory, compressorPerRouteFactory } from './http/filters/compressor';
import { decompressorFilterFactory } from './http/filters/decompressor';
import { corsFilterFactory, corsPolicyFactory } from './http/filters/cors';
import { csrfFilterFactory } from './http/filters/csrf';
import { grpcWebFilterFactory } from './http/filters/grpc-web';
import { grpcHttp1BridgeFilterFactory } from './http/filters/grpc-http1-bridge';
import { extAuthzFilterFactory, extAuthzPerRouteFactory } from './http/filters/ext-authz';
import { faultFilterFactory } from './http/filters/fault';
import { grpcStatsFilterFactory } from './http/filters/grpc-stats';
import { headerMutationFilterFactory, headerMutationPerRouteFactory } from './http/filters/header-mutation';
import { jwtAuthnFilterFactory, jwtPerRouteFactory } from './http/filters/jwt-authn';
import { localRateLimitFactory } from './http/filters/local-ratelimit';
import { rateLimitFilterFactory } from './http/filters/ratelimit';
import { rbacFilterFactory, rbacPerRouteFactory } from './http/filters/rbac';
import { istioStatsFilterFactory } from './http/filters/istio-stats';
import { istioWasmFilterFactory } from './http/filters/istio-wasm';
import { peerMetadataFilterFactory } from './http/filters/istio-peer-metadata';
import { istioAlpnFilterFactory } from './http/filters/istio-alpn';
import { typedStructFilterFactories } from './http/filters/typed-struct';
import { typeScriptFilterFactory } from './http/filters/typescript';
import { routerFilterFactory } from './http/filters/router-factory';
import {
  connectionLimitFactory,
  httpConnectionManagerFactory,
  networkExtAuthzFactory,
  networkRbacFactory,
  tcpProxyFactory,
} from './listeners/builtin-network-filters';
import { istioAuthnFactory, istioStatsNetworkFactory, metadataExchangeFactory } from './listeners/istio-network-filters';
import { NetworkFilterRegistry } from './listeners/network-filter';
import { registerDefaultLbPolicies } from './upstream/lb/index';
import { LbRegistry } from './upstream/lb/types';

export interface Registries {
  readonly httpFilters: HttpFilterRegistry;
  readonly networkFilters: NetworkFilterRegistry;
  readonly lbPolicies: LbRegistry;
}

export function createRegistries(): Registries {
  const httpFilters = new HttpFilterRegistry()
    .register(routerFilterFactory)
    .register(rbacFilterFactory)
    // RBACPerRoute is a typed_per_filter_config type only; its factory refuses to be a filter.
    .register(rbacPerRouteFactory)
    .register(localRateLimitFactory())
    .register(faultFilterFactory())
    .register(bufferFilterFactory)
    .register(bufferPerRouteFactory)
    // Gateway filters (issue 11).
    .register(extAuthzFilterFactory)
    .register(extAuthzPerRouteFactory)
    .register(rateLimitFilterFactory)
    .register(jwtAuthnFilterFactory)
    .register(jwtPerRouteFactory)
    .register(typeScriptFilterFactory)
    .register(typedStructFilterFactories[0])
    .register(typedStructFilterFactories[1])
    .register(cacheFilterFactory)
    .register(headerMutationFilterFactory)
    .register(headerMutationPerRouteFactory)
    .register(compressorFilterFactory)
    .register(compressorPerRouteFactory)
    .register(decompressorFilterFactory)
    .register(grpcWebFilterFactory)
    .register(grpcHttp1BridgeFilterFactory)
    // Istio's own HTTP filters (istiod's sidecar listeners).
    .register(istioStatsFilterFactory)
    .register(istioWasmFilterFactory)
    .register(peerMetadataFilterFactory)
    .register(istioAlpnFilterFactory)
    // Envoy-fidelity filters (issues 15 and 16).
    .register(corsFilterFactory())
    .register(corsPolicyFactory)
    .register(grpcStatsFilterFactory)
    .register(csrfFilterFactory());
  const networkFilters = new NetworkFilterRegistry()
    .register(httpConnectionManagerFactory)
    .register(tcpProxyFactory)
    .register(networkRbacFactory)
    .register(connectionLimitFactory)
    .register(networkExtAuthzFactory)
    .register(istioAuthnFactory)
    .register(istioStatsNetworkFactory)
    .register(metadataExchangeFactory);
  const lbPolicies = registerDefaultLbPolicies(new LbRegistry());
  return { httpFilters, networkFilters, lbPolicies };
}
