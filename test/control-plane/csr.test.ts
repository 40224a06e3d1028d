/**
 * Certificate renewal by CSR over mTLS (Istio's CreateCertificate shape), real gRPC on loopback:
 * a workload holding a certificate gets a new one for its own SPIFFE ID, and nothing else.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import forge from 'node-forge';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa, generateRsaKeyPair } from '../../certs/dev-ca';
import { uriSansOf } from '../../certs/identity';
import { type CsrRequest, type CsrResponse, csrServiceDefinition } from '../../certs/csr-wire';
import { parseMeshOrThrow } from '../../control-plane/mesh';
import { ControlPlaneServer } from '../../control-plane/server';

const EXAMPLE = readFileSync(join(__dirname, '../../control-plane/examples/bookinfo.yaml'), 'utf8');
const Client = grpc.makeGenericClientConstructor(csrServiceDefinition(), 'IstioCertificateService');
type CsrClient = grpc.Client & {
  CreateCertificate(req: CsrRequest, cb: (err: grpc.ServiceError | null, res?: CsrResponse) => void): void;
};

let ca: DevCa;
let server: ControlPlaneServer;
const clients: grpc.Client[] = [];

beforeAll(async () => {
  ca = await DevCa.create({ trustDomain: 'cluster.local' });
  server = await ControlPlaneServer.start({
    mesh: parseMeshOrThrow(EXAMPLE).mesh,
    port: 0,
    csrPort: 0,
    ca,
    log: pino({ level: 'silent' }),
  });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await server.close();
});

async function clientAs(sa: string | undefined): Promise<CsrClient> {
  let creds: grpc.ChannelCredentials;
  if (sa) {
    const id = await ca.issueWorkload({ ns: 'default', sa });
    creds = grpc.credentials.createSsl(
      Buffer.from(ca.rootCertPem),
      Buffer.from(id.privateKeyPem!),
      Buffer.from(id.certChainPem),
    );
  } else {
    creds = grpc.credentials.createSsl(Buffer.from(ca.rootCertPem));
  }
  const c = new Client(`127.0.0.1:${server.csrPort}`, creds, {
    'grpc.ssl_target_name_override': 'localhost',
    'grpc.default_authority': 'localhost',
  }) as unknown as CsrClient;
  clients.push(c);
  return c;
}

async function csrFor(uri: string): Promise<string> {
  const kp = await generateRsaKeyPair();
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(kp.publicKeyPem);
  csr.setAttributes([
    { name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: [{ type: 6, value: uri }] }] },
  ]);
  csr.sign(forge.pki.privateKeyFromPem(kp.privateKeyPem) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

function call(c: CsrClient, req: CsrRequest): Promise<CsrResponse> {
  return new Promise((resolve, reject) => {
    c.CreateCertificate(req, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

describe('CreateCertificate', () => {
  it('signs a CSR for the caller’s own identity with the requested validity', async () => {
    const c = await clientAs('reviews');
    const res = await call(c, {
      csr: await csrFor('spiffe://cluster.local/ns/default/sa/reviews'),
      validity_duration: 600,
    });
    expect(res.cert_chain).toHaveLength(2);
    const leaf = new X509Certificate(res.cert_chain[0]!);
    expect(uriSansOf(leaf.subjectAltName)).toEqual(['spiffe://cluster.local/ns/default/sa/reviews']);
    expect(leaf.verify(new X509Certificate(ca.rootCertPem).publicKey)).toBe(true);
    expect(res.cert_chain[1]).toBe(ca.rootCertPem);
    expect(Date.parse(leaf.validTo) - Date.now()).toBeLessThanOrEqual(600_000);
    expect(Date.parse(leaf.validTo) - Date.now()).toBeGreaterThan(500_000);
  });

  it('refuses another identity, an identity outside the mesh, and garbage', async () => {
    const c = await clientAs('reviews');
    await expect(
      call(c, { csr: await csrFor('spiffe://cluster.local/ns/default/sa/productpage') }),
    ).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: expect.stringMatching(
        /not allowed to request identity spiffe:\/\/cluster.local\/ns\/default\/sa\/productpage/,
      ),
    });
    const ghost = await clientAs('ghost');
    await expect(
      call(ghost, { csr: await csrFor('spiffe://cluster.local/ns/default/sa/ghost') }),
    ).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
    });
    await expect(call(c, { csr: 'not a csr' })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });

  it('requires a client certificate', async () => {
    const anon = await clientAs(undefined);
    const err = (await call(anon, { csr: await csrFor('spiffe://cluster.local/ns/default/sa/reviews') }).catch(
      (e: grpc.ServiceError) => e,
    )) as grpc.ServiceError;
    expect([grpc.status.UNAVAILABLE, grpc.status.UNAUTHENTICATED]).toContain(err.code);
  });
});
