/**
 * Istio PERMISSIVE mode through the embedded control plane: one inbound port (tls_inspector, a
 * `transport_protocol: tls` chain with DownstreamTlsContext and a `raw_buffer` chain) serves both
 * an mTLS peer meshlet and a plaintext client; the bytes read while sniffing are replayed into the
 * TLS handshake. A STRICT workload next to it still refuses plaintext, and a TLS client that
 * presents no certificate is refused on the PERMISSIVE port's mTLS chain.
 */
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMeshOrThrow } from '../../control-plane/mesh';
import { generateForWorkload } from '../../control-plane/generate';
import { startMesh, type TestMesh } from '../support/mesh';
import { stopAllMeshlets } from '../support/meshlet';

const MESH = `
trust_domain: cluster.local
services:
  - name: caller
    namespace: perm
    ports: [{ name: http, port: 9480, protocol: http, target_port: 19480 }]
  - name: open
    namespace: perm
    ports: [{ name: http, port: 9481, protocol: http, target_port: 19481 }]
  - name: closed
    namespace: perm
    ports: [{ name: http, port: 9482, protocol: http, target_port: 19482 }]
workloads:
  - { name: caller-v1, namespace: perm, service_account: caller, service: caller, address: "127.0.0.141:19480" }
  - { name: open-v1, namespace: perm, service_account: open, service: open, address: "127.0.0.142:19481", mtls: PERMISSIVE }
  - { name: closed-v1, namespace: perm, service_account: closed, service: closed, address: "127.0.0.143:19482" }
`;

let mesh: TestMesh;
const apps: http.Server[] = [];
const seen: { app: string; headers: http.IncomingHttpHeaders }[] = [];

function app(name: string, host: string, port: number): Promise<void> {
  const s = http.createServer((req, res) => {
    seen.push({ app: name, headers: req.headers });
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`${name} ok`);
  });
  apps.push(s);
  return new Promise((r) => s.listen(port, host, r));
}

beforeAll(async () => {
  await app('open', '127.0.0.142', 19481);
  await app('closed', '127.0.0.143', 19482);
  mesh = await startMesh(MESH, ['caller-v1', 'open-v1', 'closed-v1']);
});

afterAll(async () => {
  await mesh?.close();
  await stopAllMeshlets();
  for (const s of apps) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

function get(host: string, port: number, hostHeader: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host, port, path: '/p', agent: false, headers: { host: hostHeader, ...headers } }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

/** Raw plaintext HTTP/1.1 on a socket; resolves with whatever came back before close. */
function rawPlaintext(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const s = net.connect(port, host, () => s.write('GET /p HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'));
    s.setTimeout(5000, () => s.destroy());
    s.on('data', (d) => (got += d.toString()));
    s.on('close', () => resolve(got));
    s.on('error', () => {});
  });
}

describe('generated inbound listener for mtls modes', () => {
  it('PERMISSIVE has tls_inspector and a tls + raw_buffer chain; STRICT has only the mTLS chain', () => {
    const { mesh: m } = parseMeshOrThrow(MESH);
    const open = m.workloads.find((w) => w.name === 'open-v1')!;
    const closed = m.workloads.find((w) => w.name === 'closed-v1')!;
    expect(open.mtls).toBe('PERMISSIVE');
    expect(closed.mtls).toBe('STRICT');
    const lds = (w: typeof open) =>
      [...generateForWorkload(m, w).get('type.googleapis.com/envoy.config.listener.v3.Listener')!.values()].find((l) =>
        String(l.name).startsWith('inbound_'),
      ) as unknown as { continue_on_listener_filters_timeout?: boolean; listener_filters?: { name: string }[]; filter_chains: { filter_chain_match?: { transport_protocol?: string }; transport_socket?: unknown }[] };
    const permissive = lds(open);
    expect(permissive.listener_filters?.map((f) => f.name)).toEqual(['envoy.filters.listener.tls_inspector']);
    expect(permissive.continue_on_listener_filters_timeout).toBe(true);
    expect(permissive.filter_chains.map((c) => c.filter_chain_match?.transport_protocol)).toEqual(['tls', 'raw_buffer']);
    expect(permissive.filter_chains[0]!.transport_socket).toBeDefined();
    expect(permissive.filter_chains[1]!.transport_socket).toBeUndefined();
    const strict = lds(closed);
    expect(strict.filter_chains).toHaveLength(1);
    expect(strict.continue_on_listener_filters_timeout).toBeUndefined();
    expect(strict.filter_chains[0]!.transport_socket).toBeDefined();
  });

  it('PERMISSIVE with several ports: mTLS chains by SNI, plaintext chains by original destination port', () => {
    const multi = MESH.replace(
      "ports: [{ name: http, port: 9481, protocol: http, target_port: 19481 }]",
      "ports: [{ name: http, port: 9481, protocol: http, target_port: 19481 }, { name: tcp, port: 9483, protocol: tcp, target_port: 19483 }]",
    ).replace('address: "127.0.0.142:19481"', 'addresses: ["127.0.0.142:19481", "127.0.0.142:19483"]');
    const { mesh: m } = parseMeshOrThrow(multi);
    const open = m.workloads.find((w) => w.name === 'open-v1')!;
    const l = [...generateForWorkload(m, open).get('type.googleapis.com/envoy.config.listener.v3.Listener')!.values()].find((x) =>
      String(x.name).startsWith('inbound_'),
    ) as unknown as { filter_chains: { name: string; filter_chain_match: Record<string, unknown> }[] };
    expect(l.filter_chains.map((c) => [c.name, c.filter_chain_match])).toEqual([
      ['inbound_9481', { server_names: ['outbound_.9481_._.open.perm.svc.cluster.local', 'outbound_.9481_.v1_.open.perm.svc.cluster.local'], transport_protocol: 'tls' }],
      ['inbound_9481_plaintext', { transport_protocol: 'raw_buffer', destination_port: 19481 }],
      ['inbound_9483', { server_names: ['outbound_.9483_._.open.perm.svc.cluster.local', 'outbound_.9483_.v1_.open.perm.svc.cluster.local'], transport_protocol: 'tls' }],
      ['inbound_9483_plaintext', { transport_protocol: 'raw_buffer', destination_port: 19483 }],
    ]);
  });

  it('rejects an unknown mtls mode with its path', () => {
    expect(() => parseMeshOrThrow(MESH.replace('mtls: PERMISSIVE', 'mtls: LOOSE'))).toThrow(/workloads\[1\]\.mtls/);
  });
});

describe('PERMISSIVE inbound port', () => {
  it('serves an mTLS peer meshlet and shows its SPIFFE ID in XFCC', async () => {
    const before = seen.length;
    const r = await get('127.0.0.141', 9481, 'open.perm.svc.cluster.local');
    expect(r).toEqual({ status: 200, body: 'open ok' });
    const h = seen.slice(before).find((x) => x.app === 'open')!.headers;
    expect(String(h['x-forwarded-client-cert'])).toContain('URI=spiffe://cluster.local/ns/perm/sa/caller');
    expect(String(h['x-forwarded-client-cert'])).toContain('By=spiffe://cluster.local/ns/perm/sa/open');
  });

  it('serves a plaintext client on the same port with no peer identity (a forged XFCC is removed)', async () => {
    const before = seen.length;
    const r = await get('127.0.0.142', 15006, 'open', {
      'x-forwarded-client-cert': 'By=spiffe://cluster.local/ns/perm/sa/open;URI=spiffe://cluster.local/ns/perm/sa/forged',
    });
    expect(r).toEqual({ status: 200, body: 'open ok' });
    const h = seen.slice(before).find((x) => x.app === 'open')!.headers;
    expect(h['x-forwarded-client-cert']).toBeUndefined();
  });

  it('refuses a TLS client that presents no certificate', async () => {
    const before = seen.length;
    const outcome = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.142', port: 15006, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
        s.write('GET /p HTTP/1.1\r\nhost: open\r\nconnection: close\r\n\r\n');
      });
      let got = '';
      s.setTimeout(5000, () => s.destroy());
      s.on('data', (d) => (got += d.toString()));
      s.on('error', (e) => resolve(`error: ${e.message}`));
      s.on('close', () => resolve(got === '' ? 'closed' : got));
    });
    expect(outcome).not.toContain('200');
    expect(seen.slice(before).filter((x) => x.app === 'open')).toHaveLength(0);
  });

  it('replays sniffed bytes into the handshake when the ClientHello arrives in pieces', async () => {
    // A relay that delivers the client's first flight one byte, then the rest 50 ms later: the
    // listener classifies the connection from the single byte and TLS must still see all of it.
    const cert = await mesh.cp.ca.issueWorkload({ ns: 'perm', sa: 'caller' });
    const relay = net.createServer((down) => {
      const up = net.connect(15006, '127.0.0.142');
      let first = true;
      down.on('data', (d: Buffer) => {
        if (!first) return void up.write(d);
        first = false;
        down.pause();
        up.write(d.subarray(0, 1));
        setTimeout(() => {
          up.write(d.subarray(1));
          down.resume();
        }, 50);
      });
      up.pipe(down);
      down.on('end', () => up.end());
      up.on('error', () => down.destroy());
      down.on('error', () => up.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    try {
      const port = (relay.address() as net.AddressInfo).port;
      const before = seen.length;
      const body = await new Promise<string>((resolve, reject) => {
        const s = tls.connect(
          { host: '127.0.0.1', port, ca: mesh.cp.ca.rootCertPem, cert: cert.certChainPem, key: cert.privateKeyPem, ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined },
          () => s.write('GET /split HTTP/1.1\r\nhost: open\r\nconnection: close\r\n\r\n'),
        );
        let got = '';
        s.setTimeout(5000, () => s.destroy(new Error('timeout')));
        s.on('data', (d) => (got += d.toString()));
        s.on('end', () => resolve(got));
        s.on('error', reject);
      });
      expect(body).toMatch(/^HTTP\/1\.1 200/);
      expect(body).toContain('open ok');
      const h = seen.slice(before).find((x) => x.app === 'open')!.headers;
      expect(String(h['x-forwarded-client-cert'])).toContain('URI=spiffe://cluster.local/ns/perm/sa/caller');
    } finally {
      await new Promise((r) => relay.close(r));
    }
  });

  it('counts sniffed connections by the chain they took', () => {
    const l = mesh.sidecars.get('open-v1')!.server.listeners.get('inbound_127.0.0.142_15006')!;
    expect(l.stats.noFilterChainMatch).toBe(0);
    expect(l.stats.downstreamCxTotal).toBeGreaterThanOrEqual(3);
  });
});

describe('STRICT inbound port next to it', () => {
  it('still serves mTLS peers', async () => {
    const r = await get('127.0.0.141', 9482, 'closed.perm.svc.cluster.local');
    expect(r).toEqual({ status: 200, body: 'closed ok' });
  });

  it('refuses plaintext', async () => {
    const before = seen.length;
    const got = await rawPlaintext('127.0.0.143', 15006);
    expect(got).not.toContain('200');
    expect(seen.slice(before).filter((x) => x.app === 'closed')).toHaveLength(0);
  });
});
