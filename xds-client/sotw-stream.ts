/**
 * State-of-the-world ADS (`StreamAggregatedResources`): per type, the version_info of the last
 * accepted response and the nonce of the last response seen on this stream.
 *
 * - ACK: next request with the new version_info and that response's nonce.
 * - NACK: the same nonce, the previous accepted version_info, and error_detail (INVALID_ARGUMENT,
 *   one line per bad resource, naming its field path and the problem).
 * - Subscription changes reuse the last accepted version and last nonce. An LDS/CDS wildcard alone
 *   is sent as the legacy empty resource_names list; with specific names next to it, or after
 *   names were listed, it is spelled '*' (Envoy ≥ 1.21). Unsubscribing from everything is an
 *   empty list for a type that is no longer watched.
 * - A response for a type never requested on this stream is ignored and not ACKed (as Envoy does).
 *
 * On a new stream the first request of each type carries the last accepted version_info, so a
 * control plane can skip resending what the client already has.
 */

import { logger } from '../common/logger';
import { AdsStream, NACK_CODE } from './ads-stream';
import type { TypeState } from './cache';
import { type ParsedResource, parseResource } from './parser';
import type { DiscoveryRequestProto, DiscoveryResponseProto } from './protos';
import { shortTypeName } from './resource-types';

export class SotwStream extends AdsStream<DiscoveryRequestProto, DiscoveryResponseProto> {
  /** Nonce of the last response per type on this stream. */
  private readonly nonces = new Map<string, string>();
  /** Types with at least one request on this stream. */
  private readonly requested = new Set<string>();

  /** Types for which this stream has sent explicit names (so an empty list would unsubscribe). */
  private readonly explicit = new Set<string>();

  /**
   * resource_names as Envoy sends them: a wildcard-only subscription uses the legacy empty list
   * while it can; once names were listed on this stream, or when specific names are watched next
   * to the wildcard, the wildcard is spelled '*'.
   */
  private namesFor(state: TypeState<unknown>): string[] {
    const specific = state.names();
    if (!state.isWildcard()) {
      if (specific.length > 0) this.explicit.add(state.typeUrl);
      return specific;
    }
    if (specific.length === 0 && !this.explicit.has(state.typeUrl)) return [];
    this.explicit.add(state.typeUrl);
    return ['*', ...specific];
  }

  protected subscribe(state: TypeState<unknown>): void {
    if (!state.isSubscribed() && !this.requested.has(state.typeUrl)) return;
    this.send(state);
  }

  private send(state: TypeState<unknown>, errorMessage?: string): void {
    const req: DiscoveryRequestProto = {
      version_info: state.acceptedVersion,
      resource_names: this.namesFor(state),
      type_url: state.typeUrl,
      response_nonce: this.nonces.get(state.typeUrl) ?? '',
    };
    const node = this.nodeForRequest();
    if (node) req.node = node;
    if (errorMessage !== undefined) req.error_detail = { code: NACK_CODE, message: errorMessage };
    this.requested.add(state.typeUrl);
    this.write(req);
  }

  protected onResponse(msg: DiscoveryResponseProto): void {
    const typeUrl = msg.type_url ?? '';
    const state = this.subs.get(typeUrl);
    if (!state || !this.requested.has(typeUrl)) {
      logger('xds').warn({ type: typeUrl }, 'xds: ignoring a response for a type that was not requested');
      return;
    }
    this.hooks.onResponse();
    const version = msg.version_info ?? '';
    const nonce = msg.nonce ?? '';
    const resources = msg.resources ?? [];
    const parsed: ParsedResource<unknown>[] = new Array(resources.length);
    for (let i = 0; i < resources.length; i++) parsed[i] = parseResource(state.def, i, resources[i], state.cachedBytes);
    this.afterChecks(state, parsed, () => this.withPause(() => {
      const outcome = this.subs.applySotw(state, version, parsed);
      // Watchers apply the change before it is ACKed (an ACK means "applied", as in Envoy).
      this.subs.flush();
      this.nonces.set(typeUrl, nonce);
      this.send(state, outcome.accepted ? undefined : outcome.message);
      const log = logger('xds');
      if (outcome.accepted) {
        if (log.isLevelEnabled('debug'))
          log.debug({ type: shortTypeName(typeUrl), version, nonce, resources: resources.length }, 'xds: ACK');
      } else {
        log.warn({ type: shortTypeName(typeUrl), version, nonce, rejected: outcome.message }, 'xds: NACK');
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
