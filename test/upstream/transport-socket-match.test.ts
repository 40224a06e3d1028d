/**
 * transport_socket_matches (Istio's auto-mTLS) in the cluster: Envoy's resolution order (every
 * match against the endpoint's `envoy.transport_socket_match` metadata, then against the
 * locality's, then the cluster's transport_socket as "default"), protobuf Value equality, and the
 * connection pools keyed by the chosen socket: an endpoint whose metadata starts selecting
 * another socket never reuses connections made with the old one.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ClusterLoadAssignment, LbEndpoint, TransportSocketMatch, UpstreamTlsConfig } from '../../proxy/config/types';
import { ClusterManager } from '../../proxy/upstream/cluster-manager';
import type { Host } from '../../proxy/upstream/host';
import { TcpTransportSocketFactory } from '../../proxy/upstream/transport';
import { TransportSocketMatcher, valueEqual } from '../../proxy/upstream/transport-socket-match';
import { clusterConfig, recordingPoolFactory } from './fixtures';

const TLS: UpstreamTlsConfig = {
  kind: 'upstream_tls',
  common: { tlsCertificates: [], tlsCertificateSdsSecretConfigs: [], alpnProtocols: ['istio'], cipherSuites: [] },
  allowRenegotiation: false,
};

/** A raw transport that says which socket config it was built for. */
class Labelled extends TcpTransportSocketFactory {
  constructor(readonly label: string) {
    super();
  }
}

const ISTIO_MATCHES: TransportSocketMatch[] = [
  { name: 'tlsMode-istio', match: { tlsMode: 'istio' }, transportSocket: TLS },
  { name: 'tlsMode-disabled', match: {} },
];

const md = (tsm?: Record<string, unknown>): Record<string, unknown> => (tsm ? { 'envoy.transport_socket_match': tsm, istio: { workload: 'w' } } : { istio: { workload: 'w' } });

describe('TransportSocketMatcher (Envoy resolution order)', () => {
  const factories = new Map<string, Labelled>();
  const make = (matches: TransportSocketMatch[]) =>
    new TransportSocketMatcher(
      matches,
      (m) => {
        const f = new Labelled(m.name);
        factories.set(m.name, f);
        return f;
      },
      new Labelled('default'),
    );

  it("Istio's pair: tlsMode istio gets the TLS socket, everything else the empty match", () => {
    const m = make(ISTIO_MATCHES);
    expect(m.resolve(md({ tlsMode: 'istio' }), undefined).name).toBe('tlsMode-istio');
    expect(m.resolve(md(), undefined).name).toBe('tlsMode-disabled');
    expect(m.resolve(md({ tlsMode: 'disabled' }), undefined).name).toBe('tlsMode-disabled');
    expect(m.resolve(undefined, undefined).name).toBe('tlsMode-disabled');
    expect(m.resolve(md({ tlsMode: 'istio' }), undefined).factory).toBe(factories.get('tlsMode-istio'));
    expect(m.sockets.map((s) => [s.name, s.matchCount])).toEqual([
      ['tlsMode-istio', 2],
      ['tlsMode-disabled', 3],
      ['default', 0],
    ]);
  });

  it('falls back to the locality metadata, then to the default socket', () => {
    const m = make([{ name: 'mtls', match: { tlsMode: 'istio' }, transportSocket: TLS }]);
    // Endpoint metadata first, across all matches.
    expect(m.resolve(md({ tlsMode: 'istio' }), md({ tlsMode: 'other' })).name).toBe('mtls');
    // Nothing on the endpoint: the locality decides.
    expect(m.resolve(md(), md({ tlsMode: 'istio' })).name).toBe('mtls');
    // Neither: the cluster's own transport_socket.
    expect(m.resolve(md({ tlsMode: 'plain' }), md()).name).toBe('default');
  });

  it('needs every label present and equal as a protobuf Value', () => {
    const m = make([{ name: 'two', match: { a: '1', b: true }, transportSocket: TLS }]);
    expect(m.resolve(md({ a: '1', b: true, extra: 'x' }), undefined).name).toBe('two');
    expect(m.resolve(md({ a: '1' }), undefined).name).toBe('default');
    expect(m.resolve(md({ a: 1, b: true }), undefined).name).toBe('default'); // number ≠ string
    expect(valueEqual({ x: [1, 'a', { y: null }] }, { x: [1, 'a', { y: null }] })).toBe(true);
    expect(valueEqual({ x: [1, 'a'] }, { x: ['a', 1] })).toBe(false);
    expect(valueEqual({ x: 1 }, { x: 1, y: 2 })).toBe(false);
  });
});

describe('cluster pools keyed by the chosen socket', () => {
  let cm: ClusterManager | undefined;
  afterEach(() => {
    cm?.destroy();
    cm = undefined;
  });

  const ep = (port: number, tsm?: Record<string, unknown>): LbEndpoint => ({
    address: { kind: 'socket', host: '127.0.0.1', port },
    hostname: '',
    healthStatus: 'UNKNOWN',
    weight: 1,
    metadata: md(tsm),
  });
  const cla = (eps: LbEndpoint[]): ClusterLoadAssignment => ({ clusterName: 'reviews', endpoints: [{ priority: 0, lbEndpoints: eps }], overprovisioningFactor: 140 });

  function start() {
    const { factory, pools } = recordingPoolFactory();
    const built: { socket: UpstreamTlsConfig | undefined; f: Labelled }[] = [];
    const seenBy = new Map<Host, string[]>();
    cm = new ClusterManager({
      poolFactory: (host, cluster, protocol) => {
        const list = seenBy.get(host) ?? [];
        list.push((cluster.transportFor?.(host) as Labelled).label);
        seenBy.set(host, list);
        return factory(host, cluster, protocol);
      },
      transportProvider: (_cfg, socket) => {
        const f = new Labelled(socket ? 'tls' : 'plain');
        built.push({ socket, f });
        return f;
      },
    });
    cm.addOrUpdate(clusterConfig({ name: 'reviews', type: 'EDS', transportSocketMatches: ISTIO_MATCHES }));
    return { pools, built, seenBy, c: () => cm!.get('reviews')! };
  }

  it('gives each endpoint its own socket and new pools when its metadata changes the choice', () => {
    const { pools, built, seenBy, c } = start();
    // One transport for the default socket and one per match.
    expect(built.map((b) => b.f.label)).toEqual(['plain', 'tls', 'plain']);
    cm!.updateAssignment('reviews', cla([ep(9001, { tlsMode: 'istio' }), ep(9002)]));
    const [mesh, plain] = c().hosts as [Host, Host];
    expect((c().transportFor(mesh) as Labelled).label).toBe('tls');
    expect((c().transportFor(plain) as Labelled).label).toBe('plain');
    const p1 = c().httpPool(mesh, 'HTTP/1.1');
    expect(c().httpPool(mesh, 'HTTP/1.1')).toBe(p1); // same socket, same pool
    c().httpPool(plain, 'HTTP/1.1');
    expect(seenBy.get(mesh)).toEqual(['tls']);
    expect(seenBy.get(plain)).toEqual(['plain']);
    expect(c().describe().hosts.map((h) => [h.address, h.transportSocketMatch])).toEqual([
      ['127.0.0.1:9001', 'tlsMode-istio'],
      ['127.0.0.1:9002', 'tlsMode-disabled'],
    ]);

    // The workload leaves the mesh (EDS drops tlsMode): same host object, plaintext pools from now on.
    cm!.updateAssignment('reviews', cla([ep(9001), ep(9002)]));
    expect(c().hosts[0]).toBe(mesh);
    const p2 = c().httpPool(mesh, 'HTTP/1.1');
    expect(p2).not.toBe(p1);
    expect(seenBy.get(mesh)).toEqual(['tls', 'plain']);
    expect(pools[0]!.drained).toBe(true);
    expect(c().describe().hosts[0]!.transportSocketMatch).toBe('tlsMode-disabled');

    // An identical push keeps the pool (metadata is compared by choice, not by object).
    cm!.updateAssignment('reviews', cla([ep(9001), ep(9002)]));
    expect(c().httpPool(mesh, 'HTTP/1.1')).toBe(p2);
  });

  it('clusters without matches keep one transport and no per-host line in /clusters', () => {
    const { factory } = recordingPoolFactory();
    cm = new ClusterManager({ poolFactory: factory });
    cm.addOrUpdate(clusterConfig({ name: 'plain', type: 'EDS' }));
    cm.updateAssignment('plain', cla([ep(9003, { tlsMode: 'istio' })]));
    const c = cm.get('plain')!;
    expect(c.transportFor(c.hosts[0]!)).toBe(c.transport);
    expect(c.describe().hosts[0]!.transportSocketMatch).toBeUndefined();
  });
});
