/**
 * RBAC config (part of the config model; proxy/config/types.ts re-exports every area): policies,
 * permissions and principals shared by the HTTP and network RBAC filters, and the metadata and
 * value matchers they (and ext_authz's filter_enabled_metadata) use.
 */
import type { StringMatcher } from '../../../common/config-types';
import type { CidrRange } from './address';
import type { HeaderMatcher } from './route';

/** envoy.config.rbac.v3.RBAC (shared by the HTTP and network filters). */
export interface RbacConfig {
  /** undefined rules = allow everything (Envoy semantics when `rules` is unset). */
  readonly rules?: { readonly action: 'ALLOW' | 'DENY' | 'LOG'; readonly policies: readonly RbacPolicy[] };
  readonly shadowRules?: { readonly action: 'ALLOW' | 'DENY' | 'LOG'; readonly policies: readonly RbacPolicy[] };
  readonly statPrefix: string;
  /**
   * shadow_rules_stat_prefix: prefixes the shadow counters (`…rbac.<prefix>shadow_allowed`) and the
   * shadow result keys in dynamic metadata (`<prefix>shadow_engine_result`), as in Envoy.
   */
  readonly shadowStatPrefix?: string;
}

export interface RbacPolicy {
  readonly name: string;
  readonly permissions: readonly RbacPermission[];
  readonly principals: readonly RbacPrincipal[];
}

export type RbacPermission =
  | { readonly kind: 'any' }
  | { readonly kind: 'and'; readonly rules: readonly RbacPermission[] }
  | { readonly kind: 'or'; readonly rules: readonly RbacPermission[] }
  | { readonly kind: 'not'; readonly rule: RbacPermission }
  | { readonly kind: 'header'; readonly header: HeaderMatcher }
  | { readonly kind: 'url_path'; readonly matcher: StringMatcher }
  | { readonly kind: 'destination_ip'; readonly cidr: CidrRange }
  | { readonly kind: 'destination_port'; readonly port: number }
  | { readonly kind: 'requested_server_name'; readonly matcher: StringMatcher }
  | { readonly kind: 'metadata'; readonly matcher: MetadataMatcher };

/** envoy.type.matcher.v3.ValueMatcher over a google.protobuf.Value (in its JSON form). */
export type ValueMatcher =
  | { readonly kind: 'null' }
  | { readonly kind: 'double'; readonly exact?: number; readonly start?: number; readonly end?: number }
  | { readonly kind: 'string'; readonly matcher: StringMatcher }
  | { readonly kind: 'bool'; readonly value: boolean }
  | { readonly kind: 'present'; readonly value: boolean }
  | { readonly kind: 'list'; readonly oneOf: ValueMatcher }
  | { readonly kind: 'or'; readonly matchers: readonly ValueMatcher[] };

/**
 * envoy.type.matcher.v3.MetadataMatcher: the value at `path` (struct keys) in the `filter`
 * namespace of the stream's dynamic metadata, e.g. jwt_authn's verified payload.
 */
export interface MetadataMatcher {
  readonly filter: string;
  readonly path: readonly string[];
  readonly value: ValueMatcher;
  readonly invert: boolean;
}

export type RbacPrincipal =
  | { readonly kind: 'any' }
  | { readonly kind: 'and'; readonly ids: readonly RbacPrincipal[] }
  | { readonly kind: 'or'; readonly ids: readonly RbacPrincipal[] }
  | { readonly kind: 'not'; readonly id: RbacPrincipal }
  | { readonly kind: 'authenticated'; readonly principalName?: StringMatcher }
  | { readonly kind: 'direct_remote_ip' | 'remote_ip' | 'source_ip'; readonly cidr: CidrRange }
  | { readonly kind: 'header'; readonly header: HeaderMatcher }
  | { readonly kind: 'url_path'; readonly matcher: StringMatcher }
  /** filter_state over Istio's principal keys (what istio_authn puts there from the mTLS peer). */
  | { readonly kind: 'filter_state'; readonly key: IstioPrincipalKey; readonly matcher: StringMatcher }
  | { readonly kind: 'metadata'; readonly matcher: MetadataMatcher };

/** The filter state keys istio_authn sets on an mTLS connection. */
export type IstioPrincipalKey = 'io.istio.peer_principal' | 'io.istio.local_principal';
