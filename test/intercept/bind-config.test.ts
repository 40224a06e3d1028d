/**
 * Inbound delivery from 127.0.0.6: a cluster's upstream_bind_config makes upstream connections
 * (TCP proxy and HTTP pools) come from the configured source address, as Istio's inbound clusters
 * do so that iptables does not capture the delivered traffic again. Decoding errors are reported
 * with their paths.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeCluster } from '../../proxy/config/envoy';
import { bootstrap, httpListener, routes, startMeshlet, staticCluster, stopAllMeshlets, tcpListener } from '../support/meshlet';
import { staticCluster as clusterShape, ctx } from '../config/helpers';

const servers: net.Server[] = [];
let seen: string[] = [];
let tcpPort = 0;
let httpPort = 0;
let httpSeen: string[] = [];

beforeAll(async () => {
  const t = net.createServer((s) => {
    seen.push(s.remoteAddress ?? '');
    s.end('hi');
  });
  const h = http.createServer((req, res) => {
    httpSeen.push(req.socket.remoteAddress ?? '');
    res.end('ok');
  });
  servers.push(t, h as unknown as net.Server);
  await new Promise<void>((r) => t.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => h.listen(0, '127.0.0.1', r));
  tcpPort = (t.address() as net.AddressInfo).port;
  httpPort = (h.address() as net.AddressInfo).port;
});

afterAll(async () => {
  await stopAllMeshlets();
  for (const s of servers) {
    (s as unknown as http.Server).closeAllConnections?.();
    await new Promise((r) => s.close(r));
  }
});

const bind = { upstream_bind_config: { source_address: { address: '127.0.0.6', port_value: 0 } } };

describe('upstream_bind_config', () => {
  it('decodes source_address and additional_source_addresses (one per family)', () => {
    const { value, errors } = decodeCluster(
      clusterShape('c', {
        upstream_bind_config: {
          source_address: { address: '127.0.0.6', port_value: 0 },
          additional_source_addresses: [{ address: { address: '::6', port_value: 0 } }],
        },
      }),
      ctx(),
    );
    expect(errors).toEqual([]);
    expect(value?.upstreamBindConfig?.sourceAddresses).toEqual([
      { address: '127.0.0.6', port: 0 },
      { address: '::6', port: 0 },
    ]);
  });

  it('reports a malformed address and a second address of the same family', () => {
    const { errors } = decodeCluster(
      clusterShape('c', {
        upstream_bind_config: {
          source_address: { address: 'not-an-ip' },
          additional_source_addresses: [{ address: { address: '10.0.0.1' } }, { address: { address: '10.0.0.2' } }],
        },
      }),
      ctx(),
    );
    expect(errors.map((e) => e.path)).toEqual([
      'upstream_bind_config.source_address.address',
      'upstream_bind_config.additional_source_addresses[1]',
    ]);
  });

  it('the TCP proxy and the HTTP router connect from 127.0.0.6', async () => {
    seen = [];
    httpSeen = [];
    const m = await startMeshlet(
      bootstrap(
        [
          tcpListener('inbound-tcp', 'inbound|tcp'),
          httpListener('inbound-http', routes([{ match: { prefix: '/' }, route: { cluster: 'inbound|http' } }])),
        ],
        [staticCluster('inbound|tcp', [tcpPort], bind), staticCluster('inbound|http', [httpPort], bind)],
      ),
    );
    const got = await new Promise<string>((resolve, reject) => {
      const c = net.connect(m.listenerPort('inbound-tcp'), '127.0.0.1');
      let b = '';
      c.on('data', (d) => (b += d));
      c.on('end', () => resolve(b));
      c.on('error', reject);
    });
    expect(got).toBe('hi');
    expect(seen).toEqual(['127.0.0.6']);
    const status = await new Promise<number>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: m.listenerPort('inbound-http'), path: '/', agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        })
        .on('error', reject);
    });
    expect(status).toBe(200);
    expect(httpSeen).toEqual(['127.0.0.6']);
  });
});
