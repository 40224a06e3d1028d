/**
 * envoy.filters.http.grpc_stats through a real meshlet with real @grpc/grpc-js clients and server:
 * cluster.<name>.grpc[.<service>.<method>].success/failure/total/<status> and the message counts,
 * per method with stats_for_all_methods, only allowlisted methods with
 * individual_method_stats_allowlist, cluster-level otherwise; emit_filter_state on the stream;
 * /stats and /stats/prometheus; config validation.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeGrpcStats, FrameCounter, splitServiceMethod } from '../../proxy/http/filters/grpc-stats';
import type { StreamInfo } from '../../proxy/http/stream-info';
import { decodeWith, startGrpcServer, stopGrpcServer } from '../gateway/helpers';
import { bootstrap, httpListener, routes, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { getText } from '../support/upstreams';

const GS = 'type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

const ser = (m: { text: string }): Buffer => Buffer.from(JSON.stringify(m));
const de = (b: Buffer): { text: string } => JSON.parse(b.toString()) as { text: string };
const method = (path: string, requestStream: boolean, responseStream: boolean) => ({
  path,
  requestStream,
  responseStream,
  requestSerialize: ser,
  requestDeserialize: de,
  responseSerialize: ser,
  responseDeserialize: de,
});
const Greeter = {
  say: method('/meshlet.test.Greeter/Say', false, false),
  collect: method('/meshlet.test.Greeter/Collect', true, false),
  list: method('/meshlet.test.Greeter/List', false, true),
} as unknown as grpc.ServiceDefinition;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- generic client methods are dynamically typed
type GreeterClient = grpc.Client & Record<string, any>;
const GreeterCtor = grpc.makeGenericClientConstructor(Greeter, 'Greeter') as unknown as new (a: string, c: grpc.ChannelCredentials) => GreeterClient;

let m: StartedMeshlet;
let server: grpc.Server | undefined;
const streams: StreamInfo[] = [];

const h2 = {
  typed_extension_protocol_options: {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      explicit_http_config: { http2_protocol_options: {} },
    },
  },
};

function listener(name: string, config: Record<string, unknown>, cluster: string): Record<string, unknown> {
  return httpListener(name, routes([{ match: { prefix: '/' }, route: { cluster } }]), {
    http_filters: [
      { name: 'envoy.filters.http.grpc_stats', typed_config: { '@type': GS, ...config } },
      { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } },
    ],
  });
}

beforeAll(async () => {
  const started = await startGrpcServer(Greeter, {
    say: (call: grpc.ServerUnaryCall<{ text: string }, { text: string }>, cb: grpc.sendUnaryData<{ text: string }>) => {
      if (call.request.text === 'deny') cb({ code: grpc.status.PERMISSION_DENIED, details: 'not you' });
      else cb(null, { text: `hello ${call.request.text}` });
    },
    collect: (call: grpc.ServerReadableStream<{ text: string }, { text: string }>, cb: grpc.sendUnaryData<{ text: string }>) => {
      const got: string[] = [];
      call.on('data', (d: { text: string }) => got.push(d.text));
      call.on('end', () => cb(null, { text: got.join(',') }));
    },
    list: (call: grpc.ServerWritableStream<{ text: string }, { text: string }>) => {
      for (let i = 0; i < 3; i++) call.write({ text: `${call.request.text}${i}` });
      call.end();
    },
  });
  server = started.server;
  m = await startMeshlet(
    bootstrap(
      [
        listener('all', { stats_for_all_methods: true, emit_filter_state: true }, 'greeter_all'),
        listener('allow', { individual_method_stats_allowlist: { services: [{ name: 'meshlet.test.Greeter', method_names: ['Say'] }] } }, 'greeter_allow'),
        listener('plain', {}, 'greeter_plain'),
      ],
      [
        staticCluster('greeter_all', [started.port], h2),
        staticCluster('greeter_allow', [started.port], h2),
        staticCluster('greeter_plain', [started.port], h2),
      ],
    ),
    { onHttpStream: (info) => streams.push(info) },
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await stopGrpcServer(server);
});

function client(listenerName: string): GreeterClient {
  return new GreeterCtor(`127.0.0.1:${m.listenerPort(listenerName)}`, grpc.credentials.createInsecure());
}

function say(c: GreeterClient, text: string): Promise<grpc.ServiceError | { text: string }> {
  return new Promise((resolve) => c.say({ text }, (err: grpc.ServiceError | null, res: { text: string }) => resolve(err ?? res)));
}

async function stats(): Promise<Map<string, number>> {
  const { body } = await getText(m.adminPort, '/stats?filter=grpc');
  return new Map(body.split('\n').filter(Boolean).map((l) => [l.slice(0, l.lastIndexOf(': ')), Number(l.slice(l.lastIndexOf(': ') + 2))]));
}

describe('grpc_stats counters', () => {
  it('stats_for_all_methods: per-method success/failure/total, status and message counts', async () => {
    const c = client('all');
    try {
      expect(await say(c, 'a')).toEqual({ text: 'hello a' });
      expect(await say(c, 'b')).toEqual({ text: 'hello b' });
      expect((await say(c, 'deny')) as grpc.ServiceError).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
      const collected = await new Promise<{ text: string }>((resolve, reject) => {
        const call = c.collect((err: grpc.ServiceError | null, res: { text: string }) => (err ? reject(err) : resolve(res)));
        for (const t of ['x', 'y', 'z', 'w']) call.write({ text: t });
        call.end();
      });
      expect(collected.text).toBe('x,y,z,w');
      const listed: string[] = [];
      await new Promise<void>((resolve, reject) => {
        const call = c.list({ text: 'n' });
        call.on('data', (d: { text: string }) => listed.push(d.text));
        call.on('error', reject);
        call.on('end', () => resolve());
      });
      expect(listed).toEqual(['n0', 'n1', 'n2']);
    } finally {
      c.close();
    }
    const s = await stats();
    const p = 'cluster.greeter_all.grpc.meshlet.test.Greeter.';
    expect(s.get(`${p}Say.success`)).toBe(2);
    expect(s.get(`${p}Say.failure`)).toBe(1);
    expect(s.get(`${p}Say.total`)).toBe(3);
    expect(s.get(`${p}Say.0`)).toBe(2);
    expect(s.get(`${p}Say.7`)).toBe(1);
    expect(s.get(`${p}Say.request_message_count`)).toBe(3);
    expect(s.get(`${p}Say.response_message_count`)).toBe(2);
    expect(s.get(`${p}Collect.request_message_count`)).toBe(4);
    expect(s.get(`${p}Collect.response_message_count`)).toBe(1);
    expect(s.get(`${p}List.request_message_count`)).toBe(1);
    expect(s.get(`${p}List.response_message_count`)).toBe(3);
    expect(s.get(`${p}List.success`)).toBe(1);
    // emit_filter_state: the counts are on the stream for access logs.
    const collect = streams.find((i) => i.path === '/meshlet.test.Greeter/Collect');
    expect(collect?.metadata('envoy.filters.http.grpc_stats.request_message_count')).toBe('4');
    expect(collect?.metadata('envoy.filters.http.grpc_stats.response_message_count')).toBe('1');

    const prom = (await getText(m.adminPort, '/stats/prometheus')).body;
    expect(prom).toContain(
      'envoy_cluster_grpc_success_total{envoy_cluster_name="greeter_all",envoy_grpc_bridge_service="meshlet.test.Greeter",envoy_grpc_bridge_method="Say"} 2',
    );
    expect(prom).toContain(
      'envoy_cluster_grpc_request_message_count_total{envoy_cluster_name="greeter_all",envoy_grpc_bridge_service="meshlet.test.Greeter",envoy_grpc_bridge_method="Collect"} 4',
    );
  });

  it('an allowlist names the listed methods; the others share the cluster-level counters', async () => {
    const c = client('allow');
    try {
      await say(c, 'a');
      await new Promise<void>((resolve, reject) => {
        const call = c.list({ text: 'q' });
        call.on('data', () => undefined);
        call.on('error', reject);
        call.on('end', () => resolve());
      });
    } finally {
      c.close();
    }
    const s = await stats();
    expect(s.get('cluster.greeter_allow.grpc.meshlet.test.Greeter.Say.success')).toBe(1);
    expect(s.get('cluster.greeter_allow.grpc.success')).toBe(1);
    expect(s.get('cluster.greeter_allow.grpc.response_message_count')).toBe(3);
    expect([...s.keys()].some((k) => k.includes('greeter_allow.grpc.meshlet.test.Greeter.List'))).toBe(false);
    const prom = (await getText(m.adminPort, '/stats/prometheus')).body;
    expect(prom).toContain('envoy_cluster_grpc_total{envoy_cluster_name="greeter_allow"} 1');
  });

  it('by default (no per-method setting) every method is counted at the cluster level', async () => {
    const c = client('plain');
    try {
      await say(c, 'a');
      await say(c, 'deny');
    } finally {
      c.close();
    }
    const s = await stats();
    expect(s.get('cluster.greeter_plain.grpc.success')).toBe(1);
    expect(s.get('cluster.greeter_plain.grpc.failure')).toBe(1);
    expect(s.get('cluster.greeter_plain.grpc.total')).toBe(2);
    expect(s.get('cluster.greeter_plain.grpc.7')).toBe(1);
    expect([...s.keys()].some((k) => k.startsWith('cluster.greeter_plain.grpc.meshlet'))).toBe(false);
  });
});

describe('grpc_stats pieces', () => {
  it('counts frames split anywhere across chunks, and stops at a bad flags byte', () => {
    const frame = (n: number) => Buffer.concat([Buffer.from([0, 0, 0, 0, n]), Buffer.alloc(n, 7)]);
    const all = Buffer.concat([frame(3), frame(0), frame(300)]);
    for (let cut = 0; cut <= all.length; cut++) {
      const f = new FrameCounter();
      expect(f.inspect(all.subarray(0, cut)) + f.inspect(all.subarray(cut)), `cut ${cut}`).toBe(3);
    }
    const f = new FrameCounter();
    expect(f.inspect(Buffer.from([0x80, 0, 0, 0, 0]))).toBe(0);
    expect(f.inspect(frame(1))).toBe(0);
  });

  it('splits paths as Envoy does (exactly two non-empty segments)', () => {
    const out = [0, 0, 0, 0];
    expect(splitServiceMethod('/a.B/C', out)).toBe(true);
    expect(out).toEqual([1, 4, 5, 6]);
    expect(splitServiceMethod('/a.B/C/', out)).toBe(true);
    expect(splitServiceMethod('/a.B', out)).toBe(false);
    expect(splitServiceMethod('/a/b/c', out)).toBe(false);
  });

  it('validates its config with paths', () => {
    const both = decodeWith(decodeGrpcStats, { stats_for_all_methods: true, individual_method_stats_allowlist: { services: [] } });
    expect(both.errors.map((e) => e.path)).toEqual(['typed_config.individual_method_stats_allowlist']);
    const bad = decodeWith(decodeGrpcStats, { individual_method_stats_allowlist: { services: [{ method_names: ['X'] }] }, emit_filter_state: 'yes', extra: 1 });
    expect(bad.errors.map((e) => e.path).sort()).toEqual([
      'typed_config.emit_filter_state',
      'typed_config.individual_method_stats_allowlist.services[0].name',
    ]);
    expect(bad.warnings.map((w) => w.path)).toEqual(['typed_config.extra']);
    const up = decodeWith(decodeGrpcStats, { enable_upstream_stats: true });
    expect(up.warnings.map((w) => w.path)).toEqual(['typed_config.enable_upstream_stats']);
  });
});
