/**
 * Protocol detection that favours availability, through real meshlet listeners: a server-first
 * protocol on a port whose inspectors are disabled (Envoy's listener filter `filter_disabled`,
 * how Istio marks opaque / server-first ports) gets its greeting at once with detection skipped;
 * an undeclared server-first port falls back to opaque TCP after the bounded wait
 * (continue_on_listener_filters_timeout); detection outcomes and time are counted per listener
 * and process-wide. Plus decoding of filter_disabled with its errors.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeListener } from '../../proxy/config/envoy';
import { DETECTION_BUCKETS_MS, protocolDetection } from '../../proxy/detect/stats';
import { predicateMatches } from '../../proxy/listeners/listener';
import { bootstrap, socketAddress, startMeshlet, staticCluster, stopAllMeshlets, TCP_PROXY_TYPE } from '../support/meshlet';
import { ctx } from '../config/helpers';
import { closeAll, startHttpEcho } from '../support/upstreams';

const INSPECTORS = (disabled?: Record<string, unknown>) => [
  {
    name: 'envoy.filters.listener.tls_inspector',
    typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' },
    ...(disabled ? { filter_disabled: disabled } : {}),
  },
  {
    name: 'envoy.filters.listener.http_inspector',
    typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector' },
    ...(disabled ? { filter_disabled: disabled } : {}),
  },
];

let greeter: net.Server;
let greeterPort = 0;

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

function tcpListenerOn(name: string, port: number, cluster: string, extra: Record<string, unknown>): Record<string, unknown> {
  return {
    name,
    address: socketAddress(port),
    filter_chains: [{ filters: [{ name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: name, cluster } }] }],
    ...extra,
  };
}

/** Connect, send nothing, wait for the server's greeting line. */
function greeting(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    let b = '';
    c.on('data', (d) => {
      b += d;
      if (b.includes('\r\n')) {
        c.destroy();
        resolve(b);
      }
    });
    c.on('error', reject);
  });
}

beforeAll(async () => {
  greeter = net.createServer((s) => {
    s.on('error', () => {});
    s.write('220 smtp.example ESMTP ready\r\n');
  });
  await new Promise<void>((r) => greeter.listen(0, '127.0.0.1', r));
  greeterPort = (greeter.address() as net.AddressInfo).port;
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
  await new Promise((r) => greeter.close(r));
});

describe('detection skipped on opaque / server-first ports', () => {
  it('a server-first protocol gets its greeting at once; detection is skipped, not waited out', async () => {
    const port = await freePort();
    const m = await startMeshlet(
      bootstrap(
        [
          tcpListenerOn('smtp', port, 'smtp', {
            // A long wait and no continue: were detection to run, the client would get nothing.
            listener_filters: INSPECTORS({ or_match: { rules: [{ destination_port_range: { start: 25, end: 26 } }, { destination_port_range: { start: port, end: port + 1 } }] } }),
            listener_filters_timeout: '60s',
          }),
        ],
        [staticCluster('smtp', [greeterPort])],
      ),
    );
    const global = { ...protocolDetection.outcomes };
    expect(await greeting(port)).toBe('220 smtp.example ESMTP ready\r\n');
    const l = m.server.listeners.get('smtp')!;
    expect(l.detection.outcomes.skipped).toBe(1);
    expect(l.detection.count).toBe(0);
    expect(protocolDetection.outcomes.skipped).toBe(global.skipped + 1);
  });

  it('an undeclared server-first port continues as opaque TCP after the bounded wait', async () => {
    const m = await startMeshlet(
      bootstrap(
        [
          tcpListenerOn('undeclared', 0, 'smtp', {
            listener_filters: INSPECTORS({ destination_port_range: { start: 25, end: 26 } }),
            listener_filters_timeout: '0.2s',
            continue_on_listener_filters_timeout: true,
          }),
        ],
        [staticCluster('smtp', [greeterPort])],
      ),
    );
    expect(await greeting(m.listenerPort('undeclared'))).toBe('220 smtp.example ESMTP ready\r\n');
    const d = m.server.listeners.get('undeclared')!.detection;
    expect(d.outcomes.timeout).toBe(1);
    expect(d.outcomes.skipped).toBe(0);
    expect(d.count).toBe(1);
    // The wait is recorded in the histogram, in a bucket at or above 100 ms (the 0.2 s timeout).
    const firstHit = d.buckets.findIndex((n) => n > 0);
    expect(DETECTION_BUCKETS_MS[firstHit] ?? Number.POSITIVE_INFINITY).toBeGreaterThanOrEqual(100);
  });

  it('client-first traffic is detected and counted by outcome, with a cumulative histogram', async () => {
    const echo = await startHttpEcho('detect-echo');
    const m = await startMeshlet(
      bootstrap(
        [tcpListenerOn('detect', 0, 'echo', { listener_filters: INSPECTORS(), listener_filters_timeout: '5s' })],
        [staticCluster('echo', [echo.port])],
      ),
    );
    const status = await new Promise<number>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: m.listenerPort('detect'), path: '/', agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        })
        .on('error', reject);
    });
    expect(status).toBe(200);
    const d = m.server.listeners.get('detect')!.detection;
    expect(d.outcomes.http1).toBe(1);
    expect(d.count).toBe(1);
    const cum = d.cumulative();
    expect(cum.at(-1)).toEqual([Number.POSITIVE_INFINITY, 1]);
    expect(cum.every(([, n], i) => i === 0 || n >= cum[i - 1]![1])).toBe(true);
  });
});

describe('filter_disabled', () => {
  it('decodes or/and/not/any/destination_port_range', () => {
    const { value, errors } = decodeListener(
      tcpListenerOn('l', 15006, 'c', {
        listener_filters: INSPECTORS({
          or_match: {
            rules: [
              { destination_port_range: { start: 3306, end: 3307 } },
              { and_match: { rules: [{ any_match: true }, { not_match: { destination_port_range: { start: 1, end: 1024 } } }] } },
            ],
          },
        }),
      }),
      ctx(),
    );
    expect(errors).toEqual([]);
    const p = value!.listenerFilters[0]!.filterDisabled!;
    expect(predicateMatches(p, 3306)).toBe(true);
    expect(predicateMatches(p, 3307)).toBe(true);
    expect(predicateMatches(p, 80)).toBe(false);
    expect(predicateMatches(p, 1023)).toBe(false);
  });

  it('reports bad predicates with their paths', () => {
    const { errors } = decodeListener(
      tcpListenerOn('l', 15006, 'c', {
        listener_filters: [
          {
            name: 'envoy.filters.listener.http_inspector',
            filter_disabled: { or_match: { rules: [{ destination_port_range: { start: 10, end: 10 } }] } },
          },
        ],
      }),
      ctx(),
    );
    expect(errors.map((e) => e.path)).toEqual([
      'listener_filters[0].filter_disabled.or_match.rules',
      'listener_filters[0].filter_disabled.or_match.rules[0].destination_port_range.end',
    ]);
  });
});
