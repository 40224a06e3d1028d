/**
 * Fault injection through a real meshlet: HTTP and gRPC aborts, fixed delays (asserted by the DI
 * flag and a generous lower bound only), header-controlled faults and their percentage headers,
 * the header matcher, max_active_faults overflow, per-route HTTPFault, and config validation.
 */
import http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Issues, Reader } from '../../common/reader';
import { decodeFault, faultStats } from '../../proxy/http/filters/fault';
import type { StreamInfo } from '../../proxy/http/stream-info';
import {
  bootstrap,
  type StartedMeshlet,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
  filterListener,
} from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho } from '../support/upstreams';

const FAULT = 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault';
const P100 = { numerator: 100, denominator: 'HUNDRED' };

function listener(
  name: string,
  faultCfg: Record<string, unknown>,
  routeList: Record<string, unknown>[],
): Record<string, unknown> {
  return filterListener(name, { name: 'envoy.filters.http.fault', type: FAULT, config: faultCfg }, routeList);
}

interface Res {
  status: number;
  body: string;
}

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

let m: StartedMeshlet;
let echo: HttpEcho;
const streams: StreamInfo[] = [];
const byPath = (p: string) => streams.filter((s) => s.path === p);

beforeAll(async () => {
  echo = await startHttpEcho('echo');
  const route = { match: { prefix: '/' }, route: { cluster: 'echo' } };
  m = await startMeshlet(
    bootstrap(
      [
        listener(
          'abort',
          {
            abort: { http_status: 503, percentage: P100 },
            headers: [{ name: 'x-chaos', string_match: { exact: 'on' } }],
          },
          [
            {
              match: { prefix: '/slow' },
              route: { cluster: 'echo' },
              typed_per_filter_config: {
                'envoy.filters.http.fault': { '@type': FAULT, delay: { fixed_delay: '0.2s', percentage: P100 } },
              },
            },
            route,
          ],
        ),
        listener(
          'header',
          {
            delay: { header_delay: {}, percentage: P100 },
            abort: { header_abort: {}, percentage: P100 },
          },
          [route],
        ),
        listener('limited', { delay: { fixed_delay: '0.8s', percentage: P100 }, max_active_faults: 1 }, [route]),
        listener('grpc', { abort: { grpc_status: 14, percentage: P100 } }, [route]),
        listener('never', { abort: { http_status: 500 } }, [route]),
      ],
      [staticCluster('echo', [echo.port])],
    ),
    { onHttpStream: (i) => streams.push(i) },
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

describe('fault injection filter', () => {
  it('aborts matching requests with the configured status and flag FI, without reaching the upstream', async () => {
    const port = m.listenerPort('abort');
    const served = echo.requests.length;
    const aborted = await get(port, '/a', { 'x-chaos': 'on' });
    expect(aborted.status).toBe(503);
    expect(aborted.body).toBe('fault filter abort');
    expect(echo.requests.length).toBe(served);
    expect(byPath('/a')[0]?.hasResponseFlag('FI')).toBe(true);
    // The header matcher restricts the fault to requests that carry x-chaos: on.
    expect((await get(port, '/a')).status).toBe(200);
    expect(echo.requests.length).toBe(served + 1);
  });

  it('delays with a per-route HTTPFault and sets DI', async () => {
    const port = m.listenerPort('abort');
    const t0 = performance.now();
    const r = await get(port, '/slow');
    const elapsed = performance.now() - t0;
    expect(r.status).toBe(200);
    expect(elapsed).toBeGreaterThanOrEqual(150);
    const info = byPath('/slow')[0];
    expect(info?.hasResponseFlag('DI')).toBe(true);
    expect(info?.hasResponseFlag('FI')).toBe(false);
  });

  it('takes faults from x-envoy-fault-* headers when header_abort / header_delay are configured', async () => {
    const port = m.listenerPort('header');
    expect((await get(port, '/h0')).status).toBe(200);
    expect(byPath('/h0')[0]?.hasAnyResponseFlag).toBe(false);

    const teapot = await get(port, '/h1', { 'x-envoy-fault-abort-request': '418' });
    expect(teapot.status).toBe(418);
    expect(byPath('/h1')[0]?.hasResponseFlag('FI')).toBe(true);

    // The percentage header can only lower the configured percentage: 0 % disables the abort.
    expect(
      (await get(port, '/h2', { 'x-envoy-fault-abort-request': '500', 'x-envoy-fault-abort-request-percentage': '0' }))
        .status,
    ).toBe(200);

    const delayed = await get(port, '/h3', { 'x-envoy-fault-delay-request': '50' });
    expect(delayed.status).toBe(200);
    expect(byPath('/h3')[0]?.hasResponseFlag('DI')).toBe(true);

    // Delay then abort, both from headers.
    const both = await get(port, '/h4', { 'x-envoy-fault-delay-request': '20', 'x-envoy-fault-abort-request': '502' });
    expect(both.status).toBe(502);
    const info = byPath('/h4')[0];
    expect(info?.hasResponseFlag('DI') && info.hasResponseFlag('FI')).toBe(true);
  });

  it('max_active_faults lets one fault run and counts the overflow', async () => {
    const port = m.listenerPort('limited');
    const overflowBefore = faultStats.faultsOverflow;
    const [a, b] = await Promise.all([get(port, '/m1'), get(port, '/m2')]);
    expect([a.status, b.status]).toEqual([200, 200]);
    const delayed = [...byPath('/m1'), ...byPath('/m2')].filter((s) => s.hasResponseFlag('DI'));
    expect(delayed).toHaveLength(1);
    expect(faultStats.faultsOverflow - overflowBefore).toBe(1);
    expect(faultStats.activeFaults).toBe(0);
  });

  it('an abort without a percentage (0 % by default) never fires', async () => {
    const port = m.listenerPort('never');
    for (let i = 0; i < 5; i++) expect((await get(port, '/n')).status).toBe(200);
  });

  it('a grpc_status abort reaches a gRPC client as that status', async () => {
    const client = new grpc.Client(`127.0.0.1:${m.listenerPort('grpc')}`, grpc.credentials.createInsecure());
    try {
      const err = await new Promise<grpc.ServiceError | null>((resolve) => {
        client.makeUnaryRequest(
          '/demo.Echo/Say',
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from('hi'),
          new grpc.Metadata(),
          { deadline: Date.now() + 5_000 },
          (e) => resolve(e),
        );
      });
      expect(err?.code).toBe(grpc.status.UNAVAILABLE);
      expect(streams.some((s) => s.path === '/demo.Echo/Say' && s.hasResponseFlag('FI'))).toBe(true);
    } finally {
      client.close();
    }
  });
});

describe('fault config validation', () => {
  it('reports bad fields with their paths', () => {
    const issues = new Issues();
    decodeFault(
      new Reader(
        {
          delay: { percentage: P100 },
          abort: { http_status: 99, grpc_status: 3 },
          response_rate_limit: { fixed_limit: { limit_kbps: 1 } },
          max_active_faults: -1,
        },
        'fault',
        issues,
      ),
    );
    expect(issues.errors.map((e) => e.path)).toEqual(
      expect.arrayContaining([
        'fault.delay',
        'fault.abort.grpc_status',
        'fault.response_rate_limit',
        'fault.max_active_faults',
      ]),
    );
    const i2 = new Issues();
    decodeFault(new Reader({ abort: { http_status: 150, percentage: P100 }, delay: { fixed_delay: 'soon' } }, 'f', i2));
    expect(i2.errors.map((e) => e.path)).toEqual(
      expect.arrayContaining(['f.abort.http_status', 'f.delay.fixed_delay']),
    );
  });

  it('decodes percentages over any denominator', () => {
    const issues = new Issues();
    const cfg = decodeFault(
      new Reader(
        { delay: { fixed_delay: '1.5s', percentage: { numerator: 2500, denominator: 'TEN_THOUSAND' } } },
        '',
        issues,
      ),
    );
    expect(issues.errors).toEqual([]);
    expect(cfg.delay).toEqual({
      fixedDelayMs: 1500,
      fromHeader: false,
      percent: 25,
      fraction: { numerator: 2500, denominator: 'TEN_THOUSAND' },
    });
  });
});
