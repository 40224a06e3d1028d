/**
 * Shared by the envoy-examples tests: the examples' listener/cluster YAML shapes on loopback,
 * free ports (the examples' listeners are unnamed, at fixed ports), small servers and a raw client.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll } from 'vitest';
import { parseBootstrapText } from '../../proxy/config/bootstrap';
import { type StartedMeshlet, startMeshlet, stopAllMeshlets } from '../support/meshlet';
const servers: http.Server[] = [];

afterAll(async () => {
  await stopAllMeshlets();
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

export async function serve(handler: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void): Promise<number> {
  const s = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handler(req, res, Buffer.concat(chunks)));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  return (s.address() as net.AddressInfo).port;
}

/** A free loopback port (the examples' listeners have fixed ports and no names). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

export async function run(yaml: string): Promise<StartedMeshlet> {
  return startMeshlet(parseBootstrapText(yaml, 'envoy.yaml') as Record<string, unknown>);
}

/** The examples' STRICT_DNS service cluster, its address on loopback. */
export function cluster(name: string, port: number, extra = ''): string {
  return `
  - name: ${name}
    type: STRICT_DNS
    lb_policy: ROUND_ROBIN${extra}
    load_assignment:
      cluster_name: ${name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: 127.0.0.1
                port_value: ${port}`;
}

export const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const ROUTER = `
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router`;
export const STDOUT_LOG = `
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog`;
export const CORS_FILTER = `
          - name: envoy.filters.http.cors
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors`;
export const CORS_POLICY = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy';
export const CSRF_POLICY = 'type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy';

/** One HCM listener as the examples write it (AUTO codec, ingress_http, stdout access log). */
export function listener(port: number, vhost: string, filters: string, hcmExtra = ''): string {
  return `
  - address:
      socket_address:
        address: 127.0.0.1
        port_value: ${port}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": ${HCM}
          codec_type: AUTO
          stat_prefix: ingress_http${hcmExtra}${STDOUT_LOG}
          route_config:
            name: local_route
            virtual_hosts:${vhost}
          http_filters:${filters}${ROUTER}`;
}

export function admin(port: number): string {
  return `
admin:
  address:
    socket_address:
      address: 127.0.0.1
      port_value: ${port}
`;
}

export const pct = (n: number, indent: string, key?: string): string =>
  `\n${indent}default_value:\n${indent}  numerator: ${n}\n${indent}  denominator: HUNDRED${key ? `\n${indent}runtime_key: ${key}` : ''}`;


export function rawGetFull(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return rawPost(port, path, headers, undefined, 'GET');
}
export async function rawGet(port: number, path: string, headers: Record<string, string>): Promise<Buffer> {
  return (await rawGetFull(port, path, headers)).body;
}
export function rawPost(
  port: number,
  path: string,
  headers: Record<string, string>,
  body: Buffer | undefined,
  method = 'POST',
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
