/**
 * Certificate signing over gRPC in the shape of Istio's CA service
 * (`istio.v1.auth.IstioCertificateService/CreateCertificate`: a PEM PKCS#10 CSR and a requested
 * validity in seconds in, the PEM chain leaf-first out), served over TLS.
 *
 * Owns signing for an authenticated caller (see caller-auth.ts): a Kubernetes service-account token
 * as `authorization: Bearer <token>` (how the first certificate is obtained, as istio-agent does
 * it) or a client certificate this CA issued (renewal). Either way the caller may only obtain a
 * certificate for its own SPIFFE ID (`spiffe://<td>/ns/<ns>/sa/<sa>`), and only while that
 * identity belongs to a workload of the current mesh. RSA (>= 2048 bits) and EC P-256/P-384 CSRs
 * are accepted. The lifetime is the CA's: a caller can ask for a shorter one, never a longer one.
 * Every call is logged with the caller's peer address. Leans strict: no credential is
 * UNAUTHENTICATED, anything else not allowed is PERMISSION_DENIED.
 *
 * The wire definition (messages and service) is certs/csr-wire.ts, shared with the client.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { DevCa } from '../certs/dev-ca';
import { formatSpiffeId } from '../certs/identity';
import { MeshletError } from '../common/errors';
import type { CsrRequest, CsrResponse } from '../certs/csr-wire';
import { authenticateCall, type TokenAuthenticator } from './caller-auth';

export interface CsrServiceOptions {
  readonly ca: DevCa;
  /** Whether a SPIFFE ID belongs to a workload of the current mesh. */
  readonly isKnownIdentity: (spiffeId: string) => boolean;
  /** Verifies bearer tokens (first certificates); absent = only client certificates are accepted. */
  readonly tokens?: TokenAuthenticator;
  /**
   * The lifetime of every certificate, ms: the CA decides. A caller may ask for a shorter one
   * (validity_duration), never a longer one.
   */
  readonly lifetimeMs: number;
  readonly log?: Logger;
  /** Told of every certificate signed (a root roll counts who renewed). */
  readonly onSigned?: (spiffeId: string, peer: string) => void;
}

/** The handler, separate from the server so it can be mounted on any grpc.Server. */
export function createCertificateHandler(opts: CsrServiceOptions): grpc.handleUnaryCall<CsrRequest, CsrResponse> {
  const { status } = require('@grpc/grpc-js') as typeof grpc;
  return (call, callback) => {
    const peer = call.getPeer();
    void authenticateCall(call, opts.ca.trustDomain, opts.tokens).then((auth) => {
      if (!auth.ok) {
        opts.log?.warn({ peer, reason: auth.reason }, 'CSR refused: caller not authenticated');
        callback({ code: status.UNAUTHENTICATED, details: auth.reason });
        return;
      }
      const id = auth.identity;
      const callerId = formatSpiffeId(opts.ca.trustDomain, id.namespace, id.serviceAccount);
      const requested = Number(call.request.validity_duration ?? 0);
      const lifetimeMs = requested > 0 ? Math.min(requested * 1000, opts.lifetimeMs) : opts.lifetimeMs;
      try {
        const issued = opts.ca.signCsr(
          call.request.csr ?? '',
          (want) => want === callerId && opts.isKnownIdentity(want),
          lifetimeMs,
        );
        const chain = issued.certChainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
        opts.log?.info(
          { peer, caller: callerId, via: id.via, key: issued.keyDescription, serial: issued.serial, notAfter: issued.notAfter.toISOString() },
          'signed CSR',
        );
        opts.onSigned?.(callerId, peer);
        callback(null, { cert_chain: chain });
      } catch (err) {
        const denied = err instanceof MeshletError && err.code === 'MESHLET_ERR_DENIED';
        opts.log?.warn({ peer, caller: callerId, via: id.via, error: (err as Error).message }, 'CSR refused');
        callback({
          code: denied ? status.PERMISSION_DENIED : status.INVALID_ARGUMENT,
          details: (err as Error).message,
        });
      }
    });
  };
}

/**
 * Server credentials for the secure port: a CA-issued serving certificate; client certificates
 * are requested and verified against the CA's trust bundle but not required (a token may stand in).
 * Both follow a root roll without a restart: the roots are the CA's current trust bundle, and the
 * serving certificate is re-issued when the signing root changes.
 */
export async function secureServerCredentials(ca: DevCa): Promise<grpc.ServerCredentials> {
  const issueServing = async () => {
    const serving = await ca.issueWorkload({
      ns: 'istio-system',
      sa: 'istiod',
      dnsNames: ['localhost', 'istiod.istio-system.svc', 'meshlet-control-plane.meshlet-system.svc'],
      lifetimeMs: 365 * 24 * 3600_000,
    });
    return { certificate: Buffer.from(serving.certChainPem), privateKey: Buffer.from(serving.privateKeyPem!) };
  };
  const g = require('@grpc/grpc-js') as typeof grpc;
  let identity = await issueServing();
  const caListeners = new Set<grpc.experimental.CaCertificateUpdateListener>();
  const idListeners = new Set<grpc.experimental.IdentityCertificateUpdateListener>();
  const roots = () => ({ caCertificate: Buffer.from(ca.trustBundlePem) });
  ca.on('trust-bundle', () => {
    for (const l of caListeners) l(roots());
  });
  // A root roll: the serving certificate is re-issued under the new root (workloads trust both by then).
  ca.on('signer', () => {
    void issueServing().then(
      (id) => {
        identity = id;
        for (const l of idListeners) l(identity);
      },
      () => undefined,
    );
  });
  // grpc-js registers its watcher only after adding these listeners: answer on the next tick.
  const provider: grpc.experimental.CertificateProvider = {
    addCaCertificateListener: (l) => {
      caListeners.add(l);
      queueMicrotask(() => l(roots()));
    },
    removeCaCertificateListener: (l) => caListeners.delete(l),
    addIdentityCertificateListener: (l) => {
      idListeners.add(l);
      queueMicrotask(() => l(identity));
    },
    removeIdentityCertificateListener: (l) => idListeners.delete(l),
  };
  return g.experimental.createCertificateProviderServerCredentials(provider, provider, false);
}
