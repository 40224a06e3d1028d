/**
 * Decoders for envoy.extensions.transport_sockets.tls.v3: DownstreamTlsContext,
 * UpstreamTlsContext, CommonTlsContext, CertificateValidationContext, TlsCertificate and
 * SdsSecretConfig, plus the `transport_socket` wrapper (tls or raw_buffer).
 *
 * Leans fail-closed: a validation option meshlet cannot honour (SPKI/hash pinning, accepting
 * untrusted chains, custom validators, private key providers) is an error, never a warning,
 * because ignoring it would silently weaken peer verification.
 */
import * as tls from 'node:tls';
import type { Reader } from '../../../common/reader';
import type {
  CertValidationContext,
  CommonTlsConfig,
  DownstreamTlsConfig,
  SanMatcher,
  SdsSecretConfig,
  TlsCertificate,
  UpstreamTlsConfig,
} from '../types';
import type { DecodeContext } from './context';
import { decodeConfigSource } from './config-source';
import { decodeDataSource, enumNamed, enumOf } from './core';
import { decodeStringMatcher } from './matchers';
import { reportUnsupportedType } from './unsupported';

export const T_DOWNSTREAM_TLS = 'envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
export const T_UPSTREAM_TLS = 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
export const T_RAW_BUFFER = 'envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer';
const N_TLS = 'envoy.transport_sockets.tls';
const N_RAW = 'envoy.transport_sockets.raw_buffer';

const SAN_TYPES = { SAN_TYPE_UNSPECIFIED: 0, EMAIL: 1, DNS: 2, URI: 3, IP_ADDRESS: 4, OTHER_NAME: 5 } as const;
const TLS_VERSIONS = { TLS_AUTO: 0, TLSv1_0: 1, TLSv1_1: 2, TLSv1_2: 3, TLSv1_3: 4 } as const;

function requiredDataSource(r: Reader, key: string) {
  const d = r.obj(key);
  if (!d) {
    r.error(key, 'is required');
    return undefined;
  }
  return decodeDataSource(d);
}

/** envoy.extensions.transport_sockets.tls.v3.TlsCertificate */
export function decodeTlsCertificate(r: Reader): TlsCertificate | undefined {
  const certificateChain = requiredDataSource(r, 'certificate_chain');
  const privateKey = requiredDataSource(r, 'private_key');
  for (const k of ['password', 'private_key_provider', 'pkcs12', 'ocsp_staple'] as const) {
    if (r.has(k)) r.error(k, 'is not supported by meshlet');
    r.raw(k);
  }
  r.done();
  return certificateChain && privateKey ? { certificateChain, privateKey } : undefined;
}

/** envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext */
export function decodeValidationContext(r: Reader): CertValidationContext | undefined {
  const ca = r.obj('trusted_ca');
  const trustedCa = ca ? decodeDataSource(ca) : undefined;
  const sans: SanMatcher[] = [];
  for (const s of r.arr('match_typed_subject_alt_names')) {
    const sanType = enumNamed(s, 'san_type', SAN_TYPES, 'SAN_TYPE_UNSPECIFIED');
    if (sanType === 'SAN_TYPE_UNSPECIFIED')
      s.error('san_type', 'must be one of EMAIL, DNS, URI, IP_ADDRESS, OTHER_NAME');
    const m = s.obj('matcher');
    if (!m) s.error('matcher', 'is required');
    const matcher = m ? decodeStringMatcher(m) : undefined;
    s.warnNoEffect('oid', 'OTHER_NAME SANs are matched without checking their OID');
    s.done();
    if (matcher && sanType !== 'SAN_TYPE_UNSPECIFIED') sans.push({ sanType, matcher });
  }
  // Legacy match_subject_alt_names matched any SAN type: expand to one matcher per type.
  for (const m of r.arr('match_subject_alt_names')) {
    const matcher = decodeStringMatcher(m);
    if (!matcher) continue;
    for (const sanType of ['DNS', 'URI', 'EMAIL', 'IP_ADDRESS'] as const) sans.push({ sanType, matcher });
  }
  const crlR = r.obj('crl');
  const crl = crlR ? decodeDataSource(crlR) : undefined;
  const onlyVerifyLeafCertCrl = r.bool('only_verify_leaf_cert_crl', false);
  for (const k of ['verify_certificate_spki', 'verify_certificate_hash'] as const) {
    if (r.list(k).length > 0) r.error(k, 'certificate pinning is not supported by meshlet');
  }
  const tcv = enumOf(
    r,
    'trust_chain_verification',
    ['VERIFY_TRUST_CHAIN', 'ACCEPT_UNTRUSTED'] as const,
    'VERIFY_TRUST_CHAIN',
  );
  if (tcv === 'ACCEPT_UNTRUSTED') r.error('trust_chain_verification', 'ACCEPT_UNTRUSTED is not supported by meshlet');
  if (r.bool('allow_expired_certificate', false)) r.error('allow_expired_certificate', 'is not supported by meshlet');
  if (r.has('custom_validator_config'))
    r.error('custom_validator_config', 'custom validators are not supported by meshlet');
  r.raw('custom_validator_config');
  if (r.has('ca_certificate_provider_instance')) {
    r.error('ca_certificate_provider_instance', 'certificate provider instances are not supported; use SDS');
  }
  r.raw('ca_certificate_provider_instance');
  r.done();
  return {
    ...(trustedCa ? { trustedCa } : {}),
    matchTypedSubjectAltNames: sans,
    ...(crl ? { crl } : {}),
    onlyVerifyLeafCertCrl,
  };
}

/** envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig */
export function decodeSdsSecretConfig(r: Reader, ctx?: DecodeContext): SdsSecretConfig | undefined {
  const name = r.requiredStr('name');
  const sc = r.obj('sds_config');
  const sdsConfig = sc ? decodeConfigSource(sc, ctx) : undefined;
  if (!sc && name && ctx?.refs && !ctx.refs.staticSecrets.has(name)) {
    r.error(
      'name',
      `unknown static secret ${JSON.stringify(name)} (no sds_config, and not in static_resources.secrets)`,
    );
  }
  r.done();
  if (!name) return undefined;
  return sdsConfig ? { name, sdsConfig } : { name };
}

function tlsVersion(r: Reader, key: string): 'TLSv1_2' | 'TLSv1_3' | undefined {
  const v = enumNamed(r, key, TLS_VERSIONS, 'TLS_AUTO');
  if (v === 'TLSv1_0' || v === 'TLSv1_1') {
    r.error(key, `${v} is not supported by meshlet (minimum TLSv1_2)`);
    return undefined;
  }
  return v === 'TLS_AUTO' ? undefined : v;
}

/** envoy.extensions.transport_sockets.tls.v3.CommonTlsContext */
export function decodeCommonTlsContext(r: Reader, ctx?: DecodeContext): CommonTlsConfig {
  let tlsMinimumProtocolVersion: CommonTlsConfig['tlsMinimumProtocolVersion'];
  let tlsMaximumProtocolVersion: CommonTlsConfig['tlsMaximumProtocolVersion'];
  let cipherSuites: string[] = [];
  let ecdhCurves: string[] = [];
  let signatureAlgorithms: string[] = [];
  const p = r.obj('tls_params');
  if (p) {
    tlsMinimumProtocolVersion = tlsVersion(p, 'tls_minimum_protocol_version');
    tlsMaximumProtocolVersion = tlsVersion(p, 'tls_maximum_protocol_version');
    if (tlsMinimumProtocolVersion === 'TLSv1_3' && tlsMaximumProtocolVersion === 'TLSv1_2') {
      p.error('tls_maximum_protocol_version', 'must not be lower than tls_minimum_protocol_version');
    }
    cipherSuites = p.strList('cipher_suites');
    ecdhCurves = p.strList('ecdh_curves');
    signatureAlgorithms = p.strList('signature_algorithms');
    checkOpenSslList(p, 'ecdh_curves', ecdhCurves, (v) => ({ ecdhCurve: v }));
    checkOpenSslList(p, 'signature_algorithms', signatureAlgorithms, (v) => ({ sigalgs: v }));
    p.done();
  }
  const tlsCertificates: TlsCertificate[] = [];
  for (const c of r.arr('tls_certificates')) {
    const v = decodeTlsCertificate(c);
    if (v) tlsCertificates.push(v);
  }
  const tlsCertificateSdsSecretConfigs: SdsSecretConfig[] = [];
  for (const c of r.arr('tls_certificate_sds_secret_configs')) {
    const v = decodeSdsSecretConfig(c, ctx);
    if (v) tlsCertificateSdsSecretConfigs.push(v);
  }
  for (const k of [
    'tls_certificate_provider_instance',
    'tls_certificate_certificate_provider',
    'custom_handshaker',
  ] as const) {
    if (r.has(k)) r.error(k, 'is not supported by meshlet; use tls_certificates or SDS');
    r.raw(k);
  }
  const which = r.oneof([
    'validation_context',
    'validation_context_sds_secret_config',
    'combined_validation_context',
    'validation_context_certificate_provider_instance',
  ] as const);
  let validationContext: CertValidationContext | undefined;
  let validationContextSdsSecretConfig: SdsSecretConfig | undefined;
  let combinedDefaultValidationContext: CertValidationContext | undefined;
  if (which === 'validation_context') {
    const v = r.obj(which);
    if (v) validationContext = decodeValidationContext(v);
  } else if (which === 'validation_context_sds_secret_config') {
    const v = r.obj(which);
    if (v) validationContextSdsSecretConfig = decodeSdsSecretConfig(v, ctx);
  } else if (which === 'combined_validation_context') {
    const c = r.obj(which);
    if (c) {
      const d = c.obj('default_validation_context');
      if (!d) c.error('default_validation_context', 'is required');
      else combinedDefaultValidationContext = decodeValidationContext(d);
      const s = c.obj('validation_context_sds_secret_config');
      if (!s) c.error('validation_context_sds_secret_config', 'is required');
      else validationContextSdsSecretConfig = decodeSdsSecretConfig(s, ctx);
      c.done();
    }
  } else if (which) {
    r.error(which, 'certificate provider instances are not supported by meshlet; use SDS');
  }
  const alpnProtocols = r.strList('alpn_protocols');
  r.done();
  return {
    tlsCertificates,
    tlsCertificateSdsSecretConfigs,
    ...(validationContext ? { validationContext } : {}),
    ...(validationContextSdsSecretConfig ? { validationContextSdsSecretConfig } : {}),
    ...(combinedDefaultValidationContext ? { combinedDefaultValidationContext } : {}),
    alpnProtocols,
    ...(tlsMinimumProtocolVersion ? { tlsMinimumProtocolVersion } : {}),
    ...(tlsMaximumProtocolVersion ? { tlsMaximumProtocolVersion } : {}),
    cipherSuites,
    ...(ecdhCurves.length > 0 ? { ecdhCurves } : {}),
    ...(signatureAlgorithms.length > 0 ? { signatureAlgorithms } : {}),
  };
}

function hasValidation(c: CommonTlsConfig): boolean {
  return c.validationContext !== undefined || c.validationContextSdsSecretConfig !== undefined;
}

function commonOf(r: Reader, ctx?: DecodeContext): CommonTlsConfig {
  const c = r.obj('common_tls_context');
  return c
    ? decodeCommonTlsContext(c, ctx)
    : { tlsCertificates: [], tlsCertificateSdsSecretConfigs: [], alpnProtocols: [], cipherSuites: [] };
}

/** envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext */
export function decodeDownstreamTlsContext(
  r: Reader,
  handshakeTimeoutMs: number,
  ctx?: DecodeContext,
): DownstreamTlsConfig {
  const common = commonOf(r, ctx);
  const requireClientCertificate = r.bool('require_client_certificate', false);
  if (common.tlsCertificates.length === 0 && common.tlsCertificateSdsSecretConfigs.length === 0) {
    r.error('common_tls_context', 'no TLS certificates found for server context');
  }
  if (requireClientCertificate && !hasValidation(common)) {
    r.error('require_client_certificate', 'requires a validation context to verify client certificates against');
  }
  // Node's servers keep no internal session cache (resumption by session id needs an external
  // store meshlet does not run), so stateful resumption is already off: `true` is honoured as is.
  // session_timeout and disable_stateless_session_resumption are left to warn below.
  if (r.bool('disable_stateful_session_resumption', false) === false && r.has('disable_stateful_session_resumption'))
    r.issues.warn(r.sub('disable_stateful_session_resumption'), 'stateful (session id) resumption is not offered by meshlet');
  r.done();
  return { kind: 'downstream_tls', common, requireClientCertificate, handshakeTimeoutMs };
}

/** envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext */
export function decodeUpstreamTlsContext(r: Reader, ctx?: DecodeContext): UpstreamTlsConfig {
  const common = commonOf(r, ctx);
  const sni = r.str('sni');
  if (sni !== undefined && sni.length > 255) r.error('sni', 'must be at most 255 characters');
  const allowRenegotiation = r.bool('allow_renegotiation', false);
  r.done();
  return { kind: 'upstream_tls', common, ...(sni ? { sni } : {}), allowRenegotiation };
}

/**
 * A `transport_socket` ({name, typed_config}): TLS context of the expected direction, or
 * undefined for raw_buffer (plaintext). Unknown socket types are errors naming the type.
 */
export function decodeTransportSocket(
  r: Reader,
  ctx: DecodeContext | undefined,
  dir: 'downstream',
  handshakeTimeoutMs: number,
): DownstreamTlsConfig | undefined;
export function decodeTransportSocket(
  r: Reader,
  ctx: DecodeContext | undefined,
  dir: 'upstream',
): UpstreamTlsConfig | undefined;
export function decodeTransportSocket(
  r: Reader,
  ctx: DecodeContext | undefined,
  dir: 'downstream' | 'upstream',
  handshakeTimeoutMs = 15_000,
): DownstreamTlsConfig | UpstreamTlsConfig | undefined {
  const name = r.str('name', '');
  let out: DownstreamTlsConfig | UpstreamTlsConfig | undefined;
  if (!r.has('typed_config')) {
    if (name !== N_RAW)
      r.error('typed_config', name === N_TLS ? 'is required for a TLS transport socket' : 'is required');
  } else {
    const tc = r.any('typed_config');
    if (tc) {
      const want = dir === 'downstream' ? T_DOWNSTREAM_TLS : T_UPSTREAM_TLS;
      if (tc.type === want) {
        out =
          dir === 'downstream'
            ? decodeDownstreamTlsContext(tc.reader, handshakeTimeoutMs, ctx)
            : decodeUpstreamTlsContext(tc.reader, ctx);
      } else if (tc.type === T_RAW_BUFFER) {
        tc.reader.done();
      } else if (tc.type === T_DOWNSTREAM_TLS || tc.type === T_UPSTREAM_TLS) {
        tc.reader.issues.error(
          tc.reader.sub('@type'),
          `expected ${want} for a ${dir} transport socket, got ${tc.type}`,
        );
      } else {
        reportUnsupportedType(tc, 'transport socket');
      }
    }
  }
  r.done();
  return out;
}

/**
 * ecdh_curves and signature_algorithms are OpenSSL name lists (Envoy takes BoringSSL's names,
 * which OpenSSL shares for every group and algorithm a TLS 1.2/1.3 peer would use). OpenSSL is
 * the judge of what it accepts: building a throw-away context reports a bad name at config time
 * rather than at the first handshake.
 */
function checkOpenSslList(r: Reader, key: string, values: readonly string[], opt: (v: string) => tls.SecureContextOptions): void {
  if (values.length === 0) return;
  try {
    tls.createSecureContext(opt(values.join(':')));
  } catch (err) {
    r.error(key, `OpenSSL does not accept [${values.join(', ')}]: ${(err as Error).message}`);
  }
}
