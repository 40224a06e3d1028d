/**
 * The resource cache's shapes: one TypeState per registered resource type (its watchers, cached
 * resources with their accepted versions and error state, counters). Plain data with a few
 * queries; the rules that change it live in subscriptions.ts.
 *
 * Leans towards outliving streams: nothing here is per connection.
 */

import type { ResourceTypeDef, XdsWatcher } from './resource-types';

/** Envoy's ClientResourceStatus for /config_dump. */
export type ClientStatus = 'REQUESTED' | 'DOES_NOT_EXIST' | 'ACKED' | 'NACKED';

/** A rejected update of one resource (Envoy's UpdateFailureState). */
export interface ErrorState {
  readonly failedVersion: string;
  readonly details: string;
  readonly lastUpdateAttempt: Date;
  /** The rejected bytes, when they could be read. */
  readonly failedRaw?: Buffer;
}

/** One cached resource. */
export interface CachedResource<T> {
  readonly name: string;
  value?: T;
  raw?: Buffer;
  /** Version of the accepted value (SotW: response version_info; delta: per-resource version). */
  version: string;
  lastUpdated?: Date;
  status: ClientStatus;
  errorState?: ErrorState;
  timer?: NodeJS.Timeout;
}

/** Per-type counters for metrics (Envoy's `<type>.update_*`). */
export interface TypeCounters {
  updateAttempt: number;
  updateSuccess: number;
  updateRejected: number;
}

/** Everything known about one resource type. */
export class TypeState<T> {
  readonly wildcardWatchers = new Set<XdsWatcher<T>>();
  readonly watchers = new Map<string, Set<XdsWatcher<T>>>();
  readonly resources = new Map<string, CachedResource<T>>();
  /** SotW: version_info of the last accepted response. Delta: last system_version_info seen. */
  acceptedVersion = '';
  lastUpdated?: Date;
  /** The last rejected response, for /config_dump. */
  lastError?: ErrorState;
  /** A response for this type has arrived on some stream. */
  receivedResponse = false;
  wildcardTimer?: NodeJS.Timeout;
  /** Fed by a file (path_config_source), never requested on an ADS stream. */
  external = false;
  readonly counters: TypeCounters = { updateAttempt: 0, updateSuccess: 0, updateRejected: 0 };

  constructor(readonly def: ResourceTypeDef<T>) {}

  get typeUrl(): string {
    return this.def.typeUrl;
  }

  /** Someone watches this type. */
  isSubscribed(): boolean {
    return this.wildcardWatchers.size > 0 || this.watchers.size > 0;
  }

  /** Subscribed to every resource of the type. */
  isWildcard(): boolean {
    return this.def.wildcard && this.wildcardWatchers.size > 0;
  }

  /** Resources of this name are of interest (anything else in a response is ignored). */
  wants(name: string): boolean {
    return this.isWildcard() || this.watchers.has(name);
  }

  /** Explicitly named subscriptions (excluding '*'). */
  names(): string[] {
    return [...this.watchers.keys()];
  }

  /** Cached bytes of an accepted resource, for change detection. */
  readonly cachedBytes = (name: string): Buffer | undefined => this.resources.get(name)?.raw;
}
