/**
 * Entry points of the Envoy v3 decoders, shared by the bootstrap loader and the xDS client:
 * one function per xDS resource type taking raw proto3-JSON input. Each returns every error and
 * warning with a path relative to the resource (the xDS client prefixes `Listener "name": `),
 * and a deep-frozen value only when there were no errors (a NACK keeps the last good config).
 */
import type { FieldIssue } from '../../../common/errors';
import { Issues, Reader } from '../../../common/reader';
import type { ClusterConfig, ClusterLoadAssignment, ListenerConfig, RouteConfiguration, SecretConfig } from '../types';
import { decodeClusterR } from './cluster';
import type { DecodeContext } from './context';
import { decodeClusterLoadAssignmentR } from './endpoint';
import { deepFreeze } from './freeze';
import { decodeListenerR } from './listener';
import { decodeRouteConfigurationR } from './route';
import { decodeSecretR } from './secret';

export interface DecodeResult<T> {
  /** Present (and deep-frozen) only when `errors` is empty. */
  readonly value?: T;
  readonly errors: FieldIssue[];
  readonly warnings: FieldIssue[];
}

/**
 * Drops warnings at a path that already has an error: a field rejected as unsupported should not
 * also be reported as "ignored" by Reader.done().
 */
export function settleWarnings(issues: Issues): FieldIssue[] {
  if (issues.errors.length === 0) return issues.warnings;
  const errored = new Set(issues.errors.map((e) => e.path));
  return issues.warnings.filter((w) => !errored.has(w.path));
}

function run<T>(
  raw: unknown,
  ctx: DecodeContext,
  decode: (r: Reader, ctx: DecodeContext) => T | undefined,
): DecodeResult<T> {
  const issues = new Issues();
  const r = Reader.of(raw, '', issues);
  const v = r ? decode(r, ctx) : undefined;
  if (issues.ok && v !== undefined) return { value: deepFreeze(v), errors: [], warnings: issues.warnings };
  if (issues.ok) issues.error('(root)', 'invalid resource');
  return { errors: issues.errors, warnings: settleWarnings(issues) };
}

/** envoy.config.listener.v3.Listener */
export function decodeListener(raw: unknown, ctx: DecodeContext): DecodeResult<ListenerConfig> {
  return run(raw, ctx, decodeListenerR);
}

/** envoy.config.route.v3.RouteConfiguration (RDS: validate_clusters defaults to false). */
export function decodeRouteConfiguration(raw: unknown, ctx: DecodeContext): DecodeResult<RouteConfiguration> {
  return run(raw, ctx, (r, c) => decodeRouteConfigurationR(r, c, false));
}

/** envoy.config.cluster.v3.Cluster */
export function decodeCluster(raw: unknown, ctx: DecodeContext): DecodeResult<ClusterConfig> {
  return run(raw, ctx, decodeClusterR);
}

/** envoy.config.endpoint.v3.ClusterLoadAssignment (EDS: endpoint addresses must be IPs). */
export function decodeClusterLoadAssignment(raw: unknown, ctx: DecodeContext): DecodeResult<ClusterLoadAssignment> {
  return run(raw, ctx, (r, c) => decodeClusterLoadAssignmentR(r, c, { ipHint: 'EDS endpoints must be IP addresses' }));
}

/** envoy.extensions.transport_sockets.tls.v3.Secret */
export function decodeSecret(raw: unknown, ctx: DecodeContext): DecodeResult<SecretConfig> {
  return run(raw, ctx, decodeSecretR);
}

export type { DecodeContext, StaticRefs } from './context';
export { deepFreeze } from './freeze';
export { decodeHttp2Options } from './hcm';
export { compileRe2, decodeHeaderMatcher, decodeStringMatcher } from './matchers';
export { decodePermission, decodePrincipal, decodeRbac, decodeRbacRules } from './rbac';
