/**
 * Shared bits of the gateway filter tests: a listener with a given http_filters chain, a plain
 * HTTP client over node:http, config decoding through a Reader, and a gRPC server on 127.0.0.1:0
 * that tests stop in afterAll.
 */
import http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { Issues, Reader } from '../../common/reader';
import type { FieldIssue } from '../../common/errors';
import { HCM_TYPE, ROUTER_TYPE, socketAddress } from '../support/meshlet';

/** An HTTP listener whose chain is `filters` followed by the router. */
export function filterListener(
  name: string,
  filters: Record<string, unknown>[],
  routeList: Record<string, unknown>[],
): Record<string, unknown> {
  return {
    name,
    address: socketAddress(0),
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': HCM_TYPE,
              stat_prefix: name,
              route_config: { name: `${name}_routes`, virtual_hosts: [{ name: 'all', domains: ['*'], routes: routeList }] },
              http_filters: [...filters, { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } }],
            },
          },
        ],
      },
    ],
  };
}

export interface Res {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** One request with a fresh connection; resolves with status, body and headers. */
export function request(
  port: number,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer; chunks?: string[] } = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
        // A stream reset after the response head: the body never completes.
        res.on('error', reject);
        res.on('close', () => {
          if (!res.complete) reject(new Error(`response aborted after status ${res.statusCode}`));
        });
      },
    );
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('client timeout')));
    if (opts.body !== undefined) req.write(opts.body);
    if (opts.chunks !== undefined) {
      // One write per chunk, spaced out so each arrives in its own read at the proxy.
      const rest = [...opts.chunks];
      const next = (): void => {
        const c = rest.shift();
        if (c === undefined) req.end();
        else {
          req.write(c);
          setTimeout(next, 10);
        }
      };
      next();
    } else req.end();
  });
}

/** Run a decoder over raw config; returns its value and every error and warning with its path. */
export function decodeWith<T>(decode: (r: Reader) => T, raw: unknown): { value: T | undefined; errors: FieldIssue[]; warnings: FieldIssue[] } {
  const issues = new Issues();
  const r = Reader.of(raw, 'typed_config', issues);
  const value = r ? decode(r) : undefined;
  return { value, errors: issues.errors, warnings: issues.warnings };
}

/** Start a gRPC server with `service` on 127.0.0.1:0. */
export async function startGrpcServer(
  definition: grpc.ServiceDefinition,
  impl: grpc.UntypedServiceImplementation,
): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  server.addService(definition, impl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, port };
}

export function stopGrpcServer(server: grpc.Server | undefined): Promise<void> {
  if (!server) return Promise.resolve();
  return new Promise((resolve) => {
    server.tryShutdown(() => resolve());
    setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 2_000).unref();
  });
}
