import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCa, type IssuedCertificate } from '../certs/dev-ca';
import type { GrpcService } from '../common/config-types';
import { ScriptedAdsServer } from '../test/support/scripted-ads-server';
import {
  endpointsType,
  listenerAny,
  listenerType,
  RecordingWatcher,
  type TestListener,
} from '../test/support/xds-fixtures';
import { ExponentialBackoff } from './backoff';
import { type ResolvedCluster, XdsClient } from './client';
import { TYPE_URLS } from './protos';

const LDS = TYPE_URLS.listener;
const EDS = TYPE_URLS.clusterLoadAssignment;

const servers: ScriptedAdsServer[] = [];
const clients: XdsClient[] = [];

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) s.stop();
});

function client(service: GrpcService, resolveCluster?: (name: string) => ResolvedCluster | undefined): XdsClient {
  const c = new XdsClient({
    node: { id: 'n1', cluster: 'c', metadata: {}, userAgentName: 'meshlet', userAgentVersion: '' },
    dynamicResources: {
      adsConfig: { apiType: 'GRPC', grpcServices: [service], setNodeOnFirstMessageOnly: true },
      initialFetchTimeoutMs: 0,
    },
    resolveCluster,
    backoff: { baseMs: 20, maxMs: 100 },
  });
  c.registerType(listenerType);
  c.registerType(endpointsType);
  clients.push(c);
  return c;
}

describe('control plane channel', () => {
  let cert: IssuedCertificate;
  let tlsCreds: () => grpc.ServerCredentials;

  beforeAll(async () => {
    const ca = await DevCa.create({ trustDomain: 'cluster.local' });
    cert = await ca.issueWorkload({
      ns: 'istio-system',
      sa: 'istiod',
      dnsNames: ['istiod.istio-system.svc', 'localhost'],
    });
    tlsCreds = () =>
      grpc.ServerCredentials.createSsl(
        Buffer.from(cert.rootCertPem),
        [{ private_key: Buffer.from(cert.privateKeyPem ?? ''), cert_chain: Buffer.from(cert.certChainPem) }],
        false,
      );
  });

  it('connects to an envoy_grpc cluster resolved by the proxy, over TLS', async () => {
    const s = await ScriptedAdsServer.start(0, tlsCreds());
    servers.push(s);
    const asked: string[] = [];
    const c = client({ kind: 'envoy_grpc', clusterName: 'xds-grpc' }, (name) => {
      asked.push(name);
      return {
        address: '127.0.0.1',
        port: s.port,
        tls: { rootCerts: cert.rootCertPem, servername: 'istiod.istio-system.svc' },
      };
    });
    const l = new RecordingWatcher<TestListener>();
    c.watch(LDS, '*', l);
    c.start();
    expect((await s.next()).req.type_url).toBe(LDS);
    s.send({ type_url: LDS, version_info: '1', nonce: 'a', resources: [listenerAny('l', 1)] });
    expect(await l.next()).toMatchObject({ kind: 'changed', name: 'l' });
    expect(asked).toEqual(['xds-grpc']);
  });

  it('connects to a google_grpc target with TLS channel credentials from the bootstrap', async () => {
    const s = await ScriptedAdsServer.start(0, tlsCreds());
    servers.push(s);
    const c = client({
      kind: 'google_grpc',
      targetUri: `localhost:${s.port}`,
      statPrefix: 'ads',
      ssl: { rootCerts: { kind: 'inline_string', value: cert.rootCertPem } },
    });
    c.watch(EDS, 'x', new RecordingWatcher());
    c.start();
    expect((await s.next()).req).toMatchObject({ type_url: EDS, resource_names: ['x'] });
  });

  it('keeps retrying while an envoy_grpc cluster cannot be resolved', async () => {
    const s = await ScriptedAdsServer.start();
    servers.push(s);
    let known = false;
    let attempts = 0;
    const c = client({ kind: 'envoy_grpc', clusterName: 'xds-grpc' }, () => {
      attempts++;
      return known ? { address: '127.0.0.1', port: s.port } : undefined;
    });
    c.watch(LDS, '*', new RecordingWatcher());
    c.start();
    for (let i = 0; i < 500 && attempts < 3; i++) await new Promise((r) => setTimeout(r, 10));
    expect(attempts).toBeGreaterThanOrEqual(3);
    known = true;
    expect((await s.next()).req.type_url).toBe(LDS);
    expect(c.stats().streamsStarted).toBe(1);
  });
});

describe('subscription request shape', () => {
  it('coalesces watches made in one tick and spells the wildcard "*" next to specific names', async () => {
    const s = await ScriptedAdsServer.start();
    servers.push(s);
    const c = client({ kind: 'google_grpc', targetUri: `127.0.0.1:${s.port}`, statPrefix: 'ads' });
    c.start();
    const w = new RecordingWatcher();
    for (const n of ['a', 'b', 'c']) c.watch(EDS, n, w);
    expect((await s.next()).req).toMatchObject({ type_url: EDS, resource_names: ['a', 'b', 'c'] });
    const l = new RecordingWatcher<TestListener>();
    c.watch(LDS, '*', l);
    expect((await s.next()).req).toMatchObject({ type_url: LDS });
    expect(s.requests[1].req.resource_names ?? []).toEqual([]);
    const special = new RecordingWatcher<TestListener>();
    c.watch(LDS, 'special', special);
    expect((await s.next()).req.resource_names).toEqual(['*', 'special']);
    s.send({
      type_url: LDS,
      version_info: '1',
      nonce: 'n',
      resources: [listenerAny('special', 2), listenerAny('other', 3)],
    });
    expect((await s.next()).req).toMatchObject({ version_info: '1', resource_names: ['*', 'special'] });
    expect(await special.next()).toMatchObject({ kind: 'changed', name: 'special' });
    expect(special.pending()).toEqual([]);
    expect(l.events.map((e) => e.name).sort()).toEqual(['other', 'special']);
  });
});

describe('ExponentialBackoff', () => {
  it('doubles the ceiling up to the maximum, jitters within [ceiling/2, ceiling], and resets', () => {
    let r = 1;
    const b = new ExponentialBackoff({ baseMs: 1000, maxMs: 30_000, random: () => r });
    expect([b.next(), b.next(), b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000,
    ]);
    r = 0;
    expect(b.next()).toBe(15000);
    b.reset();
    expect(b.attempts).toBe(0);
    expect(b.next()).toBe(500);
    expect(() => new ExponentialBackoff({ baseMs: 10, maxMs: 5 })).toThrow(/baseMs <= maxMs/);
  });
});
