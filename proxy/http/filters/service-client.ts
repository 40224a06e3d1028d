/**
 * Side calls from HTTP filters to services reached through meshlet clusters: gRPC (ext_authz
 * `envoy.service.auth.v3.Authorization`, `envoy.service.ratelimit.v3.RateLimitService`) and plain
 * HTTP (ext_authz http_service, remote JWKS), over the cluster's transport_socket like every
 * other upstream connection (TLS/mTLS with its certificates and SAN checks). Owns the service definitions (loaded once from the
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
import { grpcChannelSecurity } from '../../upstream/grpc-security';
import type { Host } from '../../upstream/host';
import type { ClusterLookup, TransportSocketFactory } from '../../upstream/types';

// ───────────────────────────── hosts ─────────────────────────────

/** A host the cluster's balancer picks now, with the transport every connection to it uses. */
interface Picked {
  readonly host: Host;
  /** "host:port" */
  readonly target: string;
  readonly transport: TransportSocketFactory;
}

function pickHost(clusters: ClusterLookup | undefined, name: string): Picked | undefined {
  const c = clusters?.get(name);
  const h = c?.chooseHost(undefined);
  if (c === undefined || h === undefined) return undefined;
  const addr = h.connectAddress ?? h.host;
  return { host: h, target: addr.includes(':') ? `[${addr}]:${h.port}` : `${addr}:${h.port}`, transport: c.transportFor?.(h) ?? c.transport };
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

/**
 * A client for `ctor` on the picked host (one channel per service × host × TLS context, kept for
 * the process), secured like the cluster's other connections.
 */
function clientFor(ctor: ServiceCtor, serviceName: string, p: Picked, authority: string): grpcNs.Client {
  const sec = grpcChannelSecurity(p.transport);
  const key = `${serviceName}|${p.target}|${authority}|${sec.tag}`;
  let c = channels.get(key);
  if (c === undefined) {
    c = new ctor(p.target, sec.credentials, { ...sec.options, 'grpc.default_authority': authority });
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
  const picked = pickHost(clusters, t.clusterName);
  if (picked === undefined) {
    done(new Error(`no healthy host in cluster ${t.clusterName}`), undefined);
    return;
  }
  let client: grpcNs.Client;
  try {
    const ctor = serviceName === 'auth' ? authorizationService() : rateLimitService();
    client = clientFor(ctor, serviceName, picked, t.authority);
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

/** Connect timeout of side-call connections made through a cluster's TLS transport. */
const SIDE_CALL_CONNECT_TIMEOUT_MS = 10_000;

/**
 * An undici pool to the picked host, kept for the process. Through a TLS transport socket the
 * pool's connections are the cluster's own (TLS/mTLS, SAN check, current certificate), made by
 * its transport; plain clusters use undici's TCP connector.
 */
function poolFor(p: Picked, cluster: string): Pool {
  const tls = p.transport.clientTls !== undefined;
  const key = tls ? `${cluster}|${p.target}|tls` : p.target;
  let pool = pools.get(key);
  if (pool === undefined) {
    const { host, transport } = p;
    const connect = tls
      ? (_o: unknown, cb: (err: Error | null, socket: import('node:net').Socket | null) => void): void => {
          transport.connect(host, { alpn: ['http/1.1'], timeoutMs: SIDE_CALL_CONNECT_TIMEOUT_MS }, (err, conn) => {
            if (err || !conn) cb(new Error(err?.detail ?? 'connect failed'), null);
            else cb(null, conn.socket);
          });
        }
      : undefined;
    pool = new (require('undici') as typeof import('undici')).Pool(`http://${p.target}`, {
      connections: 16,
      pipelining: 1,
      ...(connect ? { connect: connect as never } : {}),
    });
    pools.set(key, pool);
  }
  return pool;
}

export interface HttpCallResult {
  readonly status: number;
  /** Flat lower-case header list. */
  readonly headers: string[];
  readonly body: Buffer;
}

/**
 * One HTTP request to a host of `cluster` (HTTP/1.1 through undici, over the cluster's transport
 * socket). Rejects on connect errors and on the timeout; any status resolves.
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
  const picked = pickHost(clusters, cluster);
  if (picked === undefined) throw new Error(`no healthy host in cluster ${cluster}`);
  const headers: string[] = ['host', opts.host, ...opts.headers];
  const ac = new AbortController();
  const timer = opts.timeoutMs > 0 ? setTimeout(() => ac.abort(new Error('timeout')), opts.timeoutMs) : undefined;
  try {
    const res = await poolFor(picked, cluster).request({
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
