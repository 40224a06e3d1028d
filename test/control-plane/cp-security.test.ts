/**
 * Issue 18 item 3: the embedded control plane hands no private key to someone who only names a
 * node id. Real gRPC (plaintext ADS and the TLS port) on loopback, a real JWKS and ES256 tokens:
 *  - ADS without credentials is UNAUTHENTICATED and receives nothing (no key, no certificate);
 *  - a token for another service account is refused on ADS and on CreateCertificate;
 *  - a valid token gets the workload's configuration and ROOTCA only (never `default`), and a
 *    certificate for an EC P-256 CSR of its own identity, with the CA's lifetime;
 *  - a token with the wrong audience or issuer, or signed by another key, is refused.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCsr } from '../../certs/csr';
import { DevCa } from '../../certs/dev-ca';
import { uriSansOf } from '../../certs/identity';
import { type CsrRequest, type CsrResponse, csrServiceDefinition } from '../../certs/csr-wire';
import { createDevTokenIssuer, type DevTokenIssuer } from '../../control-plane/dev-tokens';
import { parseMeshOrThrow } from '../../control-plane/mesh';
import { ControlPlaneServer } from '../../control-plane/server';
import { decodeAny } from '../../control-plane/snapshot';
import { adsServiceDefinition, type DiscoveryRequestProto, type DiscoveryResponseProto, TYPE_URLS } from '../../xds-client/protos';

const EXAMPLE = readFileSync(join(__dirname, '../../control-plane/examples/bookinfo.yaml'), 'utf8');
const AdsClient = grpc.makeGenericClientConstructor(adsServiceDefinition(), 'AggregatedDiscoveryService');
const CsrClient = grpc.makeGenericClientConstructor(csrServiceDefinition(), 'IstioCertificateService');
const LIFETIME_MS = 20 * 60_000;

let dir: string;
let ca: DevCa;
let tokens: DevTokenIssuer;
let cp: ControlPlaneServer;
const records: Record<string, unknown>[] = [];
const clients: grpc.Client[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshlet-cp-auth-'));
  tokens = await createDevTokenIssuer(join(dir, 'jwks.json'));
  ca = await DevCa.create({ trustDomain: 'cluster.local' });
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) records.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  cp = await ControlPlaneServer.start({
    mesh: parseMeshOrThrow(EXAMPLE).mesh,
    port: 0,
    csrPort: 0,
    ca,
    certLifetimeMs: LIFETIME_MS,
    tokenAuth: { jwksFile: tokens.jwksFile, issuer: tokens.issuer },
    log: pino({ level: 'info' }, dest),
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await cp?.close();
  rmSync(dir, { recursive: true, force: true });
});

function bearer(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

/** One SotW ADS exchange for secrets and clusters; what came back, or how the stream ended. */
async function adsExchange(
  nodeId: string,
  md: grpc.Metadata,
): Promise<{ responses: DiscoveryResponseProto[]; error?: grpc.ServiceError }> {
  const c = new AdsClient(`127.0.0.1:${cp.port}`, grpc.credentials.createInsecure());
  clients.push(c);
  const stream = (c as unknown as { StreamAggregatedResources(md: grpc.Metadata): grpc.ClientDuplexStream<DiscoveryRequestProto, DiscoveryResponseProto> }).StreamAggregatedResources(md);
  const responses: DiscoveryResponseProto[] = [];
  const done = new Promise<grpc.ServiceError | undefined>((resolve) => {
    stream.on('data', (r: DiscoveryResponseProto) => {
      responses.push(r);
      if (responses.length === 2) resolve(undefined);
    });
    stream.on('error', (e: grpc.ServiceError) => resolve(e));
    setTimeout(() => resolve(undefined), 5_000);
  });
  const node = { id: nodeId };
  stream.write({ node, type_url: TYPE_URLS.secret, resource_names: ['default', 'ROOTCA'] } as DiscoveryRequestProto);
  stream.write({ node, type_url: TYPE_URLS.cluster, resource_names: [] } as DiscoveryRequestProto);
  const error = await done;
  stream.cancel();
  return { responses, error };
}

function secretsIn(responses: DiscoveryResponseProto[]): { names: string[]; text: string } {
  const decoded = responses
    .filter((r) => r.type_url === TYPE_URLS.secret)
    .flatMap((r) => (r.resources ?? []).map((a) => decodeAny(a)));
  return { names: decoded.map((d) => String(d.name)), text: JSON.stringify(decoded) };
}

function csrCall(req: CsrRequest, md: grpc.Metadata): Promise<CsrResponse> {
  const c = new CsrClient(`127.0.0.1:${cp.csrPort}`, grpc.credentials.createSsl(Buffer.from(ca.rootCertPem)), {
    'grpc.ssl_target_name_override': 'localhost',
  });
  clients.push(c);
  return new Promise((resolve, reject) => {
    (c as unknown as { CreateCertificate(r: CsrRequest, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: CsrResponse) => void): void }).CreateCertificate(
      req,
      md,
      (e, r) => (e ? reject(e) : resolve(r!)),
    );
  });
}

describe('ADS authentication', () => {
  it('a caller that only names a node id gets nothing: no key, no certificate, no configuration', async () => {
    const { responses, error } = await adsExchange('reviews-v1', new grpc.Metadata());
    expect(error?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(responses).toEqual([]);
    const refused = records.find((r) => r.msg === 'ADS stream refused: caller not authenticated');
    expect(String(refused?.peer)).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it("a token for another service account is refused for this workload's node", async () => {
    const token = await tokens.mint('default', 'productpage');
    const { responses, error } = await adsExchange('reviews-v1', bearer(token));
    expect(error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(error?.details).toMatch(/service account default\/productpage.*default\/reviews/);
    expect(responses).toEqual([]);
  });

  it('refuses tokens with the wrong audience, the wrong issuer, another signing key, or garbage', async () => {
    const other = await createDevTokenIssuer(join(dir, 'other-jwks.json'));
    const bad = [
      await tokens.mint('default', 'reviews', { audience: 'kubernetes' }),
      await tokens.mint('default', 'reviews', { issuer: 'https://elsewhere' }),
      await other.mint('default', 'reviews'),
      'not-a-jwt',
    ];
    for (const t of bad) {
      const { responses, error } = await adsExchange('reviews-v1', bearer(t));
      expect(error?.code, t).toBe(grpc.status.UNAUTHENTICATED);
      expect(error?.details).toMatch(/token rejected/);
      expect(responses).toEqual([]);
    }
  });

  it('a valid token gets its workload’s configuration and the trust bundle, never a private key', async () => {
    const token = await tokens.mint('default', 'reviews');
    const { responses, error } = await adsExchange('reviews-v1', bearer(token));
    expect(error).toBeUndefined();
    expect(responses.map((r) => r.type_url).sort()).toEqual([TYPE_URLS.cluster, TYPE_URLS.secret].sort());
    const { names, text } = secretsIn(responses);
    expect(names).toEqual(['ROOTCA']);
    expect(text).toMatch(/BEGIN CERTIFICATE/);
    expect(text).not.toMatch(/PRIVATE KEY|private_key|tls_certificate/);
    const opened = records.find((r) => r.msg === 'ADS stream opened' && r.node === 'reviews-v1');
    expect(opened).toMatchObject({ authenticated: 'default/reviews (token)' });
    expect(String(opened?.peer)).toMatch(/^127\.0\.0\.1:\d+$/);
  });
});

describe('CreateCertificate with a service-account token', () => {
  const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;

  it('signs an EC P-256 CSR for the token’s own identity, with the CA’s lifetime', async () => {
    const token = await tokens.mint('default', 'reviews');
    const res = await csrCall(
      { csr: buildCsr('spiffe://cluster.local/ns/default/sa/reviews', key), validity_duration: 365 * 24 * 3600 },
      bearer(token),
    );
    const leaf = new X509Certificate(res.cert_chain[0]!);
    expect(uriSansOf(leaf.subjectAltName)).toEqual(['spiffe://cluster.local/ns/default/sa/reviews']);
    expect(leaf.publicKey.asymmetricKeyType).toBe('ec');
    expect(leaf.checkPrivateKey(key)).toBe(true);
    expect(leaf.verify(new X509Certificate(ca.rootCertPem).publicKey)).toBe(true);
    // A year was asked for; the CA's 20 minutes were given.
    expect(Date.parse(leaf.validTo) - Date.now()).toBeLessThanOrEqual(LIFETIME_MS);
    expect(Date.parse(leaf.validTo) - Date.now()).toBeGreaterThan(LIFETIME_MS - 60_000);
    const signed = records.find((r) => r.msg === 'signed CSR');
    expect(signed).toMatchObject({ caller: 'spiffe://cluster.local/ns/default/sa/reviews', via: 'token', key: 'ec-prime256v1' });
    expect(String(signed?.peer)).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('refuses another identity, no credentials, and an invalid token', async () => {
    const csr = buildCsr('spiffe://cluster.local/ns/default/sa/productpage', key);
    const token = await tokens.mint('default', 'reviews');
    await expect(csrCall({ csr }, bearer(token))).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    await expect(csrCall({ csr }, new grpc.Metadata())).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    await expect(csrCall({ csr }, bearer(`${token.slice(0, -4)}AAAA`))).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
  });
});
