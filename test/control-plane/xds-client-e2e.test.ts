/**
 * meshlet's own xDS client against the embedded control plane, over real gRPC on loopback, in
 * both protocol variants: every generated resource is decoded by proxy/config/envoy (so nothing is
 * NACKed), mesh edits arrive as updates, and the served secrets pass the certificate store's
 * validation (the identity verifies against the served trust bundle).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCa } from '../../certs/dev-ca';
import { SdsSecretProvider } from '../../certs/sds-provider';
import { CertStore, type RotationEvent } from '../../certs/store';
import { ControlPlaneServer } from '../../control-plane/server';
import {
  decodeCluster,
  decodeClusterLoadAssignment,
  decodeListener,
  decodeRbac,
  decodeRouteConfiguration,
  decodeSecret,
} from '../../proxy/config/envoy/index';
import type { ClusterConfig, ListenerConfig, RouteConfiguration, SecretConfig } from '../../proxy/config/types';
import { createRegistries } from '../../proxy/registry';
import { XdsClient } from '../../xds-client/client';
import { TYPE_URLS } from '../../xds-client/protos';
import type { ResourceTypeDef, XdsWatcher } from '../../xds-client/resource-types';
import { INSECURE_DEV } from '../support/mesh';

const EXAMPLE = readFileSync(join(__dirname, '../../control-plane/examples/bookinfo.yaml'), 'utf8');
const T = TYPE_URLS;
const RBAC = 'envoy.extensions.filters.http.rbac.v3.RBAC';

function decodeContext() {
  const httpFilters = createRegistries().httpFilters;
  const ctx = { httpFilters };
  if (!httpFilters.get(RBAC)) {
    // Until the HTTP RBAC filter is registered in proxy/registry.ts: decode its config with the real
    // RBAC decoder; no filter chain is built here, so create() is never reached.
    httpFilters.register({
      typeName: RBAC,
      decode: (r) => decodeRbac(r, ctx as never, { statPrefixKey: 'rules_stat_prefix' }),
      create: () => {
        throw new Error('decode-only registration');
      },
    });
  }
  return ctx as never;
}

function types(): ResourceTypeDef<unknown>[] {
  const ctx = decodeContext();
  const def = <V extends { name?: string; clusterName?: string }>(
    typeUrl: string,
    wildcard: boolean,
    decode: (j: unknown, c: never) => { value?: V; errors: never[]; warnings: never[] },
  ): ResourceTypeDef<unknown> => ({
    typeUrl,
    wildcard,
    decode: (j) => decode(j, ctx),
    name: (v) => String((v as V).name ?? (v as V).clusterName),
  });
  return [
    def(T.listener, true, decodeListener as never),
    def(T.cluster, true, decodeCluster as never),
    def(T.routeConfiguration, false, decodeRouteConfiguration as never),
    def(T.clusterLoadAssignment, false, decodeClusterLoadAssignment as never),
    def(T.secret, false, decodeSecret as never),
  ];
}

class Seen<T> implements XdsWatcher<T> {
  readonly values = new Map<string, T>();
  readonly errors: string[] = [];
  private waiters: (() => void)[] = [];
  onChanged(name: string, value: T): void {
    this.values.set(name, value);
    for (const w of this.waiters.splice(0)) w();
  }
  onRemoved(name: string): void {
    this.values.delete(name);
    for (const w of this.waiters.splice(0)) w();
  }
  onDoesNotExist(): void {}
  onError(err: { message: string }): void {
    this.errors.push(err.message);
    for (const w of this.waiters.splice(0)) w();
  }
  async until(cond: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; errors: ${this.errors.join('; ')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

let ca: DevCa;
let dir: string | undefined;
let server: ControlPlaneServer | undefined;
let client: XdsClient | undefined;

beforeAll(async () => {
  ca = await DevCa.create({ trustDomain: 'cluster.local' });
});
afterEach(async () => {
  client?.close();
  client = undefined;
  await server?.close();
  server = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

for (const apiType of ['GRPC', 'DELTA_GRPC'] as const) {
  describe(`XdsClient (${apiType}) ↔ control plane`, () => {
    it('receives and decodes every resource of its workload, then mesh edits, with no NACK', async () => {
      dir = await mkdtemp(join(tmpdir(), 'meshlet-e2e-'));
      const meshFile = join(dir, 'mesh.yaml');
      await writeFile(meshFile, EXAMPLE);
      server = await ControlPlaneServer.start({
    ...INSECURE_DEV,
        meshFile,
        port: 0,
        ca,
        watchIntervalMs: 100,
        log: pino({ level: 'silent' }),
      });
      client = new XdsClient({
        node: {
          id: 'reviews-v1',
          cluster: 'reviews',
          metadata: {},
          userAgentName: 'meshlet',
          userAgentVersion: 'test',
        },
        dynamicResources: {
          adsConfig: {
            apiType,
            grpcServices: [{ kind: 'google_grpc', targetUri: `127.0.0.1:${server.port}`, statPrefix: 'ads' }],
            setNodeOnFirstMessageOnly: true,
          },
          ldsConfig: { kind: 'ads' },
          cdsConfig: { kind: 'ads' },
          initialFetchTimeoutMs: 15_000,
        },
        backoff: { baseMs: 100, maxMs: 1000 },
      } as never);
      for (const t of types()) client.registerType(t);
      const listeners = new Seen<ListenerConfig>();
      const clusters = new Seen<ClusterConfig>();
      const routes = new Seen<RouteConfiguration>();
      const endpoints = new Seen<unknown>();
      const secrets = new Seen<SecretConfig>();
      client.watch(T.listener, '*', listeners);
      client.watch(T.cluster, '*', clusters);
      client.watch(T.routeConfiguration, '9081', routes);
      client.watch(T.clusterLoadAssignment, 'outbound|9082||ratings.default.svc.cluster.local', endpoints);
      client.watch(T.secret, 'default', secrets);
      client.watch(T.secret, 'ROOTCA', secrets);
      client.start();

      await listeners.until(() => listeners.values.size === 5, 'listeners');
      await clusters.until(() => clusters.values.has('inbound|19081||'), 'clusters');
      await routes.until(() => routes.values.has('9081'), 'route 9081');
      await endpoints.until(() => endpoints.values.size === 1, 'endpoints');
      await secrets.until(() => secrets.values.size === 2, 'secrets');
      for (const s of [listeners, clusters, routes, endpoints, secrets]) expect(s.errors).toEqual([]);

      const inbound = listeners.values.get('inbound_127.0.0.11_15006')!;
      expect(inbound.filterChains[0]!.transportSocket).toMatchObject({
        kind: 'downstream_tls',
        requireClientCertificate: true,
      });
      const route = routes.values.get('9081')!.virtualHosts[0]!.routes[0]!.action;
      expect(route).toMatchObject({ kind: 'route', timeoutMs: 3000, cluster: { kind: 'weighted', totalWeight: 100 } });

      // The served secrets pass the certificate store's validation, identity verified against ROOTCA.
      const store = new CertStore();
      expect(await store.update('ROOTCA', secrets.values.get('ROOTCA')!)).toEqual({ ok: true });
      expect(await store.update('default', secrets.values.get('default')!)).toEqual({ ok: true });
      expect(store.identity()!.verified).toBe(true);
      expect(store.details().find((d) => d.secretName === 'default')!.subjectAltNames).toEqual([
        'URI:spiffe://cluster.local/ns/default/sa/reviews',
      ]);

      // A mesh edit reaches the client as an update of the changed route.
      await writeFile(meshFile, EXAMPLE.replace('weight: 80', 'weight: 60').replace('weight: 20', 'weight: 40'));
      await routes.until(() => {
        const a = routes.values.get('9081')!.virtualHosts[0]!.routes[0]!.action as {
          cluster: { clusters?: { weight: number }[] };
        };
        return a.cluster.clusters?.[0]?.weight === 60;
      }, 'route update after the mesh edit');
      expect(routes.errors).toEqual([]);
      const status = server.streamStatus()[0]!;
      for (const t of Object.values(status.types)) expect(t.nacks).toBe(0);
    });
  });
}

describe('SDS provider ↔ control plane', () => {
  it('keeps the certificate store current across scheduled rotations, every identity verified', async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-sds-'));
    const meshFile = join(dir, 'mesh.yaml');
    await writeFile(meshFile, EXAMPLE);
    server = await ControlPlaneServer.start({
    ...INSECURE_DEV,
      meshFile,
      port: 0,
      ca,
      certLifetimeMs: 60_000,
      certRotateAfterMs: 1500,
      log: pino({ level: 'silent' }),
    });
    client = new XdsClient({
      node: {
        id: 'ratings-v1.default',
        cluster: 'ratings',
        metadata: {},
        userAgentName: 'meshlet',
        userAgentVersion: 'test',
      },
      dynamicResources: {
        adsConfig: {
          apiType: 'GRPC',
          grpcServices: [{ kind: 'google_grpc', targetUri: `127.0.0.1:${server.port}`, statPrefix: 'ads' }],
          setNodeOnFirstMessageOnly: true,
        },
        initialFetchTimeoutMs: 15_000,
      },
      backoff: { baseMs: 100, maxMs: 1000 },
    } as never);
    for (const t of types()) client.registerType(t);
    const store = new CertStore();
    const rotations: RotationEvent[] = [];
    store.on('rotate', (e: RotationEvent) => rotations.push(e));
    const results: boolean[] = [];
    const provider = new SdsSecretProvider(client, store, { onResult: (_n, r) => results.push(r.ok) });
    provider.start();
    client.start();
    const deadline = Date.now() + 15_000;
    while (rotations.filter((r) => r.name === 'default').length < 3 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    provider.close();
    const ids = rotations.filter((r) => r.name === 'default');
    expect(ids.length).toBeGreaterThanOrEqual(3);
    expect(rotations[0]!.name).toBe('ROOTCA');
    expect(new Set(ids.map((r) => r.serial)).size).toBe(ids.length);
    expect(ids[1]!.previousSerial).toBe(ids[0]!.serial);
    expect(results.every(Boolean)).toBe(true);
    expect(store.identity()!.verified).toBe(true);
  });
});
