/**
 * Who is calling the control plane: the identity behind an ADS stream or a CreateCertificate call.
 *
 * Two credentials are accepted, as istiod accepts them on 15012:
 *  - a Kubernetes service-account token (a JWT, e.g. a projected token with audience `istio-ca`)
 *    sent as `authorization: Bearer <token>` metadata, verified against a JWKS (a file, re-read
 *    when it changes, or a URL such as the API server's /openid/v1/jwks) with the configured
 *    issuer and audiences; its `sub` (`system:serviceaccount:<ns>:<sa>`) is the identity;
 *  - a client certificate issued by this CA (TLS port only): its SPIFFE URI SAN is the identity.
 *
 * Owns verification only; what an identity may do is decided by the caller of `authenticate`
 * (ADS: the node must be a workload of that namespace and service account; CSR: only that
 * identity is signed). Leans strict: an unverifiable token is refused with the reason, never
 * treated as anonymous.
 */
import { readFile, stat } from 'node:fs/promises';
import type * as grpc from '@grpc/grpc-js';
import type { JWTVerifyGetKey } from 'jose';
import { parseSpiffeId, uriSansOf } from '../certs/identity';

/** Where signing keys come from and which claims a token must carry. */
export interface TokenAuthOptions {
  /** A JWKS document on disk (re-read when it changes). One of jwksFile / jwksUri. */
  readonly jwksFile?: string;
  /** A JWKS URL, fetched and cached (e.g. https://kubernetes.default.svc/openid/v1/jwks). */
  readonly jwksUri?: string;
  /** PEM roots for an https jwksUri (default: Node's). */
  readonly jwksCaFile?: string;
  /** A token file sent as Bearer when fetching jwksUri (the API server requires one). */
  readonly jwksTokenFile?: string;
  /** Required `iss` (Kubernetes: https://kubernetes.default.svc.cluster.local unless configured). */
  readonly issuer: string;
  /** `aud` must contain one of these (default: istio-ca, Istio's CA audience). */
  readonly audiences?: readonly string[];
}

/** An authenticated caller. */
export interface CallerIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly via: 'token' | 'certificate';
}

export type AuthResult =
  | { readonly ok: true; readonly identity: CallerIdentity }
  | { readonly ok: false; readonly anonymous: boolean; readonly reason: string };

const SA_SUBJECT = /^system:serviceaccount:([^:]+):([^:]+)$/;
/** How often the JWKS file's mtime is checked, ms. */
const FILE_CHECK_MS = 1000;
/** Tolerated clock skew between the token issuer and this process, s. */
const CLOCK_TOLERANCE_S = 30;

export class TokenAuthenticator {
  readonly audiences: readonly string[];
  private keys: JWTVerifyGetKey | undefined;
  private fileMtime = -1;
  private checkedAt = 0;
  private loading: Promise<void> | undefined;

  constructor(readonly opts: TokenAuthOptions) {
    if (!opts.jwksFile === !opts.jwksUri) throw new TypeError('token authentication needs exactly one of jwksFile or jwksUri');
    this.audiences = opts.audiences?.length ? opts.audiences : ['istio-ca'];
  }

  /** Load the keys now (start-up check: a missing or invalid JWKS file fails early). */
  async init(): Promise<void> {
    await this.refresh(true);
  }

  /** Verify a token; resolves to the service account it was issued to. Rejects with the reason. */
  async verify(token: string): Promise<{ namespace: string; serviceAccount: string }> {
    await this.refresh(false);
    const { jwtVerify } = await import('jose');
    const { payload } = await jwtVerify(token, this.keys!, {
      issuer: this.opts.issuer,
      audience: [...this.audiences],
      clockTolerance: CLOCK_TOLERANCE_S,
    });
    if (payload.exp === undefined) throw new Error('token has no exp claim');
    const m = SA_SUBJECT.exec(payload.sub ?? '');
    if (!m) throw new Error(`token subject ${JSON.stringify(payload.sub)} is not a service account (system:serviceaccount:<ns>:<sa>)`);
    return { namespace: m[1]!, serviceAccount: m[2]! };
  }

  private refresh(force: boolean): Promise<void> {
    if (this.keys && this.opts.jwksUri) return Promise.resolve();
    if (!force && this.keys && Date.now() - this.checkedAt < FILE_CHECK_MS) return Promise.resolve();
    this.loading ??= this.load().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  private async load(): Promise<void> {
    const jose = await import('jose');
    if (this.opts.jwksUri) {
      const headers: Record<string, string> = {};
      if (this.opts.jwksTokenFile) headers.authorization = `Bearer ${(await readFile(this.opts.jwksTokenFile, 'utf8')).trim()}`;
      let agent: unknown;
      if (this.opts.jwksCaFile) {
        const https = await import('node:https');
        agent = new https.Agent({ ca: await readFile(this.opts.jwksCaFile, 'utf8') });
      }
      this.keys = jose.createRemoteJWKSet(new URL(this.opts.jwksUri), { headers, agent });
      return;
    }
    const file = this.opts.jwksFile!;
    this.checkedAt = Date.now();
    const st = await stat(file);
    if (this.keys && st.mtimeMs === this.fileMtime) return;
    const doc = JSON.parse(await readFile(file, 'utf8')) as Parameters<typeof jose.createLocalJWKSet>[0];
    if (!doc || !Array.isArray(doc.keys)) throw new Error(`${file}: not a JWKS document (no "keys" array)`);
    this.keys = jose.createLocalJWKSet(doc);
    this.fileMtime = st.mtimeMs;
  }
}

/** The bearer token in a call's metadata, if any. */
export function bearerToken(md: grpc.Metadata): string | undefined {
  const v = md.get('authorization')[0];
  if (typeof v !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(v);
  return m ? m[1] : undefined;
}

/**
 * Authenticate a call: a verified client certificate of this trust domain first, then a bearer
 * token. `anonymous` = no credential at all was presented.
 */
export async function authenticateCall(
  call: { readonly metadata: grpc.Metadata; getAuthContext?(): { sslPeerCertificate?: { subjectaltname?: string } } },
  trustDomain: string,
  tokens: TokenAuthenticator | undefined,
): Promise<AuthResult> {
  const peer = call.getAuthContext?.()?.sslPeerCertificate;
  for (const uri of uriSansOf(peer?.subjectaltname)) {
    const id = parseSpiffeId(uri);
    if ('error' in id || id.trustDomain !== trustDomain || !id.ns || !id.sa) continue;
    return { ok: true, identity: { namespace: id.ns, serviceAccount: id.sa, via: 'certificate' } };
  }
  const token = bearerToken(call.metadata);
  if (token === undefined) {
    const sent = call.metadata.get('authorization').length > 0;
    return {
      ok: false,
      anonymous: !sent && !peer,
      reason: sent
        ? 'the authorization metadata is not "Bearer <token>"'
        : peer
          ? `the client certificate carries no SPIFFE ID of trust domain ${trustDomain}`
          : 'no credentials: send a service-account token as "authorization: Bearer <token>" or use a client certificate',
    };
  }
  if (!tokens) return { ok: false, anonymous: false, reason: 'a bearer token was sent but token authentication is not configured on this control plane (no JWKS)' };
  try {
    return { ok: true, identity: { ...(await tokens.verify(token)), via: 'token' } };
  } catch (err) {
    return { ok: false, anonymous: false, reason: `token rejected: ${(err as Error).message}` };
  }
}
