/**
 * The configuration shapes shared by every part: the Envoy core types (data sources, node, config
 * sources, gRPC services) and the SDS secret, which xds-client/ and certs/ need as much as the
 * proxy does. proxy/config/types.ts re-exports them next to the rest of the bootstrap model; the
 * conventions are the same (camelCase Envoy field names, milliseconds, deep-frozen by decoders).
 */

/** envoy.config.core.v3.DataSource */
export type DataSource =
  | { readonly kind: 'filename'; readonly value: string }
  | { readonly kind: 'inline_string'; readonly value: string }
  | { readonly kind: 'inline_bytes'; readonly value: string /* base64 */ }
  | { readonly kind: 'environment_variable'; readonly value: string };

/** envoy.config.core.v3.Locality */
export interface Locality {
  readonly region: string;
  readonly zone: string;
  readonly subZone: string;
}

/** envoy.config.core.v3.Node */
export interface NodeInfo {
  readonly id: string;
  readonly cluster: string;
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly locality?: Locality;
  readonly userAgentName: string;
  readonly userAgentVersion: string;
}

/** envoy.config.core.v3.ConfigSource, reduced to what meshlet supports. */
export type ConfigSource =
  | { readonly kind: 'ads' }
  | { readonly kind: 'path'; readonly path: string; readonly watchedDirectory?: string }
  | { readonly kind: 'api_config_source'; readonly apiType: 'GRPC' | 'DELTA_GRPC'; readonly grpc: GrpcService[] };

/** envoy.config.core.v3.GrpcService */
export type GrpcService =
  | {
      readonly kind: 'envoy_grpc';
      readonly clusterName: string;
      readonly authority?: string;
      readonly timeoutMs?: number;
      /** initial_metadata: sent on every stream (the cluster's transport socket secures it). */
      readonly initialMetadata?: readonly GrpcMetadataEntry[];
    }
  | {
      readonly kind: 'google_grpc';
      readonly targetUri: string;
      readonly statPrefix: string;
      /** channel_credentials.ssl_credentials; undefined = plaintext (insecure) or local. */
      readonly ssl?: { readonly rootCerts?: DataSource; readonly privateKey?: DataSource; readonly certChain?: DataSource };
      /** channel_credentials.local_credentials (a Unix-socket target: call credentials may be sent). */
      readonly local?: boolean;
      /** call_credentials, applied in order on every stream. */
      readonly callCredentials?: readonly CallCredential[];
      readonly timeoutMs?: number;
      readonly initialMetadata?: readonly GrpcMetadataEntry[];
    };

/** One initial_metadata entry: lower-case key and its value (`-bin` keys carry raw bytes). */
export type GrpcMetadataEntry = readonly [key: string, value: string];

/** GrpcService.GoogleGrpc.CallCredentials meshlet sends. */
export type CallCredential =
  | { readonly kind: 'access_token'; readonly token: string }
  | { readonly kind: 'google_iam'; readonly authorizationToken: string; readonly authoritySelector: string }
  /** from_plugin envoy.grpc_credentials.file_based_metadata: the secret is re-read when it changes. */
  | { readonly kind: 'file_based_metadata'; readonly secret: DataSource; readonly headerKey: string; readonly headerPrefix: string }
  | { readonly kind: 'sts_service'; readonly sts: StsServiceConfig };

/** GrpcService.GoogleGrpc.CallCredentials.StsService (OAuth 2.0 token exchange, RFC 8693). */
export interface StsServiceConfig {
  readonly tokenExchangeServiceUri: string;
  readonly resource: string;
  readonly audience: string;
  readonly scope: string;
  readonly requestedTokenType: string;
  readonly subjectTokenPath: string;
  readonly subjectTokenType: string;
  readonly actorTokenPath: string;
  readonly actorTokenType: string;
}

export interface DynamicResources {
  readonly adsConfig?: {
    readonly apiType: 'GRPC' | 'DELTA_GRPC';
    readonly grpcServices: readonly GrpcService[];
    readonly setNodeOnFirstMessageOnly: boolean;
  };
  readonly ldsConfig?: ConfigSource;
  readonly cdsConfig?: ConfigSource;
  /** How long a requested resource may stay unsent before it is deemed not to exist (Envoy: 15 s). */
  readonly initialFetchTimeoutMs: number;
}

/** The bootstrap has dynamic resources to fetch: an ADS stream, or LDS/CDS from files. */
export function hasDynamicSources(d: DynamicResources | undefined): boolean {
  return d !== undefined && (d.adsConfig !== undefined || d.ldsConfig?.kind === 'path' || d.cdsConfig?.kind === 'path');
}

/** envoy.type.matcher.v3.StringMatcher */
export type StringMatcher =
  | { readonly kind: 'exact' | 'prefix' | 'suffix' | 'contains'; readonly value: string; readonly ignoreCase: boolean }
  | { readonly kind: 'safe_regex'; readonly value: string; readonly regex: RegExp; readonly ignoreCase: false };

/** envoy.type.matcher.v3.SubjectAltNameMatcher */
export interface SanMatcher {
  readonly sanType: 'URI' | 'DNS' | 'EMAIL' | 'IP_ADDRESS' | 'OTHER_NAME';
  readonly matcher: StringMatcher;
}

export interface CertValidationContext {
  readonly trustedCa?: DataSource;
  readonly matchTypedSubjectAltNames: readonly SanMatcher[];
  readonly crl?: DataSource;
  readonly onlyVerifyLeafCertCrl: boolean;
}

export interface TlsCertificate {
  readonly certificateChain: DataSource;
  readonly privateKey: DataSource;
}

/** envoy.extensions.transport_sockets.tls.v3.Secret */
export interface SecretConfig {
  readonly name: string;
  readonly tlsCertificate?: TlsCertificate;
  readonly validationContext?: CertValidationContext;
}
