/**
 * A stand-in for the Kubernetes token issuer, for the demo and tests on loopback: an ES256 key
 * pair whose public half is written as a JWKS file the control plane verifies against
 * (`--jwks-file`), and service-account tokens shaped like kubelet's projected ones
 * (`sub: system:serviceaccount:<ns>:<sa>`, `aud: istio-ca`, short expiry, the `kubernetes.io`
 * claim). Nothing here is used by a control plane in a real cluster, where the API server
 * signs tokens and publishes its keys at /openid/v1/jwks.
 */
import { writeFile } from 'node:fs/promises';

/** The issuer the demo's tokens carry (what a kind/kubeadm API server uses by default). */
export const DEV_TOKEN_ISSUER = 'https://kubernetes.default.svc.cluster.local';

export interface DevTokenIssuer {
  readonly issuer: string;
  /** Where the JWKS (public key) was written. */
  readonly jwksFile: string;
  /** A signed token for namespace/serviceAccount. */
  mint(namespace: string, serviceAccount: string, opts?: { audience?: string; ttlSeconds?: number; issuer?: string }): Promise<string>;
}

export async function createDevTokenIssuer(jwksFile: string, issuer = DEV_TOKEN_ISSUER): Promise<DevTokenIssuer> {
  const jose = await import('jose');
  const { privateKey, publicKey } = await jose.generateKeyPair('ES256', { extractable: true });
  const kid = `meshlet-dev-${Date.now().toString(36)}`;
  const jwk = { ...(await jose.exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  await writeFile(jwksFile, `${JSON.stringify({ keys: [jwk] }, null, 2)}\n`, { mode: 0o644 });
  return {
    issuer,
    jwksFile,
    mint: (namespace, serviceAccount, opts = {}) =>
      new jose.SignJWT({ 'kubernetes.io': { namespace, serviceaccount: { name: serviceAccount } } })
        .setProtectedHeader({ alg: 'ES256', kid })
        .setIssuer(opts.issuer ?? issuer)
        .setAudience(opts.audience ?? 'istio-ca')
        .setSubject(`system:serviceaccount:${namespace}:${serviceAccount}`)
        .setIssuedAt()
        .setExpirationTime(`${opts.ttlSeconds ?? 3600}s`)
        .sign(privateKey),
  };
}
