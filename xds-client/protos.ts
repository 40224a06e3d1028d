/**
 * Envoy v3 protos, loaded once from the npm package that ships them (@grpc/grpc-js-xds's `deps/`).
 * Nothing is copied into this repository: the include paths are resolved from the installed package.
 *
 * Two views of the same .proto files:
 *  - gRPC service definitions (via @grpc/proto-loader, keepCase) for the ADS/SDS/… streams, used by
 *    the xDS client and by the embedded control plane's server;
 *  - one protobufjs Root holding every message type meshlet decodes out of a `google.protobuf.Any`
 *    (resources, filter configs, transport sockets, access loggers, …), used by proto-json.ts.
 *
 * Leans towards load-once: both are built lazily on first use and memoised for the process.
 * Loading is synchronous (control-plane start-up only, never on a request path).
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import type * as protobuf from 'protobufjs';
import { MeshletError } from '../common/errors';
import { ISTIO_PRIVATE_TYPES } from './istio-types';

/** Directory of the installed @grpc/grpc-js-xds package. */
const XDS_PKG_DIR = path.dirname(require.resolve('@grpc/grpc-js-xds/package.json'));

/** The proto include directories, in the order protoc would get them. */
export const PROTO_INCLUDE_DIRS: readonly string[] = Object.freeze([
  path.join(XDS_PKG_DIR, 'deps', 'envoy-api'),
  path.join(XDS_PKG_DIR, 'deps', 'xds'),
  path.join(XDS_PKG_DIR, 'deps', 'googleapis'),
  path.join(XDS_PKG_DIR, 'deps', 'protoc-gen-validate'),
]);

/** Discovery service .proto files whose services are exposed through proto-loader. */
const SERVICE_FILES = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/service/secret/v3/sds.proto',
  'envoy/service/listener/v3/lds.proto',
  'envoy/service/route/v3/rds.proto',
  'envoy/service/cluster/v3/cds.proto',
  'envoy/service/endpoint/v3/eds.proto',
];

/**
 * Every .proto whose messages meshlet may find inside an Any (plus the discovery messages
 * themselves, so a control plane can encode a whole DiscoveryResponse with the same Root).
 */
export const RESOURCE_PROTO_FILES: readonly string[] = Object.freeze([
  // discovery (ads.proto: the ADS service definition is built from this Root, see below)
  'envoy/service/discovery/v3/discovery.proto',
  'envoy/service/discovery/v3/ads.proto',
  'google/rpc/status.proto',
  // the xDS resources
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/extensions/transport_sockets/tls/v3/secret.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto',
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/config/core/v3/health_check.proto',
  'envoy/extensions/health_check/event_sinks/file/v3/file.proto',
  // network filters
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/filters/network/rbac/v3/rbac.proto',
  'envoy/extensions/filters/network/connection_limit/v3/connection_limit.proto',
  'envoy/extensions/filters/network/local_ratelimit/v3/local_rate_limit.proto',
  'envoy/extensions/filters/network/ext_authz/v3/ext_authz.proto',
  'envoy/extensions/filters/network/direct_response/v3/config.proto',
  // http filters
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/http/rbac/v3/rbac.proto',
  'envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto',
  'envoy/extensions/filters/http/fault/v3/fault.proto',
  'envoy/extensions/filters/http/jwt_authn/v3/config.proto',
  'envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto',
  'envoy/extensions/filters/http/ratelimit/v3/rate_limit.proto',
  'envoy/extensions/filters/http/lua/v3/lua.proto',
  'envoy/extensions/filters/http/cors/v3/cors.proto',
  'envoy/extensions/filters/http/upstream_codec/v3/upstream_codec.proto',
  'envoy/extensions/filters/http/cache/v3/cache.proto',
  'envoy/extensions/http/cache/simple_http_cache/v3/config.proto',
  'envoy/extensions/filters/http/header_mutation/v3/header_mutation.proto',
  // listener filters
  'envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto',
  'envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto',
  'envoy/extensions/filters/listener/original_dst/v3/original_dst.proto',
  'envoy/extensions/filters/listener/proxy_protocol/v3/proxy_protocol.proto',
  // upstream options and policies
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/upstreams/tcp/v3/tcp_protocol_options.proto',
  'envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto',
  'envoy/extensions/clusters/aggregate/v3/cluster.proto',
  'envoy/extensions/load_balancing_policies/round_robin/v3/round_robin.proto',
  'envoy/extensions/load_balancing_policies/least_request/v3/least_request.proto',
  'envoy/extensions/load_balancing_policies/random/v3/random.proto',
  'envoy/extensions/load_balancing_policies/ring_hash/v3/ring_hash.proto',
  'envoy/extensions/load_balancing_policies/maglev/v3/maglev.proto',
  'envoy/extensions/load_balancing_policies/pick_first/v3/pick_first.proto',
  'envoy/extensions/load_balancing_policies/wrr_locality/v3/wrr_locality.proto',
  'envoy/extensions/load_balancing_policies/client_side_weighted_round_robin/v3/client_side_weighted_round_robin.proto',
  // telemetry
  'envoy/extensions/access_loggers/file/v3/file.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
  'envoy/config/trace/v3/opentelemetry.proto',
  // listener filter_chain_matcher: network matching inputs and IP matchers
  'envoy/extensions/matching/common_inputs/network/v3/network_inputs.proto',
  'envoy/extensions/matching/input_matchers/ip/v3/ip.proto',
  'xds/type/matcher/v3/ip.proto',
  // istiod's Wasm-form filters (istio.stats / metadata_exchange in older Istio)
  'envoy/extensions/filters/http/wasm/v3/wasm.proto',
  'envoy/extensions/filters/network/wasm/v3/wasm.proto',
  // in every HCM istiod writes
  'envoy/extensions/filters/http/grpc_stats/v3/config.proto',
  'envoy/extensions/filters/http/csrf/v3/csrf.proto',
  'envoy/extensions/request_id/uuid/v3/uuid.proto',
  // ambient/HBONE pieces, decoded only to be rejected by name
  'envoy/extensions/transport_sockets/internal_upstream/v3/internal_upstream.proto',
  'envoy/extensions/filters/http/set_filter_state/v3/set_filter_state.proto',
  'envoy/extensions/filters/network/set_filter_state/v3/set_filter_state.proto',
  // untyped extension configs
  'udpa/type/v1/typed_struct.proto',
  'xds/type/v3/typed_struct.proto',
]);

/** Type URL prefix used by every Any meshlet produces. */
export const TYPE_URL_PREFIX = 'type.googleapis.com/';

/** The xDS resource type URLs meshlet subscribes to. */
export const TYPE_URLS = Object.freeze({
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  routeConfiguration: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  clusterLoadAssignment: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  secret: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
} as const);

let commonRegistered = false;

/**
 * protobufjs bundles only a few google/protobuf files; descriptor.proto (imported by the
 * validate/udpa annotations) is registered from the JSON protobufjs ships. Idempotent.
 */
// protobufjs and proto-loader load on first use (the first xDS stream or gateway gRPC call), so
// importing this module for its constants (TYPE_URLS, PROTO_LOADER_OPTIONS) costs nothing.
function pbjs(): typeof protobuf {
  return require('protobufjs') as typeof protobuf;
}

function registerCommonProtos(): void {
  if (commonRegistered) return;
  const protobuf = pbjs();
  commonRegistered = true;
  for (const name of ['api', 'descriptor', 'source_context', 'type']) {
    const json = require(`protobufjs/google/protobuf/${name}.json`) as {
      nested: { google: { nested: { protobuf: { nested: protobuf.INamespace['nested'] } } } };
    };
    protobuf.common(name, json.nested.google.nested.protobuf.nested as Record<string, protobuf.INamespace>);
  }
}

/** Resolve imports against PROTO_INCLUDE_DIRS, like protoc's -I. */
function withIncludePaths(root: protobuf.Root): protobuf.Root {
  const original = root.resolvePath.bind(root);
  root.resolvePath = (origin: string, target: string): string | null => {
    if (path.isAbsolute(target)) return target;
    for (const dir of PROTO_INCLUDE_DIRS) {
      const full = path.join(dir, target);
      try {
        fs.accessSync(full, fs.constants.R_OK);
        return full;
      } catch {
        // try the next include dir
      }
    }
    return original(origin, target);
  };
  return root;
}

/** Load timings in ms, filled when the corresponding view is first built (for reporting). */
export const protoLoadStats = { rootMs: -1, servicesMs: -1 };

let resourceRoot: protobuf.Root | undefined;

/**
 * The protobufjs Root with every type in RESOURCE_PROTO_FILES, loaded with keepCase so field names
 * are the .proto's snake_case names. Built on first call, then memoised.
 */
export function resourceProtoRoot(): protobuf.Root {
  if (resourceRoot) return resourceRoot;
  const started = performance.now();
  registerCommonProtos();
  const root = withIncludePaths(new (pbjs().Root)());
  root.loadSync(RESOURCE_PROTO_FILES as string[], { keepCase: true });
  // istiod's own filter configs (istio.stats, metadata exchange, istio.alpn, istio_authn, peer_metadata).
  root.addJSON(ISTIO_PRIVATE_TYPES.nested!);
  root.resolveAll();
  resourceRoot = root;
  protoLoadStats.rootMs = performance.now() - started;
  return root;
}

/** Options shared by every proto-loader load, so client and server agree on object shapes. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
  includeDirs: PROTO_INCLUDE_DIRS as string[],
});

let packageDefinition: protoLoader.PackageDefinition | undefined;

/**
 * proto-loader package definition for the discovery services (ADS, SDS, LDS, RDS, CDS, EDS).
 * Messages are plain objects with snake_case keys; `Any` stays `{type_url, value: Buffer}` (not
 * expanded), 64-bit integers are strings and enums are names.
 */
export function discoveryPackageDefinition(): protoLoader.PackageDefinition {
  if (packageDefinition) return packageDefinition;
  const started = performance.now();
  registerCommonProtos();
  packageDefinition = (require('@grpc/proto-loader') as typeof protoLoader).loadSync(SERVICE_FILES, PROTO_LOADER_OPTIONS);
  protoLoadStats.servicesMs = performance.now() - started;
  return packageDefinition;
}

function serviceDefinition(fullName: string): grpc.ServiceDefinition {
  const def = discoveryPackageDefinition()[fullName];
  if (!def || 'format' in def) throw new MeshletError('MESHLET_ERR_INTERNAL', `protos: ${fullName} is not a service`);
  return def as unknown as grpc.ServiceDefinition;
}

let adsDefinition: grpc.ServiceDefinition | undefined;

/**
 * envoy.service.discovery.v3.AggregatedDiscoveryService (StreamAggregatedResources,
 * DeltaAggregatedResources), built from the resource Root rather than a second proto-loader Root:
 * the sidecar needs that Root anyway to decode resources, and one copy of the Envoy descriptors
 * instead of two saves ~10 MiB and ~120 ms at start-up. Messages have exactly proto-loader's
 * object form (the same PROTO_LOADER_OPTIONS conversion), so servers and clients built on either
 * definition interoperate.
 */
export function adsServiceDefinition(): grpc.ServiceDefinition {
  if (adsDefinition) return adsDefinition;
  const svc = resourceProtoRoot().lookupService('envoy.service.discovery.v3.AggregatedDiscoveryService');
  const serviceName = svc.fullName.replace(/^\./, '');
  const def: Record<string, unknown> = {};
  for (const m of svc.methodsArray) {
    m.resolve();
    const req = m.resolvedRequestType!;
    const res = m.resolvedResponseType!;
    def[m.name] = {
      path: `/${serviceName}/${m.name}`,
      requestStream: !!m.requestStream,
      responseStream: !!m.responseStream,
      requestSerialize: serializer(req),
      requestDeserialize: deserializer(req),
      responseSerialize: serializer(res),
      responseDeserialize: deserializer(res),
      originalName: m.name.charAt(0).toLowerCase() + m.name.slice(1),
    };
  }
  adsDefinition = def as unknown as grpc.ServiceDefinition;
  return adsDefinition;
}

/** proto-loader's serializer: plain object → message (fromObject) → bytes. */
function serializer(t: protobuf.Type): (v: unknown) => Buffer {
  return (v) => {
    if (Array.isArray(v)) throw new Error(`Failed to serialize message: expected object with ${t.name} structure, got array instead`);
    return t.encode(t.fromObject(v as Record<string, unknown>)).finish() as Buffer;
  };
}

/** proto-loader's deserializer: bytes → message → plain object with PROTO_LOADER_OPTIONS. */
function deserializer(t: protobuf.Type): (b: Buffer) => unknown {
  const opts = PROTO_LOADER_OPTIONS as protobuf.IConversionOptions;
  return (b) => t.toObject(t.decode(b), opts);
}

/** envoy.service.secret.v3.SecretDiscoveryService (StreamSecrets, DeltaSecrets, FetchSecrets). */
export function sdsServiceDefinition(): grpc.ServiceDefinition {
  return serviceDefinition('envoy.service.secret.v3.SecretDiscoveryService');
}

/** Any other discovery service by its full name, e.g. `envoy.service.cluster.v3.ClusterDiscoveryService`. */
export function discoveryServiceDefinition(fullName: string): grpc.ServiceDefinition {
  return serviceDefinition(fullName);
}

/** Wire shape of envoy.config.core.v3.Node as proto-loader expects it (snake_case). */
export interface NodeProto {
  id?: string;
  cluster?: string;
  metadata?: StructProto;
  locality?: { region?: string; zone?: string; sub_zone?: string };
  user_agent_name?: string;
  user_agent_version?: string;
  client_features?: string[];
}

/** google.protobuf.Struct in proto-loader object form. */
export interface StructProto {
  fields: Record<string, ValueProto>;
}

/**
 * google.protobuf.Value in proto-loader object form (exactly one kind set). Field names are
 * camelCase here even with keepCase, because protobufjs supplies struct.proto from bundled JSON.
 */
export interface ValueProto {
  nullValue?: 'NULL_VALUE';
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: StructProto;
  listValue?: { values: ValueProto[] };
}

/** google.rpc.Status */
export interface StatusProto {
  code: number;
  message: string;
  details?: AnyProto[];
}

/** google.protobuf.Any on the wire. */
export interface AnyProto {
  type_url: string;
  value: Buffer | Uint8Array;
}

/** envoy.service.discovery.v3.DiscoveryRequest (proto-loader object form). */
export interface DiscoveryRequestProto {
  version_info?: string;
  node?: NodeProto;
  resource_names?: string[];
  type_url: string;
  response_nonce?: string;
  error_detail?: StatusProto;
}

/** envoy.service.discovery.v3.DiscoveryResponse (proto-loader object form). */
export interface DiscoveryResponseProto {
  version_info?: string;
  resources?: AnyProto[];
  canary?: boolean;
  type_url?: string;
  nonce?: string;
  control_plane?: { identifier?: string };
}

/** envoy.service.discovery.v3.Resource (delta). */
export interface ResourceProto {
  name?: string;
  aliases?: string[];
  version?: string;
  resource?: AnyProto;
  ttl?: { seconds?: string | number; nanos?: number };
}

/** envoy.service.discovery.v3.DeltaDiscoveryRequest (proto-loader object form). */
export interface DeltaDiscoveryRequestProto {
  node?: NodeProto;
  type_url: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: StatusProto;
}

/** envoy.service.discovery.v3.DeltaDiscoveryResponse (proto-loader object form). */
export interface DeltaDiscoveryResponseProto {
  system_version_info?: string;
  resources?: ResourceProto[];
  type_url?: string;
  removed_resources?: string[];
  nonce?: string;
  control_plane?: { identifier?: string };
}
