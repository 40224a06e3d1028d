/**
 * Harness for the connection manager / router tests: builders for the frozen config model with
 * Envoy's defaults, and a real proxy on 127.0.0.1:0 (net server → HttpConnectionManager →
 * router → real H1/H2 pools from a real ClusterManager). Everything is closed by `stopAll()`.
 */
import net from 'node:net';
import type {
  ClusterConfig,
  HcmConfig,
  HeaderMatcher,
  RetryOn,
  RetryPolicy,
  Route,
  RouteAction,
  RouteConfiguration,
  RouteMatch,
  VirtualHost,
} from '../../proxy/config/types';
import type { DownstreamConnectionInfo } from '../../proxy/http/codec';
import { HttpConnectionManager } from '../../proxy/http/connection-manager';
import { HttpFilterRegistry } from '../../proxy/http/filter';
import { ROUTER_TYPE_NAME, routerFilterFactory } from '../../proxy/http/filters/router-factory';
import { H1ConnectionPool } from '../../proxy/http/h1/pool';
import { H2ConnectionPool } from '../../proxy/http/h2/client-pool';
import type { StreamInfo } from '../../proxy/http/stream-info';
import { ClusterManager } from '../../proxy/upstream/cluster-manager';
import type { ClusterLookup } from '../../proxy/upstream/types';
import { assignment, clusterConfig, type EndpointSpec } from '../upstream/fixtures';

export function hcmConfig(over: Partial<HcmConfig> = {}): HcmConfig {
  return {
    statPrefix: 'test',
    codecType: 'AUTO',
    routeSource: { kind: 'rds', routeConfigName: 'test', configSource: { kind: 'ads' } },
    httpFilters: [
      {
        name: 'envoy.filters.http.router',
        typeName: ROUTER_TYPE_NAME,
        config: undefined,
        isOptional: false,
        disabled: false,
      },
    ],
    useRemoteAddress: false,
    xffNumTrustedHops: 0,
    skipXffAppend: false,
    generateRequestId: true,
    preserveExternalRequestId: false,
    alwaysSetRequestIdInResponse: false,
    forwardClientCertDetails: 'SANITIZE',
    setCurrentClientCertDetails: { subject: false, cert: false, chain: false, dns: false, uri: false },
    requestTimeoutMs: 0,
    requestHeadersTimeoutMs: 0,
    streamIdleTimeoutMs: 300_000,
    drainTimeoutMs: 5_000,
    idleTimeoutMs: 3_600_000,
    maxRequestHeadersKb: 60,
    maxHeadersCount: 100,
    http2: { maxConcurrentStreams: 100, initialStreamWindowSize: 65535, initialConnectionWindowSize: 1048576 },
    upgradeTypes: [],
    serverName: 'envoy',
    serverHeaderTransformation: 'OVERWRITE',
    accessLog: [],
    normalizePath: false,
    mergeSlashes: false,
    ...over,
  };
}

export function prefix(value: string, extra: Partial<RouteMatch> = {}): RouteMatch {
  return {
    path: { kind: 'prefix', value },
    caseSensitive: true,
    headers: [],
    queryParameters: [],
    grpc: false,
    ...extra,
  };
}

export function headerExact(name: string, value: string): HeaderMatcher {
  return {
    name,
    match: { kind: 'string', matcher: { kind: 'exact', value, ignoreCase: false } },
    invert: false,
    treatMissingAsEmpty: false,
  };
}

export function action(cluster: string, over: Partial<RouteAction> = {}): RouteAction {
  return {
    kind: 'route',
    cluster: { kind: 'cluster', name: cluster },
    autoHostRewrite: false,
    timeoutMs: 15_000,
    idleTimeoutMs: 0,
    hashPolicy: [],
    upgradeTypes: [],
    ...over,
  };
}

export function retryPolicy(retryOn: RetryOn[], over: Partial<RetryPolicy> = {}): RetryPolicy {
  return {
    retryOn: new Set(retryOn),
    numRetries: 1,
    perTryTimeoutMs: 0,
    retriableStatusCodes: [],
    retriableHeaders: [],
    avoidPreviousHosts: false,
    hostSelectionRetryMaxAttempts: 1,
    backOffBaseMs: 25,
    backOffMaxMs: 250,
    ...over,
  };
}

export function route(match: RouteMatch, act: Route['action'], over: Partial<Route> = {}): Route {
  return {
    name: over.name ?? 'route',
    match,
    action: act,
    requestHeadersToAdd: [],
    requestHeadersToRemove: [],
    responseHeadersToAdd: [],
    responseHeadersToRemove: [],
    typedPerFilterConfig: {},
    ...over,
  };
}

export function vhost(routes: Route[], over: Partial<VirtualHost> = {}): VirtualHost {
  return {
    name: 'vh',
    domains: ['*'],
    routes,
    requestHeadersToAdd: [],
    requestHeadersToRemove: [],
    responseHeadersToAdd: [],
    responseHeadersToRemove: [],
    typedPerFilterConfig: {},
    ...over,
  };
}

export function routeConfig(vhosts: VirtualHost[], over: Partial<RouteConfiguration> = {}): RouteConfiguration {
  return Object.freeze({
    name: 'rc',
    virtualHosts: vhosts,
    requestHeadersToAdd: [],
    requestHeadersToRemove: [],
    responseHeadersToAdd: [],
    responseHeadersToRemove: [],
    ...over,
  });
}

/** A STATIC cluster over loopback endpoints. */
export function staticCluster(name: string, eps: EndpointSpec[], over: Partial<ClusterConfig> = {}): ClusterConfig {
  return clusterConfig({ name, loadAssignment: assignment(name, eps), connectTimeoutMs: 2_000, ...over });
}

export interface TestProxy {
  port: number;
  hcm: HttpConnectionManager;
  clusters: ClusterManager;
  /** Completed streams, in completion order. */
  completed: StreamInfo[];
  /** Resolves once `n` streams have completed (bounded wait). */
  waitCompleted(n: number, timeoutMs?: number): Promise<StreamInfo[]>;
  /** Swap the route table (what an RDS update does). */
  setRoutes(rc: RouteConfiguration): void;
}

const stoppers: (() => Promise<void>)[] = [];

export async function stopAll(): Promise<void> {
  await Promise.all(stoppers.splice(0).map((s) => s()));
}

export async function startProxy(opts: {
  routes: RouteConfiguration;
  clusters: ClusterConfig[];
  hcm?: Partial<HcmConfig>;
  registry?: HttpFilterRegistry;
  random?: () => number;
  /** Wrap the cluster manager as the router sees it (e.g. to observe reportResult calls). */
  lookup?: (cm: ClusterManager) => ClusterLookup;
}): Promise<TestProxy> {
  const cm = new ClusterManager({
    poolFactory: (host, cluster, protocol) =>
      protocol === 'HTTP/2' ? new H2ConnectionPool(host, cluster) : new H1ConnectionPool(host, cluster),
  });
  for (const c of opts.clusters) cm.addOrUpdate(c);
  let current = opts.routes;
  const completed: StreamInfo[] = [];
  const waiters: (() => void)[] = [];
  const registry = opts.registry ?? new HttpFilterRegistry().register(routerFilterFactory);
  const hcm = new HttpConnectionManager({
    config: hcmConfig(opts.hcm),
    routes: () => current,
    filters: registry,
    clusters: opts.lookup ? opts.lookup(cm) : cm,
    random: opts.random,
    onStreamComplete: (info) => {
      completed.push(info);
      for (const w of waiters.splice(0)) w();
    },
  });
  const sockets = new Set<net.Socket>();
  let nextId = 1;
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const info: DownstreamConnectionInfo = {
      id: nextId++,
      remoteAddress: socket.remoteAddress ?? '',
      remotePort: socket.remotePort ?? 0,
      localAddress: socket.localAddress ?? '',
      localPort: socket.localPort ?? 0,
    };
    hcm.handle(socket, info, undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  stoppers.push(async () => {
    hcm.destroy();
    for (const s of sockets) s.destroy();
    cm.destroy();
    await new Promise((r) => server.close(r));
  });
  return {
    port,
    hcm,
    clusters: cm,
    completed,
    setRoutes(rc) {
      current = rc;
    },
    async waitCompleted(n, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      while (completed.length < n && Date.now() < deadline) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, 50);
          waiters.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
      return completed;
    },
  };
}

/** A loopback HTTP/1.1 request with raw control, via node:net (for malformed input and upgrades). */
export function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Read from a socket until `pred(text)` holds, the socket ends, or `timeoutMs` passes. */
export function readUntil(s: net.Socket, pred: (text: string) => boolean, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const done = () => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('end', done);
      s.off('close', done);
      resolve(text);
    };
    const onData = (d: Buffer) => {
      text += d.toString('latin1');
      if (pred(text)) done();
    };
    const timer = setTimeout(done, timeoutMs);
    s.on('data', onData);
    s.once('end', done);
    s.once('close', done);
  });
}
