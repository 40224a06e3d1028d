/**
 * The embedded control plane over real gRPC on loopback: a grpc-js ADS client (both SotW and
 * Delta) connects with a node id and checks what it is served, ACK/NACK handling, pushes on mesh
 * file edits, rejection of an invalid mesh, and certificate issuance and rotation.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCa } from '../../certs/dev-ca';
import { uriSansOf } from '../../certs/identity';
import { ControlPlaneServer } from '../../control-plane/server';
import { decodeAny } from '../../control-plane/snapshot';
import {
  adsServiceDefinition,
  type DeltaDiscoveryRequestProto,
  type DeltaDiscoveryResponseProto,
  type DiscoveryRequestProto,
  type DiscoveryResponseProto,
  TYPE_URLS,
} from '../../xds-client/protos';
import { INSECURE_DEV } from '../support/mesh';

const EXAMPLE = readFileSync(join(__dirname, '../../control-plane/examples/bookinfo.yaml'), 'utf8');
const T = TYPE_URLS;
const WAIT_MS = 10_000;

/** Messages of a stream, awaited one at a time with a generous bound. */
class Inbox<M> {
  private readonly items: M[] = [];
  private waiter?: () => void;
  ended?: grpc.ServiceError;
  constructor(stream: NodeJS.EventEmitter) {
    stream.on('data', (m: M) => {
      this.items.push(m);
      this.waiter?.();
    });
    stream.on('error', (e: grpc.ServiceError) => {
      this.ended = e;
      this.waiter?.();
    });
  }
  async next(what = 'a response'): Promise<M> {
    const deadline = Date.now() + WAIT_MS;
    while (this.items.length === 0) {
      if (this.ended) throw new Error(`stream ended while waiting for ${what}: ${this.ended.details}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return this.items.shift()!;
  }
  async endedWith(): Promise<grpc.ServiceError> {
    const deadline = Date.now() + WAIT_MS;
    while (!this.ended && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    if (!this.ended) throw new Error('stream did not end');
    return this.ended;
  }
  get pending(): number {
    return this.items.length;
  }
}

const AdsClient = grpc.makeGenericClientConstructor(adsServiceDefinition(), 'AggregatedDiscoveryService');
type Duplex<Req, Res> = grpc.ClientDuplexStream<Req, Res>;

/** Captured log records (parsed JSON lines). */
function captureLog(): { log: pino.Logger; records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line) records.push(JSON.parse(line));
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, dest), records };
}

function names(res: DiscoveryResponseProto): string[] {
  return (res.resources ?? []).map((a) => {
    const j = decodeAny(a);
    return String(j.name ?? j.cluster_name);
  });
}

let ca: DevCa;
let dir: string;
const servers: ControlPlaneServer[] = [];
const clients: grpc.Client[] = [];

beforeAll(async () => {
  ca = await DevCa.create({ trustDomain: 'cluster.local' });
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) await s.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});
afterAll(() => undefined);

async function start(
  opts: { text?: string; lifetimeMs?: number; rotateAfterMs?: number; log?: pino.Logger; watch?: boolean } = {},
) {
  dir = await mkdtemp(join(tmpdir(), 'meshlet-cp-'));
  const meshFile = join(dir, 'mesh.yaml');
  await writeFile(meshFile, opts.text ?? EXAMPLE);
  const server = await ControlPlaneServer.start({
    ...INSECURE_DEV,
    meshFile,
    port: 0,
    ca,
    watchIntervalMs: 100,
    // Tests that call reload() themselves turn watching off so the result is theirs to see.
    watchMeshFile: opts.watch ?? true,
    certLifetimeMs: opts.lifetimeMs,
    certRotateAfterMs: opts.rotateAfterMs,
    log: opts.log ?? pino({ level: 'silent' }),
  });
  servers.push(server);
  return { server, meshFile };
}

function sotw(server: ControlPlaneServer) {
  const client = new AdsClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  clients.push(client);
  const call = (
    client as unknown as { StreamAggregatedResources(): Duplex<DiscoveryRequestProto, DiscoveryResponseProto> }
  ).StreamAggregatedResources();
  return { call, inbox: new Inbox<DiscoveryResponseProto>(call) };
}

function delta(server: ControlPlaneServer) {
  const client = new AdsClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  clients.push(client);
  const call = (
    client as unknown as { DeltaAggregatedResources(): Duplex<DeltaDiscoveryRequestProto, DeltaDiscoveryResponseProto> }
  ).DeltaAggregatedResources();
  return { call, inbox: new Inbox<DeltaDiscoveryResponseProto>(call) };
}

const node = (id: string) => ({ id, cluster: 'test', user_agent_name: 'meshlet-test' });

describe('ADS server (state of the world)', () => {
  it('serves listeners, clusters, endpoints, routes and secrets for the node, and ACKs settle', async () => {
    const { server } = await start();
    const { call, inbox } = sotw(server);
    call.write({ node: node('sidecar~127.0.0.11~reviews-v1.default~default.svc.cluster.local'), type_url: T.cluster });
    const cds = await inbox.next('CDS');
    expect(cds.type_url).toBe(T.cluster);
    const clusters = names(cds);
    expect(clusters).toContain('outbound|9082||ratings.default.svc.cluster.local');
    expect(clusters).toContain('inbound|19081||');
    call.write({ type_url: T.cluster, version_info: cds.version_info, response_nonce: cds.nonce });

    const edsNames = clusters.filter((n) => n.startsWith('outbound|'));
    call.write({ type_url: T.clusterLoadAssignment, resource_names: edsNames });
    const eds = await inbox.next('EDS');
    expect(names(eds).sort()).toEqual([...edsNames].sort());
    const ratings = decodeAny(
      eds.resources!.find((a) => decodeAny(a).cluster_name === 'outbound|9082||ratings.default.svc.cluster.local')!,
    ) as any;
    expect(ratings.endpoints[0].lb_endpoints[0].endpoint.address.socket_address).toMatchObject({
      address: '127.0.0.13',
      port_value: 15006,
    });
    call.write({
      type_url: T.clusterLoadAssignment,
      resource_names: edsNames,
      version_info: eds.version_info,
      response_nonce: eds.nonce,
    });

    call.write({ type_url: T.listener });
    const lds = await inbox.next('LDS');
    expect(names(lds)).toContain('inbound_127.0.0.11_15006');
    expect(names(lds)).toContain('127.0.0.11_9082');
    call.write({ type_url: T.listener, version_info: lds.version_info, response_nonce: lds.nonce });

    call.write({ type_url: T.routeConfiguration, resource_names: ['9080', '9081', '9082'] });
    const rds = await inbox.next('RDS');
    expect(names(rds).sort()).toEqual(['9080', '9081', '9082']);
    call.write({
      type_url: T.routeConfiguration,
      resource_names: ['9080', '9081', '9082'],
      version_info: rds.version_info,
      response_nonce: rds.nonce,
    });

    call.write({ type_url: T.secret, resource_names: ['default', 'ROOTCA'] });
    const sds = await inbox.next('SDS');
    const secrets = Object.fromEntries(
      sds.resources!.map((a) => {
        const j = decodeAny(a) as any;
        return [j.name, j];
      }),
    );
    const chain = secrets.default.tls_certificate.certificate_chain.inline_string as string;
    const leaf = new X509Certificate(chain);
    expect(uriSansOf(leaf.subjectAltName)).toEqual(['spiffe://cluster.local/ns/default/sa/reviews']);
    expect(leaf.verify(new X509Certificate(ca.rootCertPem).publicKey)).toBe(true);
    expect(
      leaf.checkPrivateKey(
        require('node:crypto').createPrivateKey(secrets.default.tls_certificate.private_key.inline_string),
      ),
    ).toBe(true);
    expect(secrets.ROOTCA.validation_context.trusted_ca.inline_string).toBe(ca.rootCertPem);
    call.write({
      type_url: T.secret,
      resource_names: ['default', 'ROOTCA'],
      version_info: sds.version_info,
      response_nonce: sds.nonce,
    });

    // A subscription change (one more RDS name that exists) gets a response; nothing else is resent.
    call.write({
      type_url: T.routeConfiguration,
      resource_names: ['9080', '9081', '9082', '9083'],
      version_info: rds.version_info,
      response_nonce: rds.nonce,
    });
    call.write({
      type_url: T.routeConfiguration,
      resource_names: ['9080'],
      version_info: rds.version_info,
      response_nonce: rds.nonce,
    });
    const rds2 = await inbox.next('RDS after narrowing');
    expect(names(rds2)).toEqual(['9080']);
    expect(inbox.pending).toBe(0);
    const st = server.streamStatus()[0]!;
    expect(st.workload).toBe('reviews-v1');
    expect(st.types[T.cluster]).toMatchObject({ acks: 1, nacks: 0, ackedVersion: cds.version_info });
    call.end();
  });

  it('on NACK keeps the stream, logs error_detail and does not resend the rejected version; stale nonces are ignored', async () => {
    const { log, records } = captureLog();
    const { server, meshFile } = await start({ log });
    const { call, inbox } = sotw(server);
    call.write({ node: node('productpage-v1'), type_url: T.cluster });
    const cds = await inbox.next('CDS');
    call.write({
      type_url: T.cluster,
      version_info: '',
      response_nonce: cds.nonce,
      error_detail: { code: 3, message: 'cluster outbound|9081||reviews: unsupported field' },
    });
    // A stale nonce (not the latest) must be ignored, not treated as an ACK.
    call.write({ type_url: T.cluster, version_info: cds.version_info, response_nonce: 'bogus' });
    call.write({ type_url: T.listener });
    const next = await inbox.next('LDS');
    // Requests are handled in order: had CDS been resent, it would have arrived first.
    expect(next.type_url).toBe(T.listener);
    const st = server.streamStatus()[0]!.types[T.cluster]!;
    expect(st).toMatchObject({
      nacks: 1,
      acks: 0,
      nackedVersion: cds.version_info,
      lastError: 'cluster outbound|9081||reviews: unsupported field',
    });
    const nackLog = records.find((r) => typeof r.msg === 'string' && (r.msg as string).startsWith('NACK'));
    expect(nackLog).toMatchObject({
      level: 40,
      typeUrl: T.cluster,
      error: 'cluster outbound|9081||reviews: unsupported field',
    });

    // A new mesh version is pushed even after a NACK.
    await writeFile(meshFile, EXAMPLE.replace('ports: [{ name: tcp, port: 9083', 'ports: [{ name: tcp, port: 9093'));
    const pushed = await inbox.next('CDS push after mesh edit');
    expect(pushed.type_url).toBe(T.cluster);
    expect(pushed.version_info).not.toBe(cds.version_info);
    expect(names(pushed)).toContain('outbound|9093||db.default.svc.cluster.local');
    expect(names(pushed)).not.toContain('outbound|9083||db.default.svc.cluster.local');
    call.end();
  });

  it('rejects an invalid mesh file with a readable message and keeps serving the previous mesh', async () => {
    const { log, records } = captureLog();
    const { server, meshFile } = await start({ log, watch: false });
    const first = sotw(server);
    first.call.write({ node: node('reviews-v2'), type_url: T.cluster });
    const before = await first.inbox.next('CDS');
    await writeFile(
      meshFile,
      EXAMPLE.replace('service: reviews\n    version: v2', 'service: reviewz\n    version: v2'),
    );
    const r = await server.reload();
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(/workloads\[2\]\.service: unknown service "reviewz" in namespace default/);
    expect(server.lastMeshError).toMatch(/is invalid \(2 problems\)/);
    expect(server.lastMeshError).toMatch(/traffic\[0\]\.splits\[1\]\.version: no workload of reviews has version "v2"/);
    expect(records.some((x) => x.level === 50 && String(x.msg).includes('still serving the previous mesh'))).toBe(true);
    // A new stream for the same node gets the same configuration as before.
    const second = sotw(server);
    second.call.write({ node: node('reviews-v2'), type_url: T.cluster });
    const after = await second.inbox.next('CDS from the previous mesh');
    expect(after.version_info).toBe(before.version_info);
    // Fixing the file is picked up.
    await writeFile(meshFile, EXAMPLE.replace('weight: 80', 'weight: 70').replace('weight: 20', 'weight: 30'));
    expect(await server.reload()).toEqual({ ok: true, changed: true });
    expect(server.lastMeshError).toBeUndefined();
    first.call.end();
    second.call.end();
  });

  it("rejects a reload where a service's new target port has no app address on a workload (no fallback to the first)", async () => {
    const { server, meshFile } = await start({ watch: false });
    const first = sotw(server);
    first.call.write({ node: node('db-v1'), type_url: T.cluster });
    const before = await first.inbox.next('CDS');
    const dbPort = '{ name: tcp, port: 9083, protocol: tcp, target_port: 19083 }';
    expect(EXAMPLE).toContain(dbPort);
    await writeFile(meshFile, EXAMPLE.replace(dbPort, `${dbPort}, { name: admin, port: 9084, protocol: http, target_port: 19084 }`));
    const r = await server.reload();
    expect(!r.ok && r.error).toMatch(
      /workloads\[4\]\.address: workload db-v1 has no address for port 9084 of service db \(target_port 19084\)/,
    );
    const second = sotw(server);
    second.call.write({ node: node('db-v1'), type_url: T.cluster });
    expect((await second.inbox.next('CDS from the previous mesh')).version_info).toBe(before.version_info);
    first.call.end();
    second.call.end();
  });

  it('ends the stream with NOT_FOUND and a readable message for a node id not in the mesh', async () => {
    const { server } = await start();
    const { call, inbox } = sotw(server);
    call.write({ node: node('nobody'), type_url: T.cluster });
    const err = await inbox.endedWith();
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.details).toMatch(/node id "nobody" matches no workload/);
  });

  it('issues workload certificates and rotates them on schedule, pushing the new default secret', async () => {
    const { server } = await start({ lifetimeMs: 60_000, rotateAfterMs: 1500 });
    const { call, inbox } = sotw(server);
    call.write({ node: node('ratings-v1'), type_url: T.secret, resource_names: ['default'] });
    const serials: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await inbox.next(`SDS #${i + 1}`);
      call.write({
        type_url: T.secret,
        resource_names: ['default'],
        version_info: res.version_info,
        response_nonce: res.nonce,
      });
      expect(names(res)).toEqual(['default']);
      const j = decodeAny(res.resources![0]!) as any;
      const leaf = new X509Certificate(j.tls_certificate.certificate_chain.inline_string);
      expect(leaf.verify(new X509Certificate(ca.rootCertPem).publicKey)).toBe(true);
      expect(uriSansOf(leaf.subjectAltName)).toEqual(['spiffe://cluster.local/ns/default/sa/ratings']);
      const life = Date.parse(leaf.validTo) - Date.now();
      expect(life).toBeLessThanOrEqual(60_000);
      serials.push(leaf.serialNumber);
    }
    expect(new Set(serials).size).toBe(3);
    call.end();
  });
  it("re-issues and pushes the identity when the mesh changes a workload's service account", async () => {
    const { server, meshFile } = await start({ watch: false });
    const { call, inbox } = sotw(server);
    call.write({ node: node('ratings-v1'), type_url: T.secret, resource_names: ['default'] });
    const first = await inbox.next('SDS');
    call.write({
      type_url: T.secret,
      resource_names: ['default'],
      version_info: first.version_info,
      response_nonce: first.nonce,
    });
    const san = (res: DiscoveryResponseProto) =>
      uriSansOf(
        new X509Certificate((decodeAny(res.resources![0]!) as any).tls_certificate.certificate_chain.inline_string)
          .subjectAltName,
      );
    expect(san(first)).toEqual(['spiffe://cluster.local/ns/default/sa/ratings']);
    await writeFile(meshFile, EXAMPLE.replace('service_account: ratings', 'service_account: ratings-sa'));
    expect(await server.reload()).toEqual({ ok: true, changed: true });
    const second = await inbox.next('SDS after the service account changed');
    expect(san(second)).toEqual(['spiffe://cluster.local/ns/default/sa/ratings-sa']);
    call.end();
  });
});

describe('ADS server (delta)', () => {
  it('sends resources with versions, then only what changed, and removals', async () => {
    const { server, meshFile } = await start({ watch: false });
    const { call, inbox } = delta(server);
    call.write({
      node: node('productpage-v1.default'),
      type_url: T.routeConfiguration,
      resource_names_subscribe: ['9080', '9081'],
    });
    const rds = await inbox.next('delta RDS');
    const versions = Object.fromEntries(rds.resources!.map((r) => [r.name, r.version]));
    expect(Object.keys(versions).sort()).toEqual(['9080', '9081']);
    call.write({ type_url: T.routeConfiguration, response_nonce: rds.nonce });
    call.write({ type_url: T.cluster, resource_names_subscribe: [] });
    const cds = await inbox.next('delta CDS');
    expect(cds.resources!.map((r) => r.name)).toContain('outbound|9083||db.default.svc.cluster.local');
    call.write({ type_url: T.cluster, response_nonce: cds.nonce });

    // Change only the reviews traffic rule: RDS 9081 changes, nothing else.
    await writeFile(meshFile, EXAMPLE.replace('timeout: 3s', 'timeout: 4s'));
    expect(await server.reload()).toEqual({ ok: true, changed: true });
    const rds2 = await inbox.next('delta RDS push');
    expect(rds2.type_url).toBe(T.routeConfiguration);
    expect(rds2.resources!.map((r) => r.name)).toEqual(['9081']);
    expect(rds2.resources![0]!.version).not.toBe(versions['9081']);
    expect((decodeAny(rds2.resources![0]!.resource!) as any).virtual_hosts[0].routes[0].route.timeout).toBe('4s');
    call.write({ type_url: T.routeConfiguration, response_nonce: rds2.nonce });

    // Remove the db service and its workload: CDS removals.
    const withoutDb = EXAMPLE.replace('timeout: 3s', 'timeout: 4s')
      .replace(
        '  - name: db\n    namespace: default\n    ports: [{ name: tcp, port: 9083, protocol: tcp, target_port: 19083 }]\n',
        '',
      )
      .replace(/ {2}- name: db-v1\n( {4}.*\n)+/, '')
      .replace(/ {2}- name: db-from-ratings[\s\S]*$/, '');
    expect(withoutDb).not.toMatch(/db/);
    await writeFile(meshFile, withoutDb);
    const r = await server.reload();
    expect(r).toEqual({ ok: true, changed: true });
    const cds2 = await inbox.next('delta CDS removal');
    expect(cds2.type_url).toBe(T.cluster);
    expect(cds2.resources ?? []).toEqual([]);
    expect(cds2.removed_resources!.sort()).toEqual([
      'outbound|9083|v1|db.default.svc.cluster.local',
      'outbound|9083||db.default.svc.cluster.local',
    ]);
    // A NACK of a delta response is recorded and the stream stays usable.
    call.write({ type_url: T.cluster, response_nonce: cds2.nonce, error_detail: { code: 3, message: 'nope' } });
    call.write({ type_url: T.routeConfiguration, resource_names_subscribe: ['9082'] });
    const rds3 = await inbox.next('delta RDS after NACK');
    expect(rds3.resources!.map((x) => x.name)).toEqual(['9082']);
    expect(server.streamStatus()[0]!.types[T.cluster]).toMatchObject({ nacks: 1, lastError: 'nope' });
    call.end();
  });

  it('honours initial_resource_versions on reconnect (nothing resent that the client has)', async () => {
    const { server } = await start();
    const a = delta(server);
    a.call.write({
      node: node('reviews-v1'),
      type_url: T.routeConfiguration,
      resource_names_subscribe: ['9080', '9081'],
    });
    const first = await a.inbox.next('delta RDS');
    a.call.end();
    const b = delta(server);
    const known = Object.fromEntries(first.resources!.map((r) => [r.name!, r.version!]));
    b.call.write({
      node: node('reviews-v1'),
      type_url: T.routeConfiguration,
      resource_names_subscribe: ['9080', '9081', '9082'],
      initial_resource_versions: known,
    });
    const again = await b.inbox.next('delta RDS after reconnect');
    expect(again.resources!.map((r) => r.name)).toEqual(['9082']);
    b.call.end();
  });
});
