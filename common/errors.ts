/**
 * meshlet's error classes and response flags: one place, stable codes.
 *
 * Control-plane code (config loading, xDS decoding) throws these. Data-plane code never throws on
 * bad traffic: it maps failures to a status code and an Envoy response flag (see RESPONSE_FLAGS)
 * and keeps going. Every code is listed in docs/errors.md.
 */

/**
 * Every code meshlet throws. Each is raised somewhere (test/ship/docs.test.ts checks) and listed,
 * with where it is raised, in docs/errors.md. Data-plane failures have no code: they are status
 * codes plus the response flags below.
 */
export const ERROR_CODES = [
  /** Invalid configuration other than the bootstrap: CLI options, the mesh file, the CA directory. */
  'MESHLET_ERR_CONFIG',
  /** The bootstrap cannot be read, parsed or validated. */
  'MESHLET_ERR_BOOTSTRAP',
  /** An xDS resource cannot be converted from protobuf. */
  'MESHLET_ERR_XDS_RESOURCE',
  /** A limit was exceeded (HTTP/2 flood protection). */
  'MESHLET_ERR_OVERFLOW',
  /** A cluster named by configuration does not exist (an xDS gRPC service's cluster). */
  'MESHLET_ERR_NO_CLUSTER',
  /** Refused by policy (the development CA refusing a CSR). */
  'MESHLET_ERR_DENIED',
  /** A bug or misuse inside meshlet. */
  'MESHLET_ERR_INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class MeshletError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MeshletError';
    this.code = code;
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
  /** The warnings found in the same pass (printed with the errors, e.g. by `--validate`). */
  readonly warnings: readonly FieldIssue[];
  constructor(
    what: string,
    issues: readonly FieldIssue[],
    code: ErrorCode = 'MESHLET_ERR_CONFIG',
    warnings: readonly FieldIssue[] = [],
  ) {
    super(code, `${what}: ${issues.length} invalid field${issues.length === 1 ? '' : 's'}\n${formatIssues(issues)}`);
    this.name = 'ConfigError';
    this.issues = issues;
    this.warnings = warnings;
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
  /** Upstream max stream duration reached (Envoy's meaning); meshlet does not set it today. */
  UMSDR: 'UMSDR',
  /** Direct response. */
  DR: 'DR',
} as const;

export type ResponseFlag = keyof typeof RESPONSE_FLAGS;
