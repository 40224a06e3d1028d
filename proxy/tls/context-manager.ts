/**
 * Secure contexts for listeners and clusters, built from CommonTlsContext config and the
 * certificate store (SDS secrets `default` / `ROOTCA`, static secrets, or inline/file certs).
 *
 * Rotation contract: a context is looked up per handshake from a small cache keyed by the serials
 * of the secrets it uses; when the store rotates a secret the cache entry is rebuilt, so the next
 * handshake presents the new certificate while connections already open are untouched. Leans
 * strict: a context whose secrets are missing cannot be built, and the connection is refused with
 * a clear reason rather than served without identity.
 */
import { createHash, X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { splitSan, uriSansOf } from '../../certs/identity';
import type { CertStore } from '../../certs/store';
import { readDataSource } from '../../common/data-source';
import type { CertValidationContext, CommonTlsConfig, SanMatcher } from '../config/types';
import { matchString } from '../http/route-matcher';

export interface ResolvedContext {
  readonly secureContext: tls.SecureContext;
  /** SAN matchers the peer certificate must satisfy (from the validation context). */
  readonly sanMatchers: readonly SanMatcher[];
  /** Whether a trust bundle is configured (peer certificates can be verified). */
  readonly canVerifyPeer: boolean;
  /** The local identity's SPIFFE ID (first URI SAN of our certificate), for logs and XFCC. */
  readonly localPrincipal?: string;
}

/** First URI SAN of a PEM certificate (the SPIFFE ID for mesh certificates). */
export function firstUriSan(certPem: string): string | undefined {
  return uriSansOf(new X509Certificate(certPem).subjectAltName)[0];
}

/** Envoy match_typed_subject_alt_names: any matcher matching any SAN of its type passes. */
export function sanMatches(matchers: readonly SanMatcher[], cert: { subjectaltname?: string }): boolean {
  if (matchers.length === 0) return true;
  const san = cert.subjectaltname ?? '';
  const entries = san ? splitSan(san) : [];
  for (const m of matchers) {
    const prefix = m.sanType === 'URI' ? 'URI:' : m.sanType === 'DNS' ? 'DNS:' : m.sanType === 'EMAIL' ? 'email:' : m.sanType === 'IP_ADDRESS' ? 'IP Address:' : 'othername:';
    for (const e of entries) {
      if (e.startsWith(prefix) && matchString(m.matcher, e.slice(prefix.length))) return true;
    }
  }
  return false;
}

export class TlsContextManager {
  /** Per config object and role: the context built for the current secret generation. */
  private readonly server = new WeakMap<CommonTlsConfig, { gen: number; ctx: ResolvedContext }>();
  private readonly client = new WeakMap<CommonTlsConfig, { gen: number; ctx: ResolvedContext }>();
  private readonly cache = new Map<string, ResolvedContext>();
  /** Bumped on every rotation: cached contexts of older generations are rebuilt on next use. */
  private generation = 0;

  constructor(private readonly store: CertStore | undefined) {
    store?.on('rotate', () => {
      this.generation++;
      this.cache.clear();
    });
  }

  /** Hot-path lookup per handshake: a WeakMap hit unless a secret rotated since. */
  current(common: CommonTlsConfig, isServer: boolean): ResolvedContext {
    const m = isServer ? this.server : this.client;
    const e = m.get(common);
    if (e && e.gen === this.generation) return e.ctx;
    const ctx = this.resolve(common, isServer);
    m.set(common, { gen: this.generation, ctx });
    return ctx;
  }

  /**
   * The current context for `common` (isServer decides defaults such as ALPN). Throws with a
   * readable reason when a referenced secret is not available yet.
   */
  resolve(common: CommonTlsConfig, isServer: boolean): ResolvedContext {
    let certPem: string | undefined;
    let keyPem: string | undefined;
    let keyTag = '';
    const inlineCert = common.tlsCertificates[0];
    if (inlineCert) {
      certPem = readDataSource(inlineCert.certificateChain);
      keyPem = readDataSource(inlineCert.privateKey);
      keyTag = `inline:${hash(certPem)}`;
    } else if (common.tlsCertificateSdsSecretConfigs[0]) {
      const name = common.tlsCertificateSdsSecretConfigs[0].name;
      const id = this.store?.identity(name);
      if (!id) throw new Error(`TLS certificate secret "${name}" is not available yet`);
      certPem = id.certChainPem;
      keyPem = id.privateKeyPem;
      keyTag = `sds:${name}:${id.chain[0]!.serialNumber}`;
    }

    let caPem: string | undefined;
    let validation: CertValidationContext | undefined = common.validationContext ?? common.combinedDefaultValidationContext;
    let caTag = '';
    if (common.validationContextSdsSecretConfig) {
      const name = common.validationContextSdsSecretConfig.name;
      const tb = this.store?.trustBundle(name);
      if (!tb) throw new Error(`validation context secret "${name}" is not available yet`);
      caPem = tb.rootsPem;
      caTag = `sds:${name}:${tb.roots.map((r) => r.serialNumber).join(',')}`;
      // The SDS secret's own matchers apply unless the combined default context has its own.
      const sdsVc = tb.secret.validationContext;
      if (sdsVc && (!validation || validation.matchTypedSubjectAltNames.length === 0)) {
        validation = { ...sdsVc, matchTypedSubjectAltNames: validation?.matchTypedSubjectAltNames.length ? validation.matchTypedSubjectAltNames : sdsVc.matchTypedSubjectAltNames };
      }
    }
    if (!caPem && validation?.trustedCa) {
      caPem = readDataSource(validation.trustedCa);
      caTag = `inline:${hash(caPem)}`;
    }
    const alpn = common.alpnProtocols.length > 0 ? common.alpnProtocols : isServer ? ['h2', 'http/1.1'] : [];
    const key = `${isServer ? 's' : 'c'}|${keyTag}|${caTag}|${alpn.join(',')}|${common.tlsMinimumProtocolVersion ?? ''}|${common.cipherSuites.join(':')}|${common.ecdhCurves?.join(':') ?? ''}|${common.signatureAlgorithms?.join(':') ?? ''}|${JSON.stringify(validation?.matchTypedSubjectAltNames ?? [])}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    if (isServer && (!certPem || !keyPem)) throw new Error('a server TLS context needs a certificate (tls_certificates or an SDS secret)');
    const secureContext = tls.createSecureContext({
      cert: certPem,
      key: keyPem,
      ca: caPem,
      minVersion: common.tlsMinimumProtocolVersion === 'TLSv1_3' ? 'TLSv1.3' : 'TLSv1.2',
      maxVersion: common.tlsMaximumProtocolVersion === 'TLSv1_2' ? 'TLSv1.2' : 'TLSv1.3',
      ciphers: common.cipherSuites.length > 0 ? common.cipherSuites.join(':') : undefined,
      ecdhCurve: common.ecdhCurves?.join(':'),
      sigalgs: common.signatureAlgorithms?.join(':'),
      // Session resumption lets meshlet-to-meshlet reconnects skip the full handshake. A server
      // context that requests client certificates must have a session id context, or OpenSSL
      // fails every resumption attempt ("session id context uninitialized").
      sessionTimeout: 300,
      sessionIdContext: isServer ? hash(`meshlet|${keyTag}|${caTag}`).slice(0, 32) : undefined,
    });
    const resolved: ResolvedContext = {
      secureContext,
      sanMatchers: validation?.matchTypedSubjectAltNames ?? [],
      canVerifyPeer: caPem !== undefined,
      localPrincipal: certPem ? firstUriSan(certPem) : undefined,
    };
    this.cache.set(key, resolved);
    return resolved;
  }
}

function hash(s: string): string {
  return createHash('sha1').update(s).digest('hex').slice(0, 16);
}
