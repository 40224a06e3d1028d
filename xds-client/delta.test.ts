import { afterEach, describe, expect, it } from 'vitest';
import { ScriptedAdsServer } from '../test/support/scripted-ads-server';
import {
  clusterAny,
  clusterType,
  endpointsAny,
  endpointsType,
  listenerAny,
  listenerType,
  RecordingWatcher,
  routeAny,
  routeType,
  type TestCluster,
  type TestListener,
  type TestRoute,
} from '../test/support/xds-fixtures';
import { XdsClient } from './client';
import { TYPE_URLS } from './protos';

const LDS = TYPE_URLS.listener;
const RDS = TYPE_URLS.routeConfiguration;
const CDS = TYPE_URLS.cluster;
const EDS = TYPE_URLS.clusterLoadAssignment;

const servers: ScriptedAdsServer[] = [];
const clients: XdsClient[] = [];

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) s.stop();
});

async function server(port = 0): Promise<ScriptedAdsServer> {
  const s = await ScriptedAdsServer.start(port);
  servers.push(s);
  return s;
}

function client(port: number, initialFetchTimeoutMs = 0): XdsClient {
  const c = new XdsClient({
    node: {
      id: 'sidecar~10.1.2.4~api-1.default~default.svc.cluster.local',
      cluster: 'api',
      metadata: {},
      userAgentName: '',
      userAgentVersion: '9.9.9',
    },
    dynamicResources: {
      adsConfig: {
        apiType: 'DELTA_GRPC',
        grpcServices: [{ kind: 'google_grpc', targetUri: `127.0.0.1:${port}`, statPrefix: 'ads' }],
        setNodeOnFirstMessageOnly: true,
      },
      initialFetchTimeoutMs,
    },
    backoff: { baseMs: 20, maxMs: 100 },
  });
  for (const t of [listenerType, routeType, clusterType, endpointsType]) c.registerType(t as never);
  clients.push(c);
  return c;
}

describe('XdsClient delta', () => {
  it('subscribes with node and legacy wildcard, ACKs by nonce, applies removed_resources', async () => {
    const s = await server();
    const c = client(s.port);
    const lds = new RecordingWatcher<TestListener>();
    c.watch(LDS, '*', lds);
    c.start();
    const first = await s.next();
    expect(first.req.type_url).toBe(LDS);
    expect(first.req.node).toMatchObject({
      id: 'sidecar~10.1.2.4~api-1.default~default.svc.cluster.local',
      user_agent_name: 'meshlet',
      user_agent_version: '9.9.9',
    });
    expect(first.req.resource_names_subscribe ?? []).toEqual([]);
    expect(first.req.initial_resource_versions ?? {}).toEqual({});

    s.sendDelta({
      type_url: LDS,
      system_version_info: 's1',
      nonce: 'd1',
      resources: [
        { name: 'l1', version: 'a1', resource: listenerAny('l1', 80) },
        { name: 'l2', version: 'b1', resource: listenerAny('l2', 81) },
      ],
    });
    const ack = await s.next();
    expect(ack.req).toMatchObject({ type_url: LDS, response_nonce: 'd1' });
    expect(ack.req.error_detail).toBeFalsy();
    expect(ack.req.node).toBeFalsy();
    expect(await lds.next()).toEqual({ kind: 'changed', name: 'l1', value: { name: 'l1', port: 80 }, version: 'a1' });
    expect(await lds.next()).toEqual({ kind: 'changed', name: 'l2', value: { name: 'l2', port: 81 }, version: 'b1' });

    // A delta response that does not mention l1 does not remove it; removed_resources does.
    s.sendDelta({
      type_url: LDS,
      nonce: 'd2',
      resources: [{ name: 'l2', version: 'b2', resource: listenerAny('l2', 82) }],
      removed_resources: ['l1'],
    });
    expect((await s.next()).req).toMatchObject({ response_nonce: 'd2' });
    expect(await lds.next()).toMatchObject({ kind: 'changed', name: 'l2', version: 'b2' });
    expect(await lds.next()).toEqual({ kind: 'removed', name: 'l1' });
    expect(
      c
        .snapshot()
        .types.find((t) => t.type_url === LDS)
        ?.resources.map((r) => [r.name, r.version_info]),
    ).toEqual([['l2', 'b2']]);

    // The exact request sequence: subscribe (with node), ACK d1, ACK d2.
    expect(
      s.requests.map(({ req }) => [req.response_nonce ?? '', req.error_detail ? 'NACK' : '-', !!req.node]),
    ).toEqual([
      ['', '-', true],
      ['d1', '-', false],
      ['d2', '-', false],
    ]);
  });

  it('NACKs an invalid resource with error_detail and keeps the last accepted value', async () => {
    const s = await server();
    const c = client(s.port);
    const cds = new RecordingWatcher<TestCluster>();
    c.watch(CDS, '*', cds);
    c.start();
    await s.next();
    s.sendDelta({ type_url: CDS, nonce: 'n1', resources: [{ name: 'c1', version: '1', resource: clusterAny('c1') }] });
    await s.next();
    expect(await cds.next()).toMatchObject({ kind: 'changed', name: 'c1', version: '1' });

    s.sendDelta({
      type_url: CDS,
      nonce: 'n2',
      resources: [
        { name: 'c1', version: '2', resource: clusterAny('c1', 'MAGLEV') },
        { name: 'c2', version: '1', resource: clusterAny('c2') },
        { name: 'c2', version: '1', resource: clusterAny('c2') },
      ],
    });
    const nack = await s.next();
    expect(nack.req.response_nonce).toBe('n2');
    expect(nack.req.error_detail?.code).toBe(3);
    expect(nack.req.error_detail?.message).toContain('Cluster "c1": lb_policy: MAGLEV is not supported');
    expect(nack.req.error_detail?.message).toContain('Cluster "c2": (resource): duplicate resource name');
    expect(await cds.next()).toMatchObject({ kind: 'error', name: 'c1' });
    const c1 = c
      .snapshot()
      .types.find((t) => t.type_url === CDS)
      ?.resources.find((r) => r.name === 'c1');
    expect(c1).toMatchObject({ client_status: 'NACKED', version_info: '1', error_state: { version_info: '2' } });
    expect(c1?.resource).toMatchObject({ name: 'c1', type: 'EDS' });
    expect(c1?.error_state?.failed_configuration).toMatchObject({ name: 'c1', lb_policy: 'MAGLEV' });
  });

  it('sends resource_names_subscribe/unsubscribe as watches come and go', async () => {
    const s = await server();
    const c = client(s.port);
    c.start();
    const w = new RecordingWatcher<TestRoute>();
    const cancelA = c.watch(RDS, 'a', w);
    const first = await s.next();
    expect(first.req).toMatchObject({ type_url: RDS, resource_names_subscribe: ['a'] });
    expect(first.req.node?.id).toContain('sidecar~');
    const cancelB = c.watch(RDS, 'b', w);
    expect((await s.next()).req).toMatchObject({ type_url: RDS, resource_names_subscribe: ['b'] });
    const extra = new RecordingWatcher<TestRoute>();
    const cancelB2 = c.watch(RDS, 'b', extra); // already subscribed: no request
    cancelB2();
    cancelA();
    const unsub = await s.next();
    expect(unsub.req.resource_names_unsubscribe).toEqual(['a']);
    expect(unsub.req.resource_names_subscribe ?? []).toEqual([]);

    s.sendDelta({
      type_url: RDS,
      nonce: 'x',
      resources: [
        { name: 'b', version: '3', resource: routeAny('b', ['b.example']) },
        { name: 'a', version: '1', resource: routeAny('a', ['a']) },
      ],
    });
    expect((await s.next()).req.response_nonce).toBe('x');
    expect(w.events).toEqual([
      { kind: 'changed', name: 'b', value: { name: 'b', domains: ['b.example'] }, version: '3' },
    ]);
    expect(s.requests.length).toBe(4);
    cancelB();
    expect((await s.next()).req.resource_names_unsubscribe).toEqual(['b']);
  });

  it('reports removed_resources for a never-seen watched name as not existing', async () => {
    const s = await server();
    const c = client(s.port);
    const eds = new RecordingWatcher<{ name: string }>();
    c.watch(EDS, 'gone', eds);
    c.start();
    await s.next();
    s.sendDelta({ type_url: EDS, nonce: 'n', removed_resources: ['gone'] });
    await s.next();
    expect(await eds.next()).toEqual({ kind: 'missing', name: 'gone' });
  });

  it('reconnects with initial_resource_versions for what it holds', async () => {
    const s1 = await server();
    const port = s1.port;
    const c = client(port);
    const lds = new RecordingWatcher<TestListener>();
    const eds = new RecordingWatcher<{ name: string }>();
    c.watch(LDS, '*', lds);
    c.watch(EDS, 'c1', eds);
    c.start();
    const initial = [await s1.next(), await s1.next()];
    expect(initial.map((r) => r.req.type_url)).toEqual([EDS, LDS]);
    s1.sendDelta({
      type_url: LDS,
      nonce: 'a',
      resources: [{ name: 'l1', version: 'v7', resource: listenerAny('l1', 80) }],
    });
    await s1.next();
    s1.sendDelta({
      type_url: EDS,
      nonce: 'b',
      resources: [{ name: 'c1', version: 'e3', resource: endpointsAny('c1', ['10.0.0.1:80']) }],
    });
    await s1.next();
    await lds.next();
    await eds.next();

    const down = new Promise<void>((resolve) => c.once('disconnected', () => resolve()));
    s1.stop();
    await down;
    const s2 = await server(port);
    const again = [await s2.next(10_000), await s2.next()];
    expect(again[0].req).toMatchObject({
      type_url: EDS,
      resource_names_subscribe: ['c1'],
      initial_resource_versions: { c1: 'e3' },
    });
    expect(again[0].req.node?.id).toContain('sidecar~');
    expect(again[1].req).toMatchObject({ type_url: LDS, initial_resource_versions: { l1: 'v7' } });
    expect(again[1].req.resource_names_subscribe ?? []).toEqual([]);
    expect(again[1].req.node).toBeFalsy();
    expect(lds.pending()).toEqual([]);
    expect(eds.pending()).toEqual([]);
    expect(c.snapshot().types.find((t) => t.type_url === EDS)?.resources[0]).toMatchObject({
      name: 'c1',
      client_status: 'ACKED',
    });
  });
});
