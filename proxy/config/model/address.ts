/**
 * Addresses in the config model (proxy/config/types.ts re-exports every area): a listener or
 * endpoint address and a CIDR range (filter chain matches, RBAC, listener matchers).
 */

/** A listener or endpoint address (envoy.config.core.v3.Address). */
export type Address =
  | {
      readonly kind: 'socket';
      readonly host: string;
      readonly port: number;
      /** socket_address.ipv4_compat: an IPv6 listener on "::" also accepts IPv4 (Envoy default false). */
      readonly ipv4Compat?: boolean;
    }
  | { readonly kind: 'pipe'; readonly path: string };

export interface CidrRange {
  readonly addressPrefix: string;
  readonly prefixLen: number;
}
