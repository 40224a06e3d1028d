/**
 * Incremental ADS (`DeltaAggregatedResources`): per-resource versions, explicit subscribe and
 * unsubscribe, removed_resources.
 *
 * - The first request of a type on a stream subscribes to the watched names (none for an LDS/CDS
 *   wildcard: the legacy wildcard form) and lists initial_resource_versions for every cached
 *   resource, so the server sends only what changed while the client was away.
 * - Later watch changes send only the difference (resource_names_subscribe/unsubscribe).
 * - ACK: response_nonce; NACK: response_nonce plus error_detail (INVALID_ARGUMENT). Delta requests
 *   carry no version; the cache keeps per-resource versions for the next reconnect.
 * - A Resource with a name but no body is a TTL heartbeat for a resource already held.
 */

import { logger } from '../common/logger';
import { AdsStream, NACK_CODE } from './ads-stream';
import type { TypeState } from './cache';
import { type ParsedResource, parseResource } from './parser';
import type { DeltaDiscoveryRequestProto, DeltaDiscoveryResponseProto } from './protos';
import { shortTypeName } from './resource-types';

export class DeltaStream extends AdsStream<DeltaDiscoveryRequestProto, DeltaDiscoveryResponseProto> {
  /** What the server has been told we subscribe to, per type ('*' = wildcard). */
  private readonly subscribed = new Map<string, Set<string>>();

  private desired(state: TypeState<unknown>): Set<string> {
    const set = new Set(state.names());
    if (state.isWildcard()) set.add('*');
    return set;
  }

  protected subscribe(state: TypeState<unknown>): void {
    const current = this.subscribed.get(state.typeUrl);
    const want = this.desired(state);
    if (!current) {
      if (want.size === 0) return;
      const initial: Record<string, string> = {};
      for (const entry of state.resources.values()) {
        if (entry.value !== undefined && (want.has('*') || want.has(entry.name))) initial[entry.name] = entry.version;
      }
      const req: DeltaDiscoveryRequestProto = {
        type_url: state.typeUrl,
        // Wildcard alone: the legacy form (no names on the first request means "everything").
        resource_names_subscribe: want.size === 1 && want.has('*') ? [] : [...want],
        initial_resource_versions: initial,
      };
      this.subscribed.set(state.typeUrl, want);
      this.sendWithNode(req);
      return;
    }
    const sub: string[] = [];
    const unsub: string[] = [];
    for (const n of want) if (!current.has(n)) sub.push(n);
    for (const n of current) if (!want.has(n)) unsub.push(n);
    if (sub.length === 0 && unsub.length === 0) return;
    this.subscribed.set(state.typeUrl, want);
    this.sendWithNode({ type_url: state.typeUrl, resource_names_subscribe: sub, resource_names_unsubscribe: unsub });
  }

  private sendWithNode(req: DeltaDiscoveryRequestProto): void {
    const node = this.nodeForRequest();
    if (node) req.node = node;
    this.write(req);
  }

  protected onResponse(msg: DeltaDiscoveryResponseProto): void {
    const typeUrl = msg.type_url ?? '';
    const state = this.subs.get(typeUrl);
    if (!state || !this.subscribed.has(typeUrl)) {
      logger('xds').warn({ type: typeUrl }, 'xds: ignoring a delta response for a type that was not requested');
      return;
    }
    this.hooks.onResponse();
    const nonce = msg.nonce ?? '';
    const version = msg.system_version_info ?? '';
    const resources = msg.resources ?? [];
    const parsed: ParsedResource<unknown>[] = [];
    for (let i = 0; i < resources.length; i++) {
      const r = resources[i];
      if (!r.resource && r.name && state.resources.get(r.name)?.value !== undefined) continue; // TTL heartbeat
      parsed.push(parseResource(state.def, i, r.resource, state.cachedBytes, r.name, r.version ?? ''));
    }
    this.afterChecks(state, parsed, () => this.withPause(() => {
      const outcome = this.subs.applyDelta(state, version, parsed, msg.removed_resources ?? []);
      // Watchers apply the change before it is ACKed (an ACK means "applied", as in Envoy).
      this.subs.flush();
      const req: DeltaDiscoveryRequestProto = { type_url: typeUrl, response_nonce: nonce };
      if (!outcome.accepted) req.error_detail = { code: NACK_CODE, message: outcome.message };
      this.sendWithNode(req);
      const log = logger('xds');
      if (outcome.accepted) {
        if (log.isLevelEnabled('debug'))
          log.debug({ type: shortTypeName(typeUrl), nonce, resources: resources.length }, 'xds: delta ACK');
      } else {
        log.warn({ type: shortTypeName(typeUrl), nonce, rejected: outcome.message }, 'xds: delta NACK');
      }
      this.hooks.onUpdate({
        typeUrl,
        accepted: outcome.accepted,
        version,
        nonce,
        message: outcome.message,
        resources: resources.length,
      });
    }));
  }
}
