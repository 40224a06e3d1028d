/**
 * TLS transport sockets and SDS secret references (part of the config model;
 * proxy/config/types.ts re-exports every area): the common TLS context, downstream (filter chain)
 * and upstream (cluster) TLS, and transport_socket_matches entries.
 */
import type { CertValidationContext, ConfigSource, TlsCertificate } from '../../../common/config-types';

export interface SdsSecretConfig {
  readonly name: string;
  /** undefined = the secret comes from static_resources.secrets. */
  readonly sdsConfig?: ConfigSource;
}

export interface CommonTlsConfig {
  readonly tlsCertificates: readonly TlsCertificate[];
  readonly tlsCertificateSdsSecretConfigs: readonly SdsSecretConfig[];
  readonly validationContext?: CertValidationContext;
  readonly validationContextSdsSecretConfig?: SdsSecretConfig;
  /** combined_validation_context: the default context merged over the SDS one. */
  readonly combinedDefaultValidationContext?: CertValidationContext;
  readonly alpnProtocols: readonly string[];
  readonly tlsMinimumProtocolVersion?: 'TLSv1_2' | 'TLSv1_3';
  readonly tlsMaximumProtocolVersion?: 'TLSv1_2' | 'TLSv1_3';
  readonly cipherSuites: readonly string[];
  /** tls_params.ecdh_curves (OpenSSL group names); absent means OpenSSL's defaults. */
  readonly ecdhCurves?: readonly string[];
  /** tls_params.signature_algorithms (OpenSSL sigalg names); absent means OpenSSL's defaults. */
  readonly signatureAlgorithms?: readonly string[];
}

export interface DownstreamTlsConfig {
  readonly kind: 'downstream_tls';
  readonly common: CommonTlsConfig;
  readonly requireClientCertificate: boolean;
  /** Envoy default 15 s (transport_socket_connect_timeout on the filter chain). */
  readonly handshakeTimeoutMs: number;
}

/** envoy.config.cluster.v3.Cluster.TransportSocketMatch */
export interface TransportSocketMatch {
  readonly name: string;
  /** Every key must be in the endpoint's `envoy.transport_socket_match` metadata with an equal value; {} matches all. */
  readonly match: Readonly<Record<string, unknown>>;
  /** undefined = raw_buffer (plaintext). */
  readonly transportSocket?: UpstreamTlsConfig;
}

export interface UpstreamTlsConfig {
  readonly kind: 'upstream_tls';
  readonly common: CommonTlsConfig;
  readonly sni?: string;
  readonly allowRenegotiation: boolean;
}
