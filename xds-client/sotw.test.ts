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
import { jsonToAny } from './proto-json';
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

function client(port: number, opts: { nodeOnFirstOnly?: boolean; initialFetchTimeoutMs?: number } = {}): XdsClient {
  const c = new XdsClient({
    node: {
      id: 'sidecar~10.1.2.3~echo-1.default~default.svc.cluster.local',
      cluster: 'echo.default',
      metadata: { NAMESPACE: 'default', LABELS: { app: 'echo' } },
      locality: { region: 'us-east1', zone: 'us-east1-b', subZone: '' },
      userAgentName: 'meshlet',
      userAgentVersion: '',
    },
    dynamicResources: {
      adsConfig: {
        apiType: 'GRPC',
        grpcServices: [{ kind: 'google_grpc', targetUri: `127.0.0.1:${port}`, statPrefix: 'ads' }],
        setNodeOnFirstMessageOnly: opts.nodeOnFirstOnly ?? true,
      },
      initialFetchTimeoutMs: opts.initialFetchTimeoutMs ?? 0,
    },
    backoff: { baseMs: 20, maxMs: 100 },
  });
  c.registerType(listenerType);
  c.registerType(routeType);
  c.registerType(clusterType);
  c.registerType(endpointsType);
  clients.push(c);
  return c;
}

describe('XdsClient state of the world', () => {
  it('sends node on the first request only, then ACKs with version and nonce', async () => {
    const s = await server();
    const c = client(s.port);
    const lds = new RecordingWatcher<TestListener>();
    c.watch(LDS, '*', lds);
    c.start();

    const first = await s.next();
    expect(first.req.type_url).toBe(LDS);
    expect(first.req.resource_names ?? []).toEqual([]); // wildcard
    expect(first.req.version_info ?? '').toBe('');
    expect(first.req.response_nonce ?? '').toBe('');
    expect(first.req.node?.id).toBe('sidecar~10.1.2.3~echo-1.default~default.svc.cluster.local');
    expect(first.req.node?.cluster).toBe('echo.default');
    expect(first.req.node?.user_agent_name).toBe('meshlet');
    expect(first.req.node?.user_agent_version).toMatch(/^\d+\.\d+\.\d+/);
    expect(first.req.node?.client_features).toContain('xds.config.resource-in-sotw');
    expect(first.req.node?.locality).toMatchObject({ region: 'us-east1', zone: 'us-east1-b' });
    expect(first.req.node?.metadata?.fields.NAMESPACE).toMatchObject({ stringValue: 'default' });

    s.send({ type_url: LDS, version_info: 'v1', nonce: 'n1', resources: [listenerAny('l1', 8080)] });
    expect(await lds.next()).toEqual({ kind: 'changed', name: 'l1', value: { name: 'l1', port: 8080 }, version: 'v1' });
    const ack = await s.next();
    expect(ack.req).toMatchObject({ type_url: LDS, version_info: 'v1', response_nonce: 'n1' });
    expect(ack.req.node).toBeFalsy();
    expect(ack.req.error_detail).toBeFalsy();
    expect(c.stats().types[LDS]).toMatchObject({
      updateAttempt: 1,
      updateSuccess: 1,
      updateRejected: 0,
      version: 'v1',
    });
    expect(c.connected).toBe(true);
  });

  it('repeats node on every request unless set_node_on_first_message_only', async () => {
    const s = await server();
    const c = client(s.port, { nodeOnFirstOnly: false });
    c.watch(LDS, '*', new RecordingWatcher<TestListener>());
    c.start();
    expect((await s.next()).req.node?.id).toContain('sidecar~');
    s.send({ type_url: LDS, version_info: 'v1', nonce: 'n1', resources: [] });
    const ack = await s.next();
    expect(ack.req.response_nonce).toBe('n1');
    expect(ack.req.node?.id).toContain('sidecar~');
  });

  it('NACKs a partly invalid response with the previous version and error_detail, applying the valid part', async () => {
    const s = await server();
    const c = client(s.port);
    const lds = new RecordingWatcher<TestListener>();
    const updates: boolean[] = [];
    c.on('update', (e) => updates.push(e.accepted));
    c.watch(LDS, '*', lds);
    c.start();
    await s.next();
    s.send({
      type_url: LDS,
      version_info: 'v1',
      nonce: 'n1',
      resources: [listenerAny('l1', 8080), listenerAny('l2', 8081)],
    });
    await s.next(); // ACK v1

    s.send({ type_url: LDS, version_info: 'v2', nonce: 'n2', resources: [listenerAny('l1', 9090), listenerAny('l2')] });
    const nack = await s.next();
    expect(nack.req.type_url).toBe(LDS);
    expect(nack.req.version_info).toBe('v1');
    expect(nack.req.response_nonce).toBe('n2');
    expect(nack.req.error_detail?.code).toBe(3); // INVALID_ARGUMENT
    expect(nack.req.error_detail?.message).toContain('Listener "l2": address.socket_address.port_value: required');
    expect(nack.req.error_detail?.message).not.toContain('"l1"');

    const events = [await lds.next(), await lds.next(), await lds.next(), await lds.next()];
    expect(events.slice(0, 2).map((e) => e.kind)).toEqual(['changed', 'changed']);
    expect(events[2]).toEqual({ kind: 'changed', name: 'l1', value: { name: 'l1', port: 9090 }, version: 'v2' });
    expect(events[3]).toMatchObject({ kind: 'error', name: 'l2' });
    expect(updates).toEqual([true, false]);

    const dump = c.snapshot().types.find((t) => t.type_url === LDS);
    expect(dump?.version_info).toBe('v1');
    expect(dump?.error_state?.version_info).toBe('v2');
    const l2 = dump?.resources.find((r) => r.name === 'l2');
    expect(l2?.client_status).toBe('NACKED');
    expect(l2?.version_info).toBe('v1'); // last accepted value stays
    expect(l2?.error_state).toMatchObject({ version_info: 'v2' });
    expect(l2?.error_state?.details).toContain('port_value');
    expect(l2?.error_state?.failed_configuration).toEqual({ '@type': LDS, name: 'l2' });
    expect(l2?.resource).toMatchObject({ '@type': LDS, name: 'l2', address: { socket_address: { port_value: 8081 } } });
    expect(dump?.resources.find((r) => r.name === 'l1')).toMatchObject({ client_status: 'ACKED', version_info: 'v2' });
    expect(c.stats().types[LDS]).toMatchObject({ updateAttempt: 2, updateSuccess: 1, updateRejected: 1 });

    // The next good response is ACKed and clears the error state.
    s.send({
      type_url: LDS,
      version_info: 'v3',
      nonce: 'n3',
      resources: [listenerAny('l1', 9090), listenerAny('l2', 8082)],
    });
    const ack = await s.next();
    expect(ack.req).toMatchObject({ version_info: 'v3', response_nonce: 'n3' });
    expect(ack.req.error_detail).toBeFalsy();
    expect(await lds.next()).toEqual({ kind: 'changed', name: 'l2', value: { name: 'l2', port: 8082 }, version: 'v3' });
    expect(c.snapshot().types.find((t) => t.type_url === LDS)?.error_state).toBeUndefined();

    // The exact request sequence on the stream: subscribe, ACK v1, NACK v2, ACK v3.
    expect(
      s.requests.map(({ stream, req }) => [
        stream,
        req.version_info ?? '',
        req.response_nonce ?? '',
        req.error_detail ? 'NACK' : '-',
        !!req.node,
      ]),
    ).toEqual([
      [1, '', '', '-', true],
      [1, 'v1', 'n1', '-', false],
      [1, 'v1', 'n2', 'NACK', false],
      [1, 'v3', 'n3', '-', false],
    ]);
  });

  it('unwraps resources sent in envoy.service.discovery.v3.Resource (xds.config.resource-in-sotw)', async () => {
    const s = await server();
    const c = client(s.port);
    const lds = new RecordingWatcher<TestListener>();
    c.watch(LDS, '*', lds);
    c.start();
    await s.next();
    const wrapped = jsonToAny({
      '@type': 'type.googleapis.com/envoy.service.discovery.v3.Resource',
      name: 'wrapped',
      version: 'r1',
      resource: {
        '@type': LDS,
        name: 'wrapped',
        address: { socket_address: { address: '0.0.0.0', port_value: 15001 } },
      },
    });
    s.send({ type_url: LDS, version_info: 'v1', nonce: 'n1', resources: [wrapped] });
    expect((await s.next()).req.error_detail).toBeFalsy();
    expect(await lds.next()).toEqual({
      kind: 'changed',
      name: 'wrapped',
      value: { name: 'wrapped', port: 15001 },
      version: 'v1',
    });
  });

  it('NACKs duplicate resource names', async () => {
    const s = await server();
    const c = client(s.port);
    const cds = new RecordingWatcher<TestCluster>();
    c.watch(CDS, '*', cds);
    c.start();
    await s.next();
    s.send({
      type_url: CDS,
      version_info: '1',
      nonce: 'a',
      resources: [clusterAny('c1'), clusterAny('c1', 'RANDOM'), clusterAny('c2')],
    });
    const nack = await s.next();
    expect(nack.req).toMatchObject({ version_info: '', response_nonce: 'a' });
    expect(nack.req.error_detail?.message).toContain('Cluster "c1": (resource): duplicate resource name');
    expect(await cds.next()).toEqual({ kind: 'changed', name: 'c2', value: { name: 'c2', type: 'EDS' }, version: '1' });
    expect(await cds.next()).toMatchObject({ kind: 'error', name: 'c1' });
  });

  it('removes LDS/CDS resources absent from a response, but not RDS/EDS ones', async () => {
    const s = await server();
    const c = client(s.port);
    const cds = new RecordingWatcher<TestCluster>();
    const eds = new RecordingWatcher<{ name: string }>();
    c.watch(CDS, '*', cds);
    c.watch(EDS, 'c1', eds);
    c.watch(EDS, 'c2', eds);
    c.start();
    const initial = [await s.next(), await s.next()];
    expect(initial.map((r) => r.req.type_url)).toEqual([CDS, EDS]); // clusters before endpoints
    expect(initial[1].req.resource_names).toEqual(['c1', 'c2']);

    s.send({ type_url: CDS, version_info: '1', nonce: 'a', resources: [clusterAny('c1'), clusterAny('c2')] });
    await s.next();
    s.send({ type_url: EDS, version_info: '1', nonce: 'b', resources: [endpointsAny('c1', ['10.0.0.1:80'])] });
    await s.next();
    s.send({ type_url: EDS, version_info: '2', nonce: 'c', resources: [endpointsAny('c2', ['10.0.0.2:80'])] });
    await s.next();
    s.send({ type_url: CDS, version_info: '2', nonce: 'd', resources: [clusterAny('c1')] });
    await s.next();

    expect(cds.events.map((e) => `${e.kind}:${e.name}`)).toEqual(['changed:c1', 'changed:c2', 'removed:c2']);
    expect(eds.events.map((e) => `${e.kind}:${e.name}`)).toEqual(['changed:c1', 'changed:c2']);
    const edsDump = c.snapshot().types.find((t) => t.type_url === EDS);
    expect(edsDump?.resources.map((r) => [r.name, r.version_info])).toEqual([
      ['c1', '1'],
      ['c2', '2'],
    ]);
  });

  it('subscribes and unsubscribes RDS names as watches come and go, ignoring unrequested resources', async () => {
    const s = await server();
    const c = client(s.port);
    c.start();
    const r = new RecordingWatcher<TestRoute>();
    const cancel1 = c.watch(RDS, 'r1', r);
    expect((await s.next()).req).toMatchObject({ type_url: RDS, resource_names: ['r1'], version_info: '' });
    const cancel2 = c.watch(RDS, 'r2', r);
    expect((await s.next()).req.resource_names).toEqual(['r1', 'r2']);

    s.send({ type_url: RDS, version_info: '7', nonce: 'x', resources: [routeAny('r1', ['a']), routeAny('r3', ['c'])] });
    const ack = await s.next();
    expect(ack.req).toMatchObject({ version_info: '7', response_nonce: 'x', resource_names: ['r1', 'r2'] });
    expect(r.events).toEqual([{ kind: 'changed', name: 'r1', value: { name: 'r1', domains: ['a'] }, version: '7' }]);
    expect(
      c
        .snapshot()
        .types.find((t) => t.type_url === RDS)
        ?.resources.map((x) => x.name),
    ).toEqual(['r1', 'r2']);

    cancel1();
    const after1 = await s.next();
    expect(after1.req).toMatchObject({ resource_names: ['r2'], version_info: '7', response_nonce: 'x' });
    cancel2();
    expect((await s.next()).req.resource_names ?? []).toEqual([]);
    expect(c.snapshot().types.find((t) => t.type_url === RDS)?.resources).toEqual([]);
  });

  it('sends a new watch the cached value and sends subscriptions made in callbacks after the ACK', async () => {
    const s = await server();
    const c = client(s.port);
    const routes = new RecordingWatcher<TestRoute>();
    c.watch<TestListener>(LDS, '*', {
      onChanged: (name) => c.watch(RDS, `route-${name}`, routes),
      onRemoved: () => {},
      onDoesNotExist: () => {},
    });
    c.start();
    await s.next();
    s.send({ type_url: LDS, version_info: '1', nonce: 'n1', resources: [listenerAny('l1', 1)] });
    const ack = await s.next();
    expect(ack.req).toMatchObject({ type_url: LDS, response_nonce: 'n1' });
    const sub = await s.next();
    expect(sub.req).toMatchObject({ type_url: RDS, resource_names: ['route-l1'] });

    s.send({ type_url: RDS, version_info: '1', nonce: 'r1', resources: [routeAny('route-l1', ['*'])] });
    await s.next();
    const late = new RecordingWatcher<TestRoute>();
    c.watch(RDS, 'route-l1', late);
    expect(await late.next()).toMatchObject({ kind: 'changed', name: 'route-l1', version: '1' });
  });

  it('ignores (does not ACK) a response for a type that was not requested', async () => {
    const s = await server();
    const c = client(s.port);
    const cds = new RecordingWatcher<TestCluster>();
    c.watch(LDS, '*', new RecordingWatcher<TestListener>());
    c.start();
    await s.next();
    s.send({ type_url: CDS, version_info: '1', nonce: 'stray', resources: [clusterAny('c1')] });
    s.send({ type_url: LDS, version_info: '1', nonce: 'n1', resources: [] });
    const next = await s.next();
    expect(next.req).toMatchObject({ type_url: LDS, response_nonce: 'n1' });
    expect(s.requests.length).toBe(2);
    expect(cds.events).toEqual([]);
    expect(c.stats().types[CDS].updateAttempt).toBe(0);
  });

  it('reports a watched resource that never arrives as not existing, and delivers it if it comes later', async () => {
    const s = await server();
    const c = client(s.port, { initialFetchTimeoutMs: 150 });
    const eds = new RecordingWatcher<{ name: string }>();
    c.watch(EDS, 'late', eds);
    c.start();
    await s.next();
    expect(await eds.next()).toEqual({ kind: 'missing', name: 'late' });
    expect(c.snapshot().types.find((t) => t.type_url === EDS)?.resources[0].client_status).toBe('DOES_NOT_EXIST');
    s.send({ type_url: EDS, version_info: '1', nonce: 'n', resources: [endpointsAny('late', ['10.0.0.9:80'])] });
    expect(await eds.next()).toMatchObject({ kind: 'changed', name: 'late', value: { hosts: ['10.0.0.9:80'] } });
  });

  it('reports an LDS name missing from a full-state response as not existing', async () => {
    const s = await server();
    const c = client(s.port);
    const l = new RecordingWatcher<TestListener>();
    c.watch(LDS, 'wanted', l);
    c.start();
    expect((await s.next()).req.resource_names).toEqual(['wanted']);
    s.send({ type_url: LDS, version_info: '1', nonce: 'n', resources: [] });
    expect(await l.next()).toEqual({ kind: 'missing', name: 'wanted' });
  });

  it('reconnects after the server dies, resubscribes with known versions and keeps serving the cache', async () => {
    const s1 = await server();
    const port = s1.port;
    const c = client(port);
    const lds = new RecordingWatcher<TestListener>();
    const rds = new RecordingWatcher<TestRoute>();
    const states: string[] = [];
    c.on('connected', () => states.push('up'));
    c.on('disconnected', () => states.push('down'));
    c.watch(LDS, '*', lds);
    c.watch(RDS, 'r1', rds);
    c.start();
    await s1.next();
    await s1.next();
    s1.send({ type_url: LDS, version_info: 'L5', nonce: 'a', resources: [listenerAny('l1', 80)] });
    await s1.next();
    s1.send({ type_url: RDS, version_info: 'R9', nonce: 'b', resources: [routeAny('r1', ['x'])] });
    await s1.next();
    await lds.next();
    await rds.next();

    const down = new Promise<void>((resolve) => c.once('disconnected', () => resolve()));
    s1.stop();
    await down;
    // Nothing was removed while disconnected.
    expect(lds.pending()).toEqual([]);
    expect(rds.pending()).toEqual([]);
    expect(
      c
        .snapshot()
        .types.find((t) => t.type_url === LDS)
        ?.resources.map((r) => r.name),
    ).toEqual(['l1']);

    const s2 = await server(port);
    const again = [await s2.next(10_000), await s2.next()];
    expect(again[0].req).toMatchObject({ type_url: LDS, version_info: 'L5', response_nonce: '' });
    expect(again[0].req.node?.id).toContain('sidecar~');
    expect(again[1].req).toMatchObject({ type_url: RDS, version_info: 'R9', resource_names: ['r1'] });
    expect(again[1].req.node).toBeFalsy();

    s2.send({ type_url: LDS, version_info: 'L6', nonce: 'c', resources: [listenerAny('l1', 80)] });
    expect((await s2.next()).req).toMatchObject({ version_info: 'L6', response_nonce: 'c' });
    expect(lds.pending()).toEqual([]); // same bytes: no spurious update
    expect(states.slice(0, 3)).toEqual(['up', 'down', 'up']);
  });
});
