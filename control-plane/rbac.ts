/**
 * Authorization rules of the mesh file → Envoy RBAC filter configs (HTTP and network), the way
 * Istio translates AuthorizationPolicy: DENY rules become a DENY filter placed before the ALLOW
 * filter; when any ALLOW rule targets a workload, everything not allowed is denied.
 *
 * Leans fail-closed: a rule that uses HTTP-only fields (paths) on a tcp port is dropped when it
 * ALLOWs (fewer things allowed) and widened to the whole port when it DENYs (more things denied),
 * exactly as Istio does.
 */
import type { AuthzRule, AuthzSource, Mesh, MeshWorkload, PortProtocol } from './mesh';

type Json = Record<string, unknown>;

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function principal(mesh: Mesh, src: AuthzSource): Json {
  switch (src.kind) {
    case 'any':
      return { any: true };
    case 'service_account':
    case 'principal':
      return { authenticated: { principal_name: { exact: src.spiffeId } } };
    case 'namespace':
      return {
        authenticated: {
          principal_name: {
            safe_regex: {
              regex: `spiffe://${escapeRegex(mesh.trustDomain)}/ns/${escapeRegex(src.namespace)}/sa/[^/]+`,
            },
          },
        },
      };
  }
}

function policyFor(mesh: Mesh, rule: AuthzRule, http: boolean): Json {
  const permissions: Json[] =
    http && rule.paths.length > 0
      ? [{ or_rules: { rules: rule.paths.map((p) => ({ url_path: { path: { prefix: p } } })) } }]
      : [{ any: true }];
  const principals = rule.from.length > 0 ? rule.from.map((f) => principal(mesh, f)) : [{ not_id: { any: true } }];
  return { permissions, principals };
}

/** The rules that target `w`'s service, split by action, adjusted for the port's protocol. */
function rulesFor(mesh: Mesh, w: MeshWorkload, protocol: PortProtocol): { allow: AuthzRule[]; deny: AuthzRule[] } {
  const http = protocol !== 'tcp';
  const mine = mesh.authorization.filter((r) => r.service === w.service && r.namespace === w.namespace);
  const allow = mine.filter((r) => r.action === 'ALLOW' && (http || r.paths.length === 0));
  const deny = mine
    .filter((r) => r.action === 'DENY')
    .map((r) => (http || r.paths.length === 0 ? r : { ...r, paths: [] }));
  return { allow, deny };
}

function rbacRules(mesh: Mesh, action: 'ALLOW' | 'DENY', rules: readonly AuthzRule[], http: boolean): Json {
  const policies: Record<string, Json> = {};
  for (const r of rules) policies[`ns[${r.namespace}]-policy[${r.name}]`] = policyFor(mesh, r, http);
  return { action, policies };
}

/**
 * RBAC configs for `w`'s inbound chain on a port of `protocol`, in filter order (DENY first).
 * Empty when no rule targets the workload (everything allowed, mTLS still required).
 */
export function rbacFilterConfigs(
  mesh: Mesh,
  w: MeshWorkload,
  protocol: PortProtocol,
): { action: 'ALLOW' | 'DENY'; rules: Json }[] {
  const http = protocol !== 'tcp';
  const { allow, deny } = rulesFor(mesh, w, protocol);
  // Any ALLOW rule (even one dropped for tcp) turns the workload default-deny.
  const anyAllow = mesh.authorization.some(
    (r) => r.service === w.service && r.namespace === w.namespace && r.action === 'ALLOW',
  );
  const out: { action: 'ALLOW' | 'DENY'; rules: Json }[] = [];
  if (deny.length > 0) out.push({ action: 'DENY', rules: rbacRules(mesh, 'DENY', deny, http) });
  // An ALLOW filter with no policies denies everything: Envoy semantics, and what Istio emits.
  if (anyAllow) out.push({ action: 'ALLOW', rules: rbacRules(mesh, 'ALLOW', allow, http) });
  return out;
}

/** `envoy.filters.http.rbac` entries for an HCM's http_filters. */
export function httpRbacFilters(mesh: Mesh, w: MeshWorkload, protocol: PortProtocol): Json[] {
  return rbacFilterConfigs(mesh, w, protocol).map((c, i) => ({
    name: i === 0 ? 'envoy.filters.http.rbac' : `envoy.filters.http.rbac.${c.action.toLowerCase()}`,
    typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC', rules: c.rules },
  }));
}

/** `envoy.filters.network.rbac` entries placed before tcp_proxy. */
export function networkRbacFilters(mesh: Mesh, w: MeshWorkload, statPrefix: string): Json[] {
  return rbacFilterConfigs(mesh, w, 'tcp').map((c, i) => ({
    name: i === 0 ? 'envoy.filters.network.rbac' : `envoy.filters.network.rbac.${c.action.toLowerCase()}`,
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC',
      stat_prefix: `${statPrefix}.`,
      rules: c.rules,
    },
  }));
}
