/**
 * gRPC across the mesh hop: @grpc/grpc-js client → outbound HCM (h2c) → router → H2ConnectionPool
 * over the mTLS upstream transport (ALPN h2, SPIFFE SAN check) → inbound TLS termination →
 * inbound HCM (H2ServerCodec on the TLSSocket) → router → @grpc/grpc-js server. Certificates
 * come from the development CA at test time.
 */
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa } from '../../certs/dev-ca';
import { CertStore } from '../../certs/store';
import type { ClusterConfig, CommonTlsConfig, SanMatcher, UpstreamTlsConfig } from '../../proxy/config/types';
import type { DownstreamConnectionInfo } from '../../proxy/http/codec';
import { HttpConnectionManager } from '../../proxy/http/connection-manager';
import { HttpFilterRegistry } from '../../proxy/http/filter';
import { routerFilterFactory } from '../../proxy/http/filters/router-factory';
import { H1ConnectionPool } from '../../proxy/http/h1/pool';
import { H2ConnectionPool } from '../../proxy/http/h2/client-pool';
import type { StreamInfo } from '../../proxy/http/stream-info';
import { TlsContextManager } from '../../proxy/tls/context-manager';
import { terminateDownstreamTls } from '../../proxy/tls/downstream';
import { TlsTransportSocketFactory } from '../../proxy/tls/upstream';
import { ClusterManager, type PoolFactory } from '../../proxy/upstream/cluster-manager';
import { TcpTransportSocketFactory } from '../../proxy/upstream/transport';
import { action, hcmConfig, prefix, route, routeConfig, staticCluster, vhost } from './hcm-support';

function common(over: Partial<CommonTlsConfig> = {}): CommonTlsConfig {
  return {
    tlsCertificates: [],
    tlsCertificateSdsSecretConfigs: [{ name: 'default' }],
    validationContextSdsSecretConfig: { name: 'ROOTCA' },
    alpnProtocols: [],
    cipherSuites: [],
    ...over,
  };
}

function spiffe(sa: string): SanMatcher {
  return {
    sanType: 'URI',
    matcher: { kind: 'exact', value: `spiffe://cluster.local/ns/default/sa/${sa}`, ignoreCase: false },
  };
}

async function storeFor(ca: DevCa, sa: string): Promise<CertStore> {
  const s = new CertStore();
  const r1 = await s.update('ROOTCA', {
    name: 'ROOTCA',
    validationContext: {
      trustedCa: { kind: 'inline_string', value: ca.rootCertPem },
      matchTypedSubjectAltNames: [],
      onlyVerifyLeafCertCrl: false,
    },
  });
  expect(r1.ok).toBe(true);
  const id = await ca.issueWorkload({ ns: 'default', sa });
  const r2 = await s.update('default', {
    name: 'default',
    tlsCertificate: {
      certificateChain: { kind: 'inline_string', value: id.certChainPem },
      privateKey: { kind: 'inline_string', value: id.privateKeyPem as string },
    },
  });
  expect(r2.ok).toBe(true);
  return s;
}

type Msg = { text: string };
const ser = (m: Msg): Buffer => Buffer.from(JSON.stringify(m));
const de = (b: Buffer): Msg => JSON.parse(b.toString()) as Msg;
const WhoService = {
  who: {
    path: '/meshlet.test.Who/Am',
    requestStream: false,
    responseStream: false,
    requestSerialize: ser,
    requestDeserialize: de,
    responseSerialize: ser,
    responseDeserialize: de,
  },
  stream: {
    path: '/meshlet.test.Who/Stream',
    requestStream: true,
    responseStream: true,
    requestSerialize: ser,
    requestDeserialize: de,
    responseSerialize: ser,
    responseDeserialize: de,
  },
} as unknown as grpc.ServiceDefinition;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- generic client methods are dynamically typed
type WhoClient = grpc.Client & Record<string, any>;
const WhoClientCtor = grpc.makeGenericClientConstructor(WhoService, 'Who') as unknown as new (
  a: string,
  c: grpc.ChannelCredentials,
) => WhoClient;

const closers: (() => void | Promise<void>)[] = [];
const inboundDone: StreamInfo[] = [];
let outboundPort = 0;
let inboundTlsAlpn: (string | undefined)[] = [];
let outboundClusters: ClusterManager;

function serve(hcm: HttpConnectionManager, server: net.Server, sockets: Set<net.Socket>): Promise<number> {
  closers.push(async () => {
    hcm.destroy();
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r((server.address() as net.AddressInfo).port)));
}

function connInfo(socket: net.Socket, id: number): DownstreamConnectionInfo {
  return {
    id,
    remoteAddress: socket.remoteAddress ?? '',
    remotePort: socket.remotePort ?? 0,
    localAddress: socket.localAddress ?? '',
    localPort: socket.localPort ?? 0,
  };
}

beforeAll(async () => {
  const ca = await DevCa.create({ trustDomain: 'cluster.local' });
  const serverStore = await storeFor(ca, 'reviews');
  const clientStore = await storeFor(ca, 'productpage');

  // The application: a real gRPC server reporting the caller identity meshlet forwarded.
  const app = new grpc.Server();
  app.addService(WhoService, {
    who: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      const xfcc = String(call.metadata.get('x-forwarded-client-cert')[0] ?? '');
      cb(null, {
        text: `${call.request.text}|${xfcc.includes('spiffe://cluster.local/ns/default/sa/productpage') ? 'productpage' : 'unknown'}`,
      });
    },
    stream: (call: grpc.ServerDuplexStream<Msg, Msg>) => {
      call.on('data', (m: Msg) => call.write({ text: m.text.split('').reverse().join('') }));
      call.on('end', () => call.end());
    },
  });
  const appPort = await new Promise<number>((resolve, reject) =>
    app.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  closers.push(() => {
    app.forceShutdown();
  });
  const pools: PoolFactory = (host, cluster, protocol) =>
    protocol === 'HTTP/2' ? new H2ConnectionPool(host, cluster) : new H1ConnectionPool(host, cluster);
  const registry = new HttpFilterRegistry().register(routerFilterFactory);

  // Inbound sidecar: mTLS termination (ALPN h2) → HCM → local app over h2c.
  const inCm = new ClusterManager({ poolFactory: pools });
  inCm.addOrUpdate(staticCluster('inbound|app', [{ port: appPort }], { upstreamProtocol: 'http2' }));
  closers.push(() => inCm.destroy());
  const inHcm = new HttpConnectionManager({
    config: hcmConfig({
      forwardClientCertDetails: 'APPEND_FORWARD',
      setCurrentClientCertDetails: { subject: false, cert: false, chain: false, dns: false, uri: true },
    }),
    routes: () => routeConfig([vhost([route(prefix('/'), action('inbound|app', { timeoutMs: 0 }))])]),
    filters: registry,
    clusters: inCm,
    onStreamComplete: (i) => inboundDone.push(i),
  });
  const inMgr = new TlsContextManager(serverStore);
  const inSockets = new Set<net.Socket>();
  let nextId = 1;
  const inServer = net.createServer({ pauseOnConnect: true }, (socket) => {
    socket.on('error', () => {});
    inSockets.add(socket);
    socket.on('close', () => inSockets.delete(socket));
    const info = connInfo(socket, nextId++);
    terminateDownstreamTls(
      inMgr,
      { kind: 'downstream_tls', common: common({ alpnProtocols: ['h2', 'http/1.1'] }), requireClientCertificate: true, handshakeTimeoutMs: 2000 },
      socket,
      info,
      (t, tlsInfo) => {
        if (!t) return;
        inboundTlsAlpn.push(tlsInfo?.alpn);
        inHcm.handle(
          t,
          { ...info, tls: tlsInfo },
          { transport: 'tls', application: tlsInfo?.alpn === 'h2' ? 'h2' : 'http/1.1' },
        );
      },
    );
  });
  const inboundPort = await serve(inHcm, inServer, inSockets);

  // Outbound sidecar: h2c from the app → HCM → mTLS HTTP/2 cluster to the inbound sidecar.
  const upstreamTls: UpstreamTlsConfig = {
    kind: 'upstream_tls',
    common: common({
      combinedDefaultValidationContext: {
        matchTypedSubjectAltNames: [spiffe('reviews')],
        onlyVerifyLeafCertCrl: false,
      },
    }),
    allowRenegotiation: false,
  };
  const outMgr = new TlsContextManager(clientStore);
  const tcp = new TcpTransportSocketFactory();
  outboundClusters = new ClusterManager({
    poolFactory: pools,
    transportProvider: (cfg: ClusterConfig) =>
      cfg.transportSocket ? new TlsTransportSocketFactory(tcp, cfg.transportSocket, outMgr) : tcp,
  });
  outboundClusters.addOrUpdate(
    staticCluster('outbound|reviews', [{ port: inboundPort }], {
      upstreamProtocol: 'http2',
      transportSocket: upstreamTls,
    }),
  );
  closers.push(() => outboundClusters.destroy());
  const outHcm = new HttpConnectionManager({
    config: hcmConfig({ codecType: 'HTTP2' }),
    routes: () => routeConfig([vhost([route(prefix('/'), action('outbound|reviews', { timeoutMs: 0 }))])]),
    filters: registry,
    clusters: outboundClusters,
  });
  const outSockets = new Set<net.Socket>();
  const outServer = net.createServer((socket) => {
    outSockets.add(socket);
    socket.on('close', () => outSockets.delete(socket));
    outHcm.handle(socket, connInfo(socket, nextId++), undefined);
  });
  outboundPort = await serve(outHcm, outServer, outSockets);
});

afterAll(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  inboundTlsAlpn = [];
});

describe('gRPC over the mTLS mesh hop', () => {
  it('unary and bidi calls cross mTLS with ALPN h2 on one multiplexed upstream connection', async () => {
    const client = new WhoClientCtor(`127.0.0.1:${outboundPort}`, grpc.credentials.createInsecure());
    try {
      const replies = await Promise.all(
        ['a', 'b', 'c', 'd'].map(
          (t) =>
            new Promise<string>((resolve, reject) =>
              client.who(
                { text: t },
                new grpc.Metadata(),
                { deadline: new Date(Date.now() + 10_000) },
                (e: grpc.ServiceError | null, r: Msg) => (e ? reject(e) : resolve(r.text)),
              ),
            ),
        ),
      );
      expect(replies).toEqual(['a|productpage', 'b|productpage', 'c|productpage', 'd|productpage']);

      const call = client.stream({ deadline: new Date(Date.now() + 10_000) });
      const got: string[] = [];
      const ended = new Promise<void>((resolve, reject) => {
        call.on('data', (m: Msg) => got.push(m.text));
        call.on('end', () => resolve());
        call.on('error', reject);
      });
      call.write({ text: 'abc' });
      call.write({ text: 'mesh' });
      call.end();
      await ended;
      expect(got).toEqual(['cba', 'hsem']);

      expect(inboundTlsAlpn).toEqual(['h2']);
      expect(outboundClusters.get('outbound|reviews')?.stats.upstreamCxTotal).toBe(1);
      expect(inboundDone.length).toBeGreaterThanOrEqual(5);
      expect(inboundDone.every((i) => i.protocol === 'HTTP/2')).toBe(true);
    } finally {
      client.close();
    }
  });
});
