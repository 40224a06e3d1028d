/**
 * Side calls from HTTP filters to services reached through meshlet clusters: gRPC (ext_authz
 * `envoy.service.auth.v3.Authorization`, `envoy.service.ratelimit.v3.RateLimitService`) and plain
 * HTTP (ext_authz http_service, remote JWKS). Owns the service definitions (loaded once from the
 * Envoy protos shipped by @grpc/grpc-js-xds, the same include paths as xds-client/protos.ts), one
 * gRPC channel / undici pool per cluster host, and host selection through the cluster's own load
 * balancer.
 *
 * Leans on reuse: channels and pools are created on first use and kept per "host:port"; nothing
 * is allocated per call beyond the call itself. Calls never throw: failures come back as errors in
 * the callback/promise so the data plane can map them to failure_mode_* behaviour.
 */
import type * as grpcNs from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import type { Pool } from 'undici';
import type { GrpcTarget } from '../../config/filters/grpc-service';
import { PROTO_LOADER_OPTIONS } from '../../../xds-client/protos';
import type { ClusterLookup } from '../../upstream/types';

// ───────────────────────────── hosts ─────────────────────────────

/** "host:port" of a host the cluster's balancer picks now; undefined = unknown cluster / no host. */
export function pickHostTarget(clusters: ClusterLookup | undefined, name: string): string | undefined {
  const c = clusters?.get(name);
  const h = c?.chooseHost(undefined);
  if (h === undefined) return undefined;
  const addr = h.connectAddress ?? h.host;
  return addr.includes(':') ? `[${addr}]:${h.port}` : `${addr}:${h.port}`;
}

// ───────────────────────────── gRPC ─────────────────────────────

// gRPC, proto-loader and undici load on the first call a filter makes, not when the filter
// registry is built: most bootstraps configure neither ext_authz, rate limiting nor remote JWKS.
let grpcMod: typeof grpcNs | undefined;
function grpcLib(): typeof grpcNs {
  return (grpcMod ??= require('@grpc/grpc-js') as typeof grpcNs);
}

const SERVICE_PROTOS = ['envoy/service/auth/v3/external_auth.proto', 'envoy/service/ratelimit/v3/rls.proto'];
let services: grpcNs.GrpcObject | undefined;

/** The loaded gRPC package object holding envoy.service.auth.v3 and envoy.service.ratelimit.v3. */
export function gatewayServices(): grpcNs.GrpcObject {
  if (services === undefined) {
    const def = (require('@grpc/proto-loader') as typeof protoLoader).loadSync(SERVICE_PROTOS, { ...PROTO_LOADER_OPTIONS, defaults: true });
    services = grpcLib().loadPackageDefinition(def);
  }
  return services;
}

type ServiceCtor = grpcNs.ServiceClientConstructor;

function serviceCtor(fullName: string): ServiceCtor {
  let o: unknown = gatewayServices();
  for (const part of fullName.split('.')) o = (o as Record<string, unknown>)[part];
  return o as ServiceCtor;
}

/** envoy.service.auth.v3.Authorization client constructor (also used by tests' authorizers). */
export function authorizationService(): ServiceCtor {
  return serviceCtor('envoy.service.auth.v3.Authorization');
}
/** envoy.service.ratelimit.v3.RateLimitService client constructor. */
export function rateLimitService(): ServiceCtor {
  return serviceCtor('envoy.service.ratelimit.v3.RateLimitService');
}

const channels = new Map<string, grpcNs.Client>();

/** A client for `ctor` on `target` (one channel per service × host, kept for the process). */
function clientFor(ctor: ServiceCtor, serviceName: string, target: string, authority: string): grpcNs.Client {
  const key = `${serviceName}|${target}|${authority}`;
  let c = channels.get(key);
  if (c === undefined) {
    c = new ctor(target, grpcLib().credentials.createInsecure(), { 'grpc.default_authority': authority });
    channels.set(key, c);
  }
  return c;
}

/** Close every channel (tests, shutdown). */
export function closeServiceClients(): void {
  for (const c of channels.values()) c.close();
  channels.clear();
  for (const p of pools.values()) void p.close();
  pools.clear();
}

/**
 * One unary call `method` of `serviceName` through cluster `t.clusterName`, with t's deadline.
 * `done` is called exactly once with the error or the response object (proto-loader plain form).
 */
export function unaryCall(
  clusters: ClusterLookup | undefined,
  t: GrpcTarget,
  serviceName: 'auth' | 'ratelimit',
  method: string,
  request: unknown,
  done: (err: Error | undefined, response: Record<string, unknown> | undefined) => void,
): void {
  const target = pickHostTarget(clusters, t.clusterName);
  if (target === undefined) {
    done(new Error(`no healthy host in cluster ${t.clusterName}`), undefined);
    return;
  }
  let client: grpcNs.Client;
  try {
    const ctor = serviceName === 'auth' ? authorizationService() : rateLimitService();
    client = clientFor(ctor, serviceName, target, t.authority);
  } catch (err) {
    done(err as Error, undefined);
    return;
  }
  const md = new (grpcLib().Metadata)();
  for (const [k, v] of t.initialMetadata) md.add(k, v);
  const deadline = t.timeoutMs > 0 ? Date.now() + t.timeoutMs : Infinity;
  const fn = (client as unknown as Record<string, unknown>)[method] as
    | ((req: unknown, md: grpcNs.Metadata, opts: grpcNs.CallOptions, cb: (err: grpcNs.ServiceError | null, res: unknown) => void) => void)
    | undefined;
  if (typeof fn !== 'function') {
    done(new Error(`unknown method ${method}`), undefined);
    return;
  }
  fn.call(client, request, md, { deadline }, (err: grpcNs.ServiceError | null, res: unknown) => {
    if (err) done(err, undefined);
    else done(undefined, res as Record<string, unknown>);
  });
}

// ───────────────────────────── HTTP ─────────────────────────────

const pools = new Map<string, Pool>();

/** An undici pool to `target` (http://host:port), kept for the process. */
function poolFor(target: string): Pool {
  let p = pools.get(target);
  if (p === undefined) {
    p = new (require('undici') as typeof import('undici')).Pool(`http://${target}`, { connections: 16, pipelining: 1 });
    pools.set(target, p);
  }
  return p;
}

export interface HttpCallResult {
  readonly status: number;
  /** Flat lower-case header list. */
  readonly headers: string[];
  readonly body: Buffer;
}

/**
 * One HTTP request to a host of `cluster` (plain HTTP/1.1 through undici). Rejects on connect
 * errors and on the timeout; any status resolves.
 */
export async function httpCall(
  clusters: ClusterLookup | undefined,
  cluster: string,
  opts: {
    method: string;
    path: string;
    host: string;
    headers: string[];
    body?: Buffer;
    timeoutMs: number;
    maxBodyBytes?: number;
  },
): Promise<HttpCallResult> {
  const target = pickHostTarget(clusters, cluster);
  if (target === undefined) throw new Error(`no healthy host in cluster ${cluster}`);
  const headers: string[] = ['host', opts.host, ...opts.headers];
  const ac = new AbortController();
  const timer = opts.timeoutMs > 0 ? setTimeout(() => ac.abort(new Error('timeout')), opts.timeoutMs) : undefined;
  try {
    const res = await poolFor(target).request({
      method: opts.method as 'GET',
      path: opts.path,
      headers,
      ...(opts.body !== undefined ? { body: opts.body } : {}),
      signal: ac.signal,
    });
    const chunks: Buffer[] = [];
    let size = 0;
    const max = opts.maxBodyBytes ?? 1024 * 1024;
    for await (const c of res.body) {
      size += (c as Buffer).length;
      if (size > max) {
        res.body.destroy();
        throw new Error(`response body larger than ${max} bytes`);
      }
      chunks.push(c as Buffer);
    }
    const flat: string[] = [];
    for (const [k, v] of Object.entries(res.headers)) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const x of v) flat.push(k.toLowerCase(), x);
      else flat.push(k.toLowerCase(), String(v));
    }
    return { status: res.statusCode, headers: flat, body: Buffer.concat(chunks) };
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}
