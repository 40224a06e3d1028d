/**
 * The HTTP RBAC filter, `envoy.extensions.filters.http.rbac.v3.RBAC` (Envoy's
 * envoy.filters.http.rbac), and its per-route override `RBACPerRoute`.
 *
 * On request headers it evaluates shadow rules (counted,
 * `http.<stat_prefix>.rbac.<shadow_rules_stat_prefix>shadow_*`,
 * and recorded in dynamic metadata `envoy.filters.http.rbac` as
 * `<shadow_rules_stat_prefix>shadow_engine_result` / `…shadow_effective_policy_id`) and the
 * enforced rules through the shared engine in proxy/authz; a denied request gets Envoy's local
 * reply, 403 `RBAC: access denied` with response flag RBAC and details
 * `rbac_access_denied_matched_policy[<policy>|none]`. A route's typed_per_filter_config
 * RBACPerRoute replaces the filter's config for that route; an RBACPerRoute without `rbac`
 * disables the filter there (Envoy semantics).
 *
 * Leans fail-closed on config (unsupported matchers are errors in proxy/config/envoy/rbac.ts) and
 * lean on the data plane: one small filter object per stream, the engine is built once per config.
 */

import { type AuthzInput, RbacEngine } from '../../authz/engine';
import type { DynamicMetadataReader } from '../../authz/metadata-match';
import { rbacStatsFor } from '../../authz/stats';
import type { DecodeContext } from '../../config/envoy/context';
import { decodeRbac } from '../../config/envoy/rbac';
import type { Reader } from '../../../common/reader';
import type { RbacConfig } from '../../config/types';
import { MeshletError } from '../../../common/errors';
import type { DownstreamConnectionInfo, RequestHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';

export const RBAC_TYPE_NAME = 'envoy.extensions.filters.http.rbac.v3.RBAC';
export const RBAC_PER_ROUTE_TYPE_NAME = 'envoy.extensions.filters.http.rbac.v3.RBACPerRoute';
/** The dynamic metadata namespace the filter writes (Envoy's filter name). */
export const RBAC_METADATA_NS = 'envoy.filters.http.rbac';

/** Decoded HTTP RBAC filter config (rules_stat_prefix is RbacConfig.statPrefix). */
export type HttpRbacConfig = RbacConfig;

/** Decoded RBACPerRoute: `undefined` engine disables RBAC on the route. */
export interface HttpRbacPerRoute {
  readonly kind: 'rbac_per_route';
  readonly config: HttpRbacConfig | undefined;
}

// decodeRbac takes a DecodeContext for symmetry with the other decoders but reads nothing from it.
const NO_CONTEXT = {} as DecodeContext;

/**
 * The filter's counters under Envoy's names, in its connection manager's scope:
 * `http.<stat_prefix>.rbac.<rules_stat_prefix>allowed|denied` and
 * `http.<stat_prefix>.rbac.<shadow_rules_stat_prefix>shadow_allowed|shadow_denied`.
 */
function statsOf(cfg: RbacConfig, hcmStatPrefix: string) {
  const base = `http.${hcmStatPrefix}.rbac.`;
  return rbacStatsFor(`${base}${cfg.statPrefix}`, 'http', `${base}${cfg.shadowStatPrefix ?? ''}`);
}

function decodeHttpRbac(r: Reader): HttpRbacConfig {
  const rbac = decodeRbac(r, NO_CONTEXT, { statPrefixKey: 'rules_stat_prefix' });
  r.done();
  return rbac;
}

/**
 * One engine per decoded config and connection manager (whose stat_prefix scopes the counters),
 * built on first use, so every stream of every connection shares counters; the config itself
 * stays plain data (config diffs compare it structurally). A per-route config shared by several
 * connection managers gets one engine per manager.
 */
const engines = new WeakMap<RbacConfig, { hcm: string; engine: RbacEngine; others?: Map<string, RbacEngine> }>();
export function httpRbacEngine(cfg: RbacConfig, hcmStatPrefix: string): RbacEngine {
  const slot = engines.get(cfg);
  if (slot === undefined) {
    const engine = new RbacEngine(cfg, statsOf(cfg, hcmStatPrefix));
    engines.set(cfg, { hcm: hcmStatPrefix, engine });
    return engine;
  }
  if (slot.hcm === hcmStatPrefix) return slot.engine;
  let e = slot.others?.get(hcmStatPrefix);
  if (e === undefined) {
    e = new RbacEngine(cfg, statsOf(cfg, hcmStatPrefix));
    (slot.others ??= new Map()).set(hcmStatPrefix, e);
  }
  return e;
}

function decodePerRoute(r: Reader): HttpRbacPerRoute {
  const inner = r.obj('rbac');
  const config = inner ? decodeHttpRbac(inner) : undefined;
  r.done();
  return Object.freeze({ kind: 'rbac_per_route', config });
}

/** The per-stream filter: one evaluation at request headers. */
class HttpRbacFilter implements HttpFilter, AuthzInput {
  head: RequestHead | undefined = undefined;
  readonly connection: DownstreamConnectionInfo;

  constructor(
    private readonly config: HttpRbacConfig,
    private readonly cb: HttpFilterCallbacks,
  ) {
    this.connection = cb.connection;
  }

  get remoteIp(): string | undefined {
    return this.cb.trustedRemoteAddress;
  }

  readonly dynamicMetadata: DynamicMetadataReader = (ns) => this.cb.dynamicMetadataOf?.(ns);

  decodeHeaders(head: RequestHead): FilterStatus {
    let cfg: HttpRbacConfig | undefined = this.config;
    const per = this.cb.perRouteConfig() as HttpRbacPerRoute | undefined;
    if (per !== undefined && per.kind === 'rbac_per_route') cfg = per.config;
    if (cfg === undefined) return FilterStatus.Continue;
    this.head = head;
    const engine = httpRbacEngine(cfg, this.cb.hcm.statPrefix);
    const ok = engine.evaluate(this);
    this.head = undefined;
    if (cfg.shadowRules !== undefined) {
      // Envoy's dynamic metadata under envoy.filters.http.rbac, keys prefixed with
      // shadow_rules_stat_prefix: what ext_authz filter_enabled_metadata (Istio's CUSTOM action)
      // and RBAC metadata matchers read. The policy id only when a shadow policy matched.
      const result = engine.lastShadowAllowed ? 'allowed' : 'denied';
      this.cb.setDynamicMetadata?.(RBAC_METADATA_NS, engine.shadowEngineResultKey, result);
      this.cb.setMetadata('envoy.filters.http.rbac.shadow_engine_result', result);
      if (engine.lastShadowPolicy !== undefined) {
        this.cb.setDynamicMetadata?.(RBAC_METADATA_NS, engine.shadowEffectivePolicyIdKey, engine.lastShadowPolicy);
        this.cb.setMetadata('envoy.filters.http.rbac.shadow_effective_policy_id', engine.lastShadowPolicy);
      }
    }
    if (ok) return FilterStatus.Continue;
    // Only denials record the enforced policy: an allowed request allocates nothing here.
    if (engine.lastPolicy !== undefined) {
      this.cb.setMetadata('envoy.filters.http.rbac.enforced_effective_policy_id', engine.lastPolicy);
    }
    this.cb.sendLocalReply(
      403,
      'RBAC: access denied',
      undefined,
      'RBAC',
      `rbac_access_denied_matched_policy[${engine.lastPolicy ?? 'none'}]`,
    );
    return FilterStatus.StopIteration;
  }
}

export const rbacFilterFactory: HttpFilterFactory<HttpRbacConfig> = {
  typeName: RBAC_TYPE_NAME,
  decode: decodeHttpRbac,
  decodePerRoute(r: Reader): unknown {
    // Envoy only accepts RBACPerRoute here; the registry routes that type to rbacPerRouteFactory.
    r.issues.error(r.path, `use ${RBAC_PER_ROUTE_TYPE_NAME} for per-route RBAC configuration`);
    return undefined;
  },
  create(config: HttpRbacConfig, callbacks: HttpFilterCallbacks): HttpFilter {
    return new HttpRbacFilter(config, callbacks);
  },
};

/**
 * Registered under the RBACPerRoute type so typed_per_filter_config entries of that type decode.
 * It is not a filter: naming it in http_filters is a config error.
 */
export const rbacPerRouteFactory: HttpFilterFactory<undefined> = {
  typeName: RBAC_PER_ROUTE_TYPE_NAME,
  decode(r: Reader): undefined {
    r.issues.error(
      r.sub('@type'),
      `${RBAC_PER_ROUTE_TYPE_NAME} is only valid in typed_per_filter_config; use ${RBAC_TYPE_NAME}`,
    );
    return undefined;
  },
  decodePerRoute,
  create(): HttpFilter {
    throw new MeshletError('MESHLET_ERR_INTERNAL', 'RBACPerRoute is not an HTTP filter');
  },
};
