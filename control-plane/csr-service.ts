/**
 * Certificate signing over gRPC in the shape of Istio's CA service
 * (`istio.v1.auth.IstioCertificateService/CreateCertificate`: a PEM PKCS#10 CSR and a requested
 * validity in seconds in, the PEM chain leaf-first out), served over mTLS.
 *
 * Owns renewal by CSR: the caller authenticates with its current workload certificate (issued by
 * this CA, e.g. over SDS) and may only obtain a certificate for the SPIFFE ID it already holds,
 * and only while that identity belongs to a workload of the current mesh. There is no bootstrap
 * credential (Istio uses a Kubernetes service-account token for the first certificate); first
 * certificates come from SDS. Leans strict: anything else is PERMISSION_DENIED.
 *
 * No .proto is vendored and no npm package ships Istio's: the two messages are declared with
 * protobufjs reflection, wire-compatible with Istio's field numbers (csr = 1,
 * validity_duration = 3, cert_chain = 1); request metadata (field 4) is skipped.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type * as protobuf from 'protobufjs';
import type { DevCa } from '../certs/dev-ca';
import { uriSansOf } from '../certs/identity';
import { MeshletError } from '../proxy/errors';

/** CreateCertificate request as this service sees it. */
export interface CsrRequest {
  csr: string;
  /** Requested lifetime in seconds; 0 = the CA's default. */
  validity_duration?: number | string;
}

export interface CsrResponse {
  cert_chain: string[];
}

const SERVICE = 'istio.v1.auth.IstioCertificateService';

let types: { req: protobuf.Type; res: protobuf.Type } | undefined;
function messageTypes(): { req: protobuf.Type; res: protobuf.Type } {
  if (types) return types;
  // Loaded on first use: the sidecar imports this module for the type of its CSR client, and only
  // a bootstrap with a CSR certificate provider ever calls it.
  const protobuf = require('protobufjs') as typeof import('protobufjs');
  const req = new protobuf.Type('IstioCertificateRequest')
    .add(new protobuf.Field('csr', 1, 'string'))
    .add(new protobuf.Field('validity_duration', 3, 'int64'));
  const res = new protobuf.Type('IstioCertificateResponse').add(
    new protobuf.Field('cert_chain', 1, 'string', 'repeated'),
  );
  new protobuf.Root().define('istio.v1.auth').add(req).add(res);
  types = { req, res };
  return types;
}

function codec<T>(t: protobuf.Type) {
  return {
    serialize: (v: T) => Buffer.from(t.encode(t.fromObject(v as Record<string, unknown>)).finish()),
    deserialize: (b: Buffer) => t.toObject(t.decode(b), { longs: Number, defaults: true }) as T,
  };
}

/** gRPC service definition of CreateCertificate (for servers and clients alike). */
export function csrServiceDefinition(): grpc.ServiceDefinition {
  const { req, res } = messageTypes();
  const rq = codec<CsrRequest>(req);
  const rs = codec<CsrResponse>(res);
  return {
    CreateCertificate: {
      path: `/${SERVICE}/CreateCertificate`,
      requestStream: false,
      responseStream: false,
      requestSerialize: rq.serialize,
      requestDeserialize: rq.deserialize,
      responseSerialize: rs.serialize,
      responseDeserialize: rs.deserialize,
      originalName: 'createCertificate',
    },
  } as grpc.ServiceDefinition;
}

export interface CsrServiceOptions {
  readonly ca: DevCa;
  /** Whether a SPIFFE ID belongs to a workload of the current mesh. */
  readonly isKnownIdentity: (spiffeId: string) => boolean;
  /** Upper bound for requested lifetimes, ms (default 24 h); 0/absent request = `defaultLifetimeMs`. */
  readonly maxLifetimeMs?: number;
  readonly defaultLifetimeMs?: number;
  readonly log?: Logger;
}

/** The handler, separate from the server so it can be mounted on any grpc.Server. */
export function createCertificateHandler(opts: CsrServiceOptions): grpc.handleUnaryCall<CsrRequest, CsrResponse> {
  const { status } = require('@grpc/grpc-js') as typeof grpc;
  const max = opts.maxLifetimeMs ?? 24 * 3600_000;
  return (call, callback) => {
    const peer = call.getAuthContext()?.sslPeerCertificate;
    const callerIds = uriSansOf(peer?.subjectaltname);
    if (callerIds.length === 0) {
      callback({
        code: status.UNAUTHENTICATED,
        details: 'a client certificate with a SPIFFE URI SAN is required',
      });
      return;
    }
    const requested = Number(call.request.validity_duration ?? 0);
    const lifetimeMs = requested > 0 ? Math.min(requested * 1000, max) : opts.defaultLifetimeMs;
    try {
      const issued = opts.ca.signCsr(
        call.request.csr ?? '',
        (id) => callerIds.includes(id) && opts.isKnownIdentity(id),
        lifetimeMs,
      );
      const chain = issued.certChainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
      opts.log?.info(
        { caller: callerIds[0], serial: issued.serial, notAfter: issued.notAfter.toISOString() },
        'signed CSR',
      );
      callback(null, { cert_chain: chain });
    } catch (err) {
      const denied = err instanceof MeshletError && err.code === 'MESHLET_ERR_DENIED';
      opts.log?.warn({ caller: callerIds[0], error: (err as Error).message }, 'CSR refused');
      callback({
        code: denied ? status.PERMISSION_DENIED : status.INVALID_ARGUMENT,
        details: (err as Error).message,
      });
    }
  };
}

/** Server credentials for the CSR port: a CA-issued serving certificate, client certs required. */
export async function csrServerCredentials(ca: DevCa): Promise<grpc.ServerCredentials> {
  const serving = await ca.issueWorkload({
    ns: 'istio-system',
    sa: 'istiod',
    dnsNames: ['localhost', 'istiod.istio-system.svc'],
    lifetimeMs: 365 * 24 * 3600_000,
  });
  return (require('@grpc/grpc-js') as typeof grpc).ServerCredentials.createSsl(
    Buffer.from(ca.rootCertPem),
    [{ cert_chain: Buffer.from(serving.certChainPem), private_key: Buffer.from(serving.privateKeyPem!) }],
    true,
  );
}
