import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeBootstrap, loadBootstrap, parseBootstrapText } from '../../proxy/config/bootstrap';
import { ConfigError } from '../../common/errors';
import { ctx, listener, staticCluster, TCP_PROXY_TYPE } from './helpers';

const FIXTURES = join(__dirname, '..', 'fixtures', 'bootstrap');
const NODE = { id: 'sidecar~10.0.0.1~a.default~default.svc.cluster.local', cluster: 'a.default' };
const tmp = mkdtempSync(join(tmpdir(), 'meshlet-bootstrap-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function issuesOf(fn: () => unknown): { path: string; message: string }[] {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return [...(e as ConfigError).issues];
  }
  throw new Error('expected a ConfigError');
}

describe('front proxy bootstrap (Envoy docs style)', () => {
  it('decodes with no errors and no warnings, with Envoy defaults', () => {
    const { bootstrap, warnings } = loadBootstrap(join(FIXTURES, 'front-proxy.yaml'), ctx());
    expect(warnings).toEqual([]);
    expect(bootstrap.node.id).toBe('front-proxy-1');
    expect(bootstrap.admin?.address).toEqual({ kind: 'socket', host: '127.0.0.1', port: 8001 });
    const [l] = bootstrap.staticResources.listeners;
    expect(l?.name).toBe('ingress_http');
    expect(l?.bindToPort).toBe(true);
    expect(l?.listenerFiltersTimeoutMs).toBe(15_000);
    const f = l?.filterChains[0]?.filters[0];
    expect(f?.kind).toBe('http_connection_manager');
    if (f?.kind !== 'http_connection_manager') throw new Error('unreachable');
    expect(f.hcm.streamIdleTimeoutMs).toBe(300_000);
    expect(f.hcm.httpFilters.map((x) => x.typeName)).toEqual(['envoy.extensions.filters.http.router.v3.Router']);
    if (f.hcm.routeSource.kind !== 'static') throw new Error('expected static routes');
    const routes = f.hcm.routeSource.config.virtualHosts[0]!.routes;
    expect(routes[0]!.action).toMatchObject({
      kind: 'route',
      cluster: { kind: 'cluster', name: 'service1' },
      timeoutMs: 15_000,
    });
    expect(routes[1]!.action).toMatchObject({ timeoutMs: 2500, retryPolicy: { numRetries: 2 } });
    const [c1, c2] = bootstrap.staticResources.clusters;
    expect(c1).toMatchObject({
      name: 'service1',
      type: 'STRICT_DNS',
      connectTimeoutMs: 250,
      upstreamProtocol: 'http1',
    });
    expect(c2).toMatchObject({
      lbPolicy: 'LEAST_REQUEST',
      lbConfig: { leastRequest: { choiceCount: 2 } },
      upstreamProtocol: 'http2',
    });
    expect(Object.isFrozen(bootstrap)).toBe(true);
    expect(Object.isFrozen(bootstrap.staticResources.clusters[0]!.loadAssignment!.endpoints)).toBe(true);
  });

  it('the same config as JSON with camelCase keys decodes identically', () => {
    const yaml = loadBootstrap(join(FIXTURES, 'front-proxy.yaml'), ctx()).bootstrap;
    const camel = (v: unknown): unknown => {
      if (Array.isArray(v)) return v.map(camel);
      if (v && typeof v === 'object') {
        return Object.fromEntries(
          Object.entries(v).map(([k, x]) => [
            k.startsWith('@') || k.includes('.') ? k : k.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()),
            camel(x),
          ]),
        );
      }
      return v;
    };
    const file = join(tmp, 'front.json');
    // Round-trip through the YAML parser's output, camel-cased.
    const raw = parseBootstrapText(readFileSync(join(FIXTURES, 'front-proxy.yaml'), 'utf8'), 'x.yaml');
    writeFileSync(file, JSON.stringify(camel(raw)));
    const json = loadBootstrap(file, ctx());
    expect(json.warnings).toEqual([]);
    expect(JSON.stringify(json.bootstrap)).toBe(JSON.stringify(yaml));
  });
});

describe('bootstrap errors', () => {
  it('lists every issue with its path in the ConfigError message', () => {
    const raw = {
      static_resources: {
        clusters: [staticCluster('a', { lb_policy: 'ROUND_ROBBIN' }), staticCluster('b', { connect_timeout: 'soon' })],
      },
    };
    let err: ConfigError | undefined;
    try {
      decodeBootstrap(raw, ctx());
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.code).toBe('MESHLET_ERR_BOOTSTRAP');
    expect(err!.message).toContain(
      'static_resources.clusters[0].lb_policy: unknown value "ROUND_ROBBIN" (expected one of ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM, MAGLEV, CLUSTER_PROVIDED, LOAD_BALANCING_POLICY_CONFIG, PEAK_EWMA)',
    );
    expect(err!.message).toContain(
      'static_resources.clusters[1].connect_timeout: expected a duration such as "0.25s", got "soon"',
    );
    expect(err!.issues).toHaveLength(2);
  });

  it('rejects duplicate cluster names', () => {
    expect(
      issuesOf(() =>
        decodeBootstrap({ static_resources: { clusters: [staticCluster('a'), staticCluster('a')] } }, ctx()),
      ),
    ).toEqual([
      {
        path: 'static_resources.clusters[1].name',
        message: 'duplicate cluster name "a" (also static_resources.clusters[0])',
      },
    ]);
  });

  it('rejects duplicate listener names and addresses', () => {
    const raw = {
      static_resources: {
        clusters: [staticCluster('service1')],
        listeners: [listener(), listener(), listener({ name: 'other' })],
      },
    };
    expect(issuesOf(() => decodeBootstrap(raw, ctx()))).toEqual([
      {
        path: 'static_resources.listeners[1].name',
        message: 'duplicate listener name "ingress" (also static_resources.listeners[0])',
      },
      {
        path: 'static_resources.listeners[1].address',
        message: 'address 0.0.0.0:8080 is already used by static_resources.listeners[0]',
      },
      {
        path: 'static_resources.listeners[2].address',
        message: 'address 0.0.0.0:8080 is already used by static_resources.listeners[0]',
      },
    ]);
  });

  it('allows the same address on listeners that do not bind', () => {
    const raw = {
      static_resources: {
        clusters: [staticCluster('service1')],
        listeners: [listener(), listener({ name: 'virtual', bind_to_port: false })],
      },
    };
    expect(decodeBootstrap(raw, ctx()).bootstrap.staticResources.listeners).toHaveLength(2);
  });

  it('reports route and tcp_proxy clusters missing from static clusters when there is no CDS', () => {
    const tcp = {
      name: 'tcp',
      address: { socket_address: { address: '0.0.0.0', port_value: 9000 } },
      filter_chains: [
        { filters: [{ name: 'tcp', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: 'tcp', cluster: 'nope' } }] },
      ],
    };
    const raw = { static_resources: { listeners: [listener(), tcp] } };
    expect(issuesOf(() => decodeBootstrap(raw, ctx()))).toEqual([
      {
        path: 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.cluster',
        message: 'unknown cluster "service1"',
      },
      {
        path: 'static_resources.listeners[1].filter_chains[0].filters[0].typed_config.cluster',
        message: 'unknown cluster "nope"',
      },
    ]);
  });

  it('does not check route clusters when CDS is configured, but the ADS cluster must be static and non-EDS', () => {
    const ads = (cluster: string) => ({
      ads_config: { api_type: 'GRPC', grpc_services: [{ envoy_grpc: { cluster_name: cluster } }] },
      cds_config: { ads: {} },
      lds_config: { ads: {} },
    });
    const ok = decodeBootstrap(
      {
        static_resources: { clusters: [staticCluster('xds')], listeners: [listener()] },
        node: NODE,
        dynamic_resources: ads('xds'),
      },
      ctx(),
    );
    expect(ok.bootstrap.dynamicResources).toEqual({
      adsConfig: {
        apiType: 'GRPC',
        grpcServices: [{ kind: 'envoy_grpc', clusterName: 'xds' }],
        setNodeOnFirstMessageOnly: false,
      },
      ldsConfig: { kind: 'ads' },
      cdsConfig: { kind: 'ads' },
      initialFetchTimeoutMs: 15_000,
    });
    expect(issuesOf(() => decodeBootstrap({ node: NODE, dynamic_resources: ads('xds') }, ctx()))).toEqual([
      {
        path: 'dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name',
        message: 'envoy_grpc cluster "xds" must be a statically defined cluster',
      },
    ]);
    const eds = { name: 'xds', type: 'EDS', eds_cluster_config: { eds_config: { ads: {} } } };
    expect(
      issuesOf(() =>
        decodeBootstrap({ static_resources: { clusters: [eds] }, node: NODE, dynamic_resources: ads('xds') }, ctx()),
      ),
    ).toEqual([
      {
        path: 'dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name',
        message: 'envoy_grpc cluster "xds" must be a statically defined non-EDS cluster',
      },
    ]);
  });

  it('ADS needs a node id and cluster, as in Envoy', () => {
    const dynamic = { ads_config: { api_type: 'GRPC', grpc_services: [{ envoy_grpc: { cluster_name: 'xds' } }] } };
    const static_resources = { clusters: [staticCluster('xds')] };
    expect(issuesOf(() => decodeBootstrap({ static_resources, dynamic_resources: dynamic }, ctx()))).toEqual([
      { path: 'node', message: 'node id is required when dynamic_resources.ads_config is set' },
      { path: 'node', message: 'node cluster is required when dynamic_resources.ads_config is set' },
    ]);
    expect(
      issuesOf(() => decodeBootstrap({ node: { id: 'a' }, static_resources, dynamic_resources: dynamic }, ctx())),
    ).toEqual([{ path: 'node.cluster', message: 'node cluster is required when dynamic_resources.ads_config is set' }]);
  });

  it('an ads config source without ads_config is an error', () => {
    expect(issuesOf(() => decodeBootstrap({ dynamic_resources: { lds_config: { ads: {} } } }, ctx()))).toEqual([
      { path: 'dynamic_resources.lds_config.ads', message: 'an ADS config source needs dynamic_resources.ads_config' },
    ]);
  });

  it('names the line of a YAML syntax error', () => {
    const file = join(tmp, 'broken.yaml');
    writeFileSync(file, 'node:\n  id: a\nstatic_resources:\n  clusters: [\n    - name: x\n');
    const issues = issuesOf(() => loadBootstrap(file, ctx()));
    expect(issues.length).toBeGreaterThan(0);
    expect(issues[0]!.path).toMatch(/^line \d+$/);
    expect(issues[0]!.message).toMatch(/^invalid YAML: /);
  });

  it('names the line of a JSON syntax error', () => {
    const file = join(tmp, 'broken.json');
    writeFileSync(file, '{\n  "node": {\n    "id": "a",\n  }\n}\n');
    const issues = issuesOf(() => loadBootstrap(file, ctx()));
    expect(issues).toHaveLength(1);
    expect(issues[0]!.path).toBe('line 4');
    expect(issues[0]!.message).toMatch(/^invalid JSON: /);
  });

  it('a missing file is a ConfigError', () => {
    const issues = issuesOf(() => loadBootstrap(join(tmp, 'nope.yaml'), ctx()));
    expect(issues[0]!.path).toBe('(file)');
    expect(issues[0]!.message).toMatch(/^cannot read: ENOENT/);
  });

  it('returns warnings for unsupported fields instead of dropping them silently', () => {
    const { warnings } = decodeBootstrap(
      { node: { id: 'n', cluster: 'c' }, watchdogs: {}, overload_manager: {} },
      ctx(),
    );
    expect(warnings).toEqual([
      { path: 'watchdogs', message: 'not supported by meshlet, ignored' },
      { path: 'overload_manager', message: 'not supported by meshlet, ignored' },
    ]);
  });
});

describe('sidecar bootstrap (Istio-shaped)', () => {
  it('decodes node, ADS, static secrets referenced by SDS name, and tracing', () => {
    const { bootstrap, warnings } = loadBootstrap(join(FIXTURES, 'sidecar.yaml'), ctx());
    expect(warnings).toEqual([]);
    expect(bootstrap.node).toEqual({
      id: 'sidecar~10.1.2.3~reviews-v1-abc.default~default.svc.cluster.local',
      cluster: 'reviews.default',
      metadata: { NAMESPACE: 'default', ISTIO_VERSION: '1.24.0', LABELS: { app: 'reviews', version: 'v1' } },
      locality: { region: 'us-east1', zone: 'us-east1-b', subZone: '' },
      userAgentName: 'meshlet',
      userAgentVersion: '',
    });
    expect(bootstrap.dynamicResources).toEqual({
      adsConfig: {
        apiType: 'DELTA_GRPC',
        grpcServices: [{ kind: 'envoy_grpc', clusterName: 'xds-grpc' }],
        setNodeOnFirstMessageOnly: true,
      },
      ldsConfig: { kind: 'ads' },
      cdsConfig: { kind: 'ads' },
      initialFetchTimeoutMs: 0,
    });
    expect(bootstrap.staticResources.secrets.map((s) => s.name)).toEqual(['xds-client-cert', 'xds-root']);
    const xds = bootstrap.staticResources.clusters[0]!;
    expect(xds.upstreamProtocol).toBe('http2');
    expect(xds.transportSocket).toMatchObject({
      sni: 'istiod.istio-system.svc',
      common: {
        tlsCertificateSdsSecretConfigs: [{ name: 'xds-client-cert' }],
        validationContextSdsSecretConfig: { name: 'xds-root' },
      },
    });
    // With CDS configured, a route to a cluster that is not static yet is accepted.
    expect(bootstrap.staticResources.listeners[0]!.name).toBe('prometheus');
    expect(bootstrap.tracing).toEqual({
      provider: 'opentelemetry',
      grpcService: { kind: 'envoy_grpc', clusterName: 'otel', timeoutMs: 250 },
      serviceName: 'reviews.default',
    });
  });

  it('reports an SDS secret name that is neither static nor fetched over SDS', () => {
    const cluster = staticCluster('c', {
      transport_socket: {
        name: 'envoy.transport_sockets.tls',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
          common_tls_context: {
            tls_certificate_sds_secret_configs: [{ name: 'missing' }, { name: 'remote', sds_config: { ads: {} } }],
          },
        },
      },
    });
    expect(issuesOf(() => decodeBootstrap({ static_resources: { clusters: [cluster] } }, ctx()))).toEqual([
      {
        path: 'static_resources.clusters[0].transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0].name',
        message: 'unknown static secret "missing" (no sds_config, and not in static_resources.secrets)',
      },
      {
        path: 'static_resources.clusters[0].transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[1].sds_config.ads',
        message: 'an ADS config source needs dynamic_resources.ads_config',
      },
    ]);
  });

  it('reports a tracing cluster that does not exist (no CDS), and google_grpc with TLS credentials', () => {
    const raw = {
      tracing: {
        http: {
          name: 'otel',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig',
            grpc_service: { envoy_grpc: { cluster_name: 'otel' } },
          },
        },
      },
    };
    expect(issuesOf(() => decodeBootstrap(raw, ctx()))).toEqual([
      { path: 'tracing.http.typed_config.grpc_service.envoy_grpc.cluster_name', message: 'unknown cluster "otel"' },
    ]);
    const g = decodeBootstrap(
      {
        node: NODE,
        dynamic_resources: {
          ads_config: {
            api_type: 'GRPC',
            grpc_services: [
              {
                google_grpc: {
                  target_uri: 'istiod.istio-system.svc:15012',
                  stat_prefix: 'xds',
                  channel_credentials: { ssl_credentials: { root_certs: { filename: '/etc/certs/root.pem' } } },
                },
              },
            ],
          },
          cds_config: { ads: {} },
        },
      },
      ctx(),
    );
    expect(g.bootstrap.dynamicResources!.adsConfig!.grpcServices).toEqual([
      {
        kind: 'google_grpc',
        targetUri: 'istiod.istio-system.svc:15012',
        statPrefix: 'xds',
        ssl: { rootCerts: { kind: 'filename', value: '/etc/certs/root.pem' } },
      },
    ]);
    expect(g.bootstrap.dynamicResources!.initialFetchTimeoutMs).toBe(15_000);
  });

  it('a non-aggregated LDS/CDS source must name the ADS server (meshlet asks for every type on that stream)', () => {
    const grpc = (cluster: string) => ({ api_type: 'GRPC', grpc_services: [{ envoy_grpc: { cluster_name: cluster } }] });
    const base = { node: NODE, static_resources: { clusters: [staticCluster('xds'), staticCluster('other')] } };
    // Same server as ADS: accepted.
    expect(() =>
      decodeBootstrap({ ...base, dynamic_resources: { ads_config: grpc('xds'), lds_config: { api_config_source: grpc('xds') } } }, ctx()),
    ).not.toThrow();
    expect(
      issuesOf(() =>
        decodeBootstrap(
          { ...base, dynamic_resources: { ads_config: grpc('xds'), cds_config: { api_config_source: grpc('other') } } },
          ctx(),
        ),
      ),
    ).toEqual([
      {
        path: 'dynamic_resources.cds_config.api_config_source',
        message: 'names cluster other but ads_config names cluster xds; meshlet requests every type on the one ADS stream, so both must name the same server',
      },
    ]);
    expect(issuesOf(() => decodeBootstrap({ ...base, dynamic_resources: { lds_config: { api_config_source: grpc('xds') } } }, ctx()))).toEqual([
      {
        path: 'dynamic_resources.lds_config.api_config_source',
        message: 'meshlet requests listeners on one ADS stream: set dynamic_resources.ads_config (to cluster xds) or use ads: {}',
      },
    ]);
  });

  it('reports unsupported config source and ADS api types', () => {
    const raw = {
      node: NODE,
      dynamic_resources: {
        ads_config: { api_type: 'REST', grpc_services: [] },
        lds_config: { api_config_source: { api_type: 'REST', cluster_names: ['x'] } },
      },
    };
    expect(issuesOf(() => decodeBootstrap(raw, ctx()))).toEqual([
      {
        path: 'dynamic_resources.ads_config.api_type',
        message: 'REST is not supported by meshlet (expected GRPC or DELTA_GRPC)',
      },
      { path: 'dynamic_resources.ads_config.grpc_services', message: 'at least one gRPC service is required' },
      {
        path: 'dynamic_resources.lds_config.api_config_source.cluster_names',
        message: 'REST config sources are not supported by meshlet',
      },
      {
        path: 'dynamic_resources.lds_config.api_config_source.api_type',
        message: 'REST is not supported by meshlet (expected GRPC or DELTA_GRPC)',
      },
    ]);
  });
});
