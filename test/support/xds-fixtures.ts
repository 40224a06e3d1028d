/**
 * Small resource type definitions and helpers for xds-client's own tests (used until the real
 * decoders from proxy/config/envoy/ are wired by the lead). Each validates a field and reports an
 * error with its path, so NACK paths are exercised. Not used by production code.
 */

import type { FieldIssue } from '../../common/errors';
import { jsonToAny } from '../../xds-client/proto-json';
import type { AnyProto } from '../../xds-client/protos';
import { type DecodeResult, type ResourceTypeDef, TYPE_URLS, type XdsWatcher } from '../../xds-client/resource-types';

export interface TestListener {
  readonly name: string;
  readonly port: number;
}
export interface TestRoute {
  readonly name: string;
  readonly domains: readonly string[];
}
export interface TestCluster {
  readonly name: string;
  readonly type: string;
}
export interface TestEndpoints {
  readonly name: string;
  readonly hosts: readonly string[];
}

function result<T>(value: T | undefined, errors: FieldIssue[]): DecodeResult<T> {
  return errors.length > 0 ? { errors, warnings: [] } : { value, errors, warnings: [] };
}

type J = Record<string, any>;

/** Listener: requires address.socket_address.port_value. */
export const listenerType: ResourceTypeDef<TestListener> = {
  typeUrl: TYPE_URLS.listener,
  wildcard: true,
  name: (v) => v.name,
  decode(json) {
    const j = json as J;
    const port = j.address?.socket_address?.port_value;
    const errors: FieldIssue[] = [];
    if (typeof port !== 'number') errors.push({ path: 'address.socket_address.port_value', message: 'required' });
    return result({ name: j.name, port }, errors);
  },
};

/** RouteConfiguration: every virtual host needs at least one domain. */
export const routeType: ResourceTypeDef<TestRoute> = {
  typeUrl: TYPE_URLS.routeConfiguration,
  wildcard: false,
  name: (v) => v.name,
  decode(json) {
    const j = json as J;
    const errors: FieldIssue[] = [];
    const domains: string[] = [];
    (j.virtual_hosts ?? []).forEach((vh: J, i: number) => {
      if (!vh.domains?.length) errors.push({ path: `virtual_hosts[${i}].domains`, message: 'must not be empty' });
      else domains.push(...vh.domains);
    });
    return result({ name: j.name, domains }, errors);
  },
};

/** Cluster: MAGLEV is "unsupported". */
export const clusterType: ResourceTypeDef<TestCluster> = {
  typeUrl: TYPE_URLS.cluster,
  wildcard: true,
  name: (v) => v.name,
  decode(json) {
    const j = json as J;
    const errors: FieldIssue[] = [];
    if (j.lb_policy === 'MAGLEV') errors.push({ path: 'lb_policy', message: 'MAGLEV is not supported' });
    return result({ name: j.name, type: j.type ?? 'STATIC' }, errors);
  },
};

/** ClusterLoadAssignment: collects host addresses. */
export const endpointsType: ResourceTypeDef<TestEndpoints> = {
  typeUrl: TYPE_URLS.clusterLoadAssignment,
  wildcard: false,
  name: (v) => v.name,
  decode(json) {
    const j = json as J;
    const hosts: string[] = [];
    for (const le of j.endpoints ?? []) {
      for (const lb of le.lb_endpoints ?? []) {
        const sa = lb.endpoint?.address?.socket_address;
        hosts.push(`${sa?.address}:${sa?.port_value}`);
      }
    }
    return result({ name: j.cluster_name, hosts }, []);
  },
};

// ───────── resource builders (proto3 JSON → Any) ─────────

export function listenerAny(name: string, port?: number): AnyProto {
  const json: J = { '@type': TYPE_URLS.listener, name };
  if (port !== undefined) json.address = { socket_address: { address: '0.0.0.0', port_value: port } };
  return jsonToAny(json);
}

export function routeAny(name: string, domains: string[]): AnyProto {
  return jsonToAny({ '@type': TYPE_URLS.routeConfiguration, name, virtual_hosts: [{ name: 'vh', domains }] });
}

export function clusterAny(name: string, lbPolicy = 'ROUND_ROBIN'): AnyProto {
  return jsonToAny({ '@type': TYPE_URLS.cluster, name, type: 'EDS', lb_policy: lbPolicy, connect_timeout: '1s' });
}

export function endpointsAny(name: string, hosts: string[]): AnyProto {
  return jsonToAny({
    '@type': TYPE_URLS.clusterLoadAssignment,
    cluster_name: name,
    endpoints: [
      {
        lb_endpoints: hosts.map((h) => {
          const [address, port] = h.split(':');
          return { endpoint: { address: { socket_address: { address, port_value: Number(port) } } } };
        }),
      },
    ],
  });
}

// ───────── a recording watcher ─────────

export type WatchEvent<T> =
  | { kind: 'changed'; name: string; value: T; version: string }
  | { kind: 'removed'; name: string }
  | { kind: 'missing'; name: string }
  | { kind: 'error'; name: string; message: string };

/** A watcher that records every callback and lets a test await the next one. */
export class RecordingWatcher<T> implements XdsWatcher<T> {
  readonly events: WatchEvent<T>[] = [];
  private waiters: Array<() => void> = [];
  private consumed = 0;

  onChanged(name: string, value: T, version: string): void {
    this.push({ kind: 'changed', name, value, version });
  }
  onRemoved(name: string): void {
    this.push({ kind: 'removed', name });
  }
  onDoesNotExist(name: string): void {
    this.push({ kind: 'missing', name });
  }
  onError(err: { name: string; message: string }): void {
    this.push({ kind: 'error', name: err.name, message: err.message });
  }

  private push(e: WatchEvent<T>): void {
    this.events.push(e);
    for (const w of this.waiters.splice(0)) w();
  }

  /** The next event not yet returned, waiting up to timeoutMs. */
  async next(timeoutMs = 5000): Promise<WatchEvent<T>> {
    const deadline = Date.now() + timeoutMs;
    while (this.consumed >= this.events.length) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`watcher: no event within ${timeoutMs} ms (had ${this.events.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.events[this.consumed++];
  }

  /** Events not yet returned by next(). */
  pending(): WatchEvent<T>[] {
    return this.events.slice(this.consumed);
  }
}
