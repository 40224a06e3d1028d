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
 * The wire definition (messages and service) is certs/csr-wire.ts, shared with the client.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { DevCa } from '../certs/dev-ca';
import { uriSansOf } from '../certs/identity';
import { MeshletError } from '../common/errors';
import type { CsrRequest, CsrResponse } from '../certs/csr-wire';

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
