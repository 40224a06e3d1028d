/**
 * The network RBAC filter (`envoy.extensions.filters.network.rbac.v3.RBAC`): authorizes each
 * connection once, after TLS termination (so the peer's verified SPIFFE ID is known), before the
 * terminal filter sees a byte. A denied connection is closed; counters follow Envoy's
 * `<stat_prefix>.rbac.allowed|denied|shadow_allowed|shadow_denied`.
 *
 * Envoy evaluates ONE_TIME_ON_FIRST_BYTE; meshlet evaluates at hand-over, which sees the same
 * connection facts (addresses, SNI, peer certificate) without waiting for the client to speak, so
 * a server-first protocol is covered too. Header and url_path rules never match here. With
 * shadow_rules, the shadow result goes into the connection's dynamic metadata
 * (`envoy.filters.network.rbac`: `<shadow_rules_stat_prefix>shadow_engine_result` /
 * `…shadow_effective_policy_id`), which Istio's TCP CUSTOM action gates network ext_authz on.
 */
import type { Socket } from 'node:net';
import { RbacEngine } from '../authz/engine';
import { rbacStatsFor } from '../authz/stats';
import type { RbacConfig } from '../config/types';
import type { DownstreamConnectionInfo } from '../http/codec';
import { logger } from '../../common/logger';
import type { NetworkFilter } from './listener';

const log = logger('rbac');

/** The connection dynamic metadata namespace the filter writes (Envoy's filter name). */
export const NETWORK_RBAC_METADATA_NS = 'envoy.filters.network.rbac';

export class NetworkRbacFilter implements NetworkFilter {
  readonly engine: RbacEngine;
  /** Reused evaluation input: connections are evaluated one at a time. */
  private readonly input: { connection: DownstreamConnectionInfo; head: undefined } = {
    connection: undefined as unknown as DownstreamConnectionInfo,
    head: undefined,
  };

  constructor(
    readonly config: RbacConfig,
    readonly filterName = 'envoy.filters.network.rbac',
  ) {
    const name = `${config.statPrefix}.rbac.`;
    this.engine = new RbacEngine(config, rbacStatsFor(name, 'network', `${name}${config.shadowStatPrefix ?? ''}`));
  }

  onNewConnection(_socket: Socket, info: DownstreamConnectionInfo): boolean {
    this.input.connection = info;
    const ok = this.engine.evaluate(this.input);
    this.input.connection = undefined as unknown as DownstreamConnectionInfo;
    if (this.config.shadowRules !== undefined) {
      // Envoy's connection dynamic metadata under envoy.filters.network.rbac (keys prefixed with
      // shadow_rules_stat_prefix): what network ext_authz filter_enabled_metadata matches.
      const e = this.engine;
      const md: Record<string, unknown> = { [e.shadowEngineResultKey]: e.lastShadowAllowed ? 'allowed' : 'denied' };
      if (e.lastShadowPolicy !== undefined) md[e.shadowEffectivePolicyIdKey] = e.lastShadowPolicy;
      (info.dynamicMetadata ??= new Map()).set(NETWORK_RBAC_METADATA_NS, { ...info.dynamicMetadata.get(NETWORK_RBAC_METADATA_NS), ...md });
    }
    if (!ok && log.isLevelEnabled('debug')) {
      log.debug(
        {
          filter: this.filterName,
          conn: info.id,
          remote: info.remoteAddress,
          principal: info.tls?.peerPrincipal,
          policy: this.engine.lastPolicy,
        },
        'RBAC denied the connection',
      );
    }
    return ok;
  }
}
