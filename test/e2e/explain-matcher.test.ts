/**
 * admin /explain on a listener with filter_chain_matcher (istiod's virtualInbound shape: a
 * destination-port map, then an application-protocol map) selects the chain with the proxy's own
 * matcher code, as the listener does — not with filter_chain_match, which such a listener does not
 * use. The chain order is chosen so that the old selection (first of two match-all chains) would
 * answer differently; a real request shows which one the listener takes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExplainResult } from '../../proxy/admin/explain';
import { bootstrap, HCM_TYPE, ROUTER_TYPE, socketAddress, staticCluster, startMeshlet, type StartedMeshlet, stopAllMeshlets, TCP_PROXY_TYPE } from '../support/meshlet';
import { closeAll, closedPort, getText, startHttpEcho } from '../support/upstreams';

const TP = 'type.googleapis.com/';
const NET = `${TP}envoy.extensions.matching.common_inputs.network.v3.`;
const toChain = (name: string) => ({ action: { name, typed_config: { '@type': `${TP}google.protobuf.StringValue`, value: name } } });

let m: StartedMeshlet;
let port: number;

beforeAll(async () => {
  const web = await startHttpEcho('web');
  const raw = await startHttpEcho('raw');
  port = await closedPort();
  const listener = {
    name: 'inbound',
    address: socketAddress(port),
    listener_filters: [{ name: 'envoy.filters.listener.http_inspector', typed_config: { '@type': `${TP}envoy.extensions.filters.listener.http_inspector.v3.HttpInspector` } }],
    filter_chains: [
      { name: 'tcp', filters: [{ name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: 'tcp', cluster: 'raw' } }] },
      {
        name: 'http',
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': HCM_TYPE,
              stat_prefix: 'http',
              route_config: { name: 'r', virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ name: 'default', match: { prefix: '/' }, route: { cluster: 'web' } }] }] },
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } }],
            },
          },
        ],
      },
    ],
    filter_chain_matcher: {
      matcher_tree: {
        input: { name: 'port', typed_config: { '@type': `${NET}DestinationPortInput` } },
        exact_match_map: {
          map: {
            [String(port)]: {
              matcher: {
                matcher_tree: {
                  input: { name: 'alpn', typed_config: { '@type': `${NET}ApplicationProtocolInput` } },
                  exact_match_map: { map: { "'http/1.1'": toChain('http'), "'h2c'": toChain('http') } },
                },
                on_no_match: toChain('tcp'),
              },
            },
          },
        },
      },
    },
  };
  m = await startMeshlet(bootstrap([listener], [staticCluster('web', [web.port]), staticCluster('raw', [raw.port])]));
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

async function explain(url: string): Promise<ExplainResult> {
  const r = await getText(m.adminPort, `/explain?listener=inbound&url=${encodeURIComponent(url)}`);
  expect(r.status).toBe(200);
  return JSON.parse(r.body) as ExplainResult;
}

describe('/explain on a filter_chain_matcher listener', () => {
  it("selects the chain the matcher names, and the listener's real choice agrees", async () => {
    const e = await explain(`http://127.0.0.1:${port}/x`);
    expect(e.filterChain).toMatchObject({ name: 'http', default: false, matcher: { selected: 'http' } });
    expect(e.filterChain?.candidates).toEqual([
      { name: 'tcp', chosen: false, reason: 'filter_chain_matcher selected "http"' },
      { name: 'http', chosen: true },
    ]);
    expect(e.clusters).toEqual([{ name: 'web' }]);
    const real = await getText(port, '/x');
    expect(JSON.parse(real.body)).toMatchObject({ upstream: 'web' });
  });

  it('says the connection is closed when the tree matches nothing and there is no default chain', async () => {
    const e = await explain(`http://127.0.0.1:${port + 1}/x`);
    expect(e.filterChain).toBeUndefined();
    expect(e.verdict).toBe('filter_chain_matcher matched no chain and there is no default_filter_chain: the connection is closed');
  });
});
