/**
 * meshlet's error classes: one place, stable codes, a small `kind` for metric labels.
 *
 * Control-plane code (config loading, xDS decoding) throws these. Data-plane code never throws on
 * bad traffic: it maps failures to a status code and an Envoy response flag (see RESPONSE_FLAGS)
 * and keeps going. Every code is listed in docs/errors.md.
 */

/** Coarse error kinds, used as a bounded metric label (linkerd2-proxy's `error` label idea). */
export type ErrorKind =
  | 'config'
  | 'connect'
  | 'timeout'
  | 'reset'
  | 'protocol'
  | 'tls'
  | 'overload'
  | 'no_healthy_upstream'
  | 'no_route'
  | 'denied'
  | 'internal';

export const ERROR_CODES = {
  MESHLET_ERR_CONFIG: 'config',
  MESHLET_ERR_BOOTSTRAP: 'config',
  MESHLET_ERR_XDS_RESOURCE: 'config',
  MESHLET_ERR_CONNECT_TIMEOUT: 'connect',
  MESHLET_ERR_CONNECT_REFUSED: 'connect',
  MESHLET_ERR_UPSTREAM_RESET: 'reset',
  MESHLET_ERR_DOWNSTREAM_RESET: 'reset',
  MESHLET_ERR_ROUTE_TIMEOUT: 'timeout',
  MESHLET_ERR_PER_TRY_TIMEOUT: 'timeout',
  MESHLET_ERR_IDLE_TIMEOUT: 'timeout',
  MESHLET_ERR_HTTP_PARSE: 'protocol',
  MESHLET_ERR_UPSTREAM_PROTOCOL: 'protocol',
  MESHLET_ERR_TLS_HANDSHAKE: 'tls',
  MESHLET_ERR_TLS_PEER_IDENTITY: 'tls',
  MESHLET_ERR_OVERFLOW: 'overload',
  MESHLET_ERR_NO_HEALTHY_UPSTREAM: 'no_healthy_upstream',
  MESHLET_ERR_NO_ROUTE: 'no_route',
  MESHLET_ERR_NO_CLUSTER: 'no_route',
  MESHLET_ERR_DENIED: 'denied',
  MESHLET_ERR_INTERNAL: 'internal',
} as const satisfies Record<string, ErrorKind>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class MeshletError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MeshletError';
    this.code = code;
    this.kind = ERROR_CODES[code];
  }
}

/** One validation problem: a dotted/indexed path into the input and what is wrong there. */
export interface FieldIssue {
  readonly path: string;
  readonly message: string;
}

/** Thrown by config loaders after collecting every field error (style rule 1). */
export class ConfigError extends MeshletError {
  readonly issues: readonly FieldIssue[];
  constructor(what: string, issues: readonly FieldIssue[], code: ErrorCode = 'MESHLET_ERR_CONFIG') {
    super(code, `${what}: ${issues.length} invalid field${issues.length === 1 ? '' : 's'}\n${formatIssues(issues)}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export function formatIssues(issues: readonly FieldIssue[]): string {
  return issues.map((i) => `  ${i.path}: ${i.message}`).join('\n');
}

/**
 * Envoy response flags (the short form used in access logs and the `response_flags` metric label).
 * Only the ones meshlet can produce are listed.
 */
export const RESPONSE_FLAGS = {
  /** Upstream connection failure (503). */
  UF: 'UF',
  /** No healthy upstream host (503). */
  UH: 'UH',
  /** Upstream request timeout (504). */
  UT: 'UT',
  /** Upstream overflow: circuit breaker open (503). */
  UO: 'UO',
  /** Upstream retry limit exceeded. */
  URX: 'URX',
  /** Upstream remote reset. */
  UR: 'UR',
  /** Downstream connection termination. */
  DC: 'DC',
  /** No route found (404). */
  NR: 'NR',
  /** No cluster found for the route (503). */
  NC: 'NC',
  /** Upstream protocol error (502). */
  UPE: 'UPE',
  /** Downstream protocol error (400). */
  DPE: 'DPE',
  /** Request rate limited locally (429). */
  RL: 'RL',
  /** Unauthorized by RBAC (403). */
  RBAC: 'RBAC',
  /** Request denied (or failed) by the external authorization service (ext_authz). */
  UAEX: 'UAEX',
  /** The rate limit service failed and failure_mode_deny rejected the request (500). */
  RLSE: 'RLSE',
  /** Fault injection: aborted. */
  FI: 'FI',
  /** Fault injection: delayed. */
  DI: 'DI',
  /** Stream idle timeout. */
  SI: 'SI',
  /** Upstream TLS/identity verification failure. */
  UMSDR: 'UMSDR',
  /** Direct response. */
  DR: 'DR',
} as const;

export type ResponseFlag = keyof typeof RESPONSE_FLAGS;
