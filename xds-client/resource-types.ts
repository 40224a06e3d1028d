/**
 * Resource type definitions and watcher contracts: the seam between the xDS protocol (this folder)
 * and the proxy's config decoders (proxy/config/envoy/). A type definition is injected by the
 * composition root; xds-client knows nothing about what a Listener *means*.
 *
 * Leans pure: `decode` takes proto3 JSON (snake_case, as Envoy users write YAML) and returns a value
 * or every field error; it must not touch the network, the cache or the stream.
 */

import type { FieldIssue } from '../common/errors';
import { TYPE_URLS } from './protos';

export { TYPE_URLS };

/** Result of decoding one resource: a frozen value, or the reasons it was rejected. */
export interface DecodeResult<T> {
  /** The validated value; absent when `errors` is non-empty. */
  readonly value?: T;
  /** Field problems that reject the resource (paths relative to the resource). */
  readonly errors: readonly FieldIssue[];
  /** Problems that do not reject it (unsupported-but-ignorable fields); logged, not NACKed. */
  readonly warnings: readonly FieldIssue[];
}

/** How one xDS resource type is decoded and named. */
export interface ResourceTypeDef<T> {
  /** Full type URL, e.g. `type.googleapis.com/envoy.config.cluster.v3.Cluster`. */
  readonly typeUrl: string;
  /** Pure decoder from the resource's proto3 JSON (without "@type") to a validated value. */
  decode(json: unknown): DecodeResult<T>;
  /** The resource's name, from a decoded value. */
  name(value: T): string;
  /**
   * The resource's name from its raw JSON, used to report (and NACK) resources that failed to
   * decode. Defaults to `json.name`, or `json.cluster_name` for ClusterLoadAssignment.
   */
  nameOf?(json: Record<string, unknown>): string | undefined;
  /**
   * Wildcard-capable (LDS, CDS): `watch(typeUrl, '*')` subscribes to every resource, and in
   * state-of-the-world a resource absent from a response has been removed. For the others
   * (RDS, EDS, SDS) absence from a response means nothing.
   */
  readonly wildcard: boolean;
  /**
   * An optional check against the running system, after a successful decode and before the
   * resource is accepted (a listener's address must be bindable: Envoy NACKs a listener it cannot
   * bind). A message rejects the resource like a decode error; `previous` is the accepted value.
   */
  check?(value: T, previous: T | undefined): Promise<string | undefined>;
}

/**
 * Callbacks for one watch. Called synchronously once a whole response is applied, before it is
 * ACKed/NACKed; a watch() or cancel made from a callback is sent after that ACK/NACK.
 */
export interface XdsWatcher<T> {
  /** A new or changed value (also called once with the cached value when the watch starts). */
  onChanged(name: string, value: T, version: string): void;
  /** The control plane removed a resource that existed. */
  onRemoved(name: string): void;
  /**
   * The resource does not exist: it did not arrive within the initial fetch timeout, or the
   * control plane said so (SotW LDS/CDS response without it, delta removed_resources). For a
   * wildcard watch the name is '*' and it means no response for the type arrived in time.
   */
  onDoesNotExist(name: string): void;
  /** A new version of this resource was rejected (NACKed); the last accepted value stays in use. */
  onError?(err: XdsResourceError): void;
}

/** Why an update of one resource was rejected. */
export interface XdsResourceError {
  readonly typeUrl: string;
  readonly name: string;
  /** Version of the rejected response. */
  readonly version: string;
  readonly issues: readonly FieldIssue[];
  /** Human-readable, one line per issue, as sent in the NACK. */
  readonly message: string;
}

/** Default resource-name extraction from proto3 JSON. */
export function defaultNameOf(json: Record<string, unknown>): string | undefined {
  const n = json.name ?? json.cluster_name;
  return typeof n === 'string' && n.length > 0 ? n : undefined;
}

/** Short type name for messages: `envoy.config.cluster.v3.Cluster` → `Cluster`. */
export function shortTypeName(typeUrl: string): string {
  const dot = typeUrl.lastIndexOf('.');
  return dot >= 0 ? typeUrl.slice(dot + 1) : typeUrl;
}

/**
 * Order in which subscriptions are (re)sent on a fresh stream, as Envoy does for ADS: clusters
 * before endpoints, listeners before routes, so a control plane can answer in dependency order.
 */
export const SUBSCRIPTION_ORDER: readonly string[] = [
  TYPE_URLS.cluster,
  TYPE_URLS.clusterLoadAssignment,
  TYPE_URLS.listener,
  TYPE_URLS.routeConfiguration,
  TYPE_URLS.secret,
];
