/**
 * xds-client's public surface: the client (watch/cancel, snapshot, stats), resource type
 * contracts, the Envoy v3 protos and the proto3 JSON codec. Nothing here knows about proxying.
 */

export type { UpdateEvent } from './ads-stream';
export { type BackoffOptions, ExponentialBackoff } from './backoff';
export { CLIENT_FEATURES, type ResolvedCluster, XdsClient, type XdsClientOptions, type XdsStats } from './client';
export {
  anyToJson,
  decodeResourceJson,
  type Json,
  jsonToAny,
  jsonToMessage,
  lookupType,
  messageToJson,
  toStructProto,
  typeUrlOf,
} from './proto-json';
export type {
  AnyProto,
  DeltaDiscoveryRequestProto,
  DeltaDiscoveryResponseProto,
  DiscoveryRequestProto,
  DiscoveryResponseProto,
  NodeProto,
  ResourceProto,
  StatusProto,
} from './protos';
export {
  adsServiceDefinition,
  discoveryPackageDefinition,
  discoveryServiceDefinition,
  PROTO_INCLUDE_DIRS,
  protoLoadStats,
  resourceProtoRoot,
  sdsServiceDefinition,
  TYPE_URL_PREFIX,
  TYPE_URLS,
} from './protos';
export {
  type DecodeResult,
  defaultNameOf,
  type ResourceTypeDef,
  type XdsResourceError,
  type XdsWatcher,
} from './resource-types';
export type { XdsErrorState, XdsResourceSnapshot, XdsSnapshot, XdsTypeSnapshot } from './snapshot';
