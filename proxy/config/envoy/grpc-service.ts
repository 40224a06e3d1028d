/**
 * Decoder for envoy.config.core.v3.GrpcService: envoy_grpc (a meshlet cluster) or google_grpc (a
 * target URI with its own channel and call credentials), plus `initial_metadata`. What the xDS
 * client, SDS and the tracer send to a gRPC service is decided here; xds-client/grpc-credentials.ts
 * turns it into metadata on each stream.
 *
 * Leans safe: call credentials are bearer secrets, so a google_grpc service that has them must
 * use TLS (ssl_credentials) or local credentials on a Unix socket, as gRPC itself requires; a
 * plaintext channel with call credentials is an error rather than a token sent in the clear.
 */
import type { Reader } from '../../../common/reader';
import type { CallCredential, DataSource, GrpcMetadataEntry, GrpcService, StsServiceConfig } from '../types';
import { checkClusterRef, type DecodeContext } from './context';
import { decodeDataSource, dur } from './core';
import { headerName } from './matchers';

/**
 * What a gRPC service is for: xDS services must use a static, non-EDS cluster (Envoy's rule);
 * others (tracing) need an existing cluster when the bootstrap has no CDS.
 */
export type GrpcRole = 'xds' | 'other';

/** The registered name and config type of Envoy's file-based metadata call credentials plugin. */
export const FILE_BASED_METADATA = 'envoy.grpc_credentials.file_based_metadata';
const FILE_BASED_METADATA_TYPE = 'envoy.config.grpc_credential.v3.FileBasedMetadataConfig';

/** The repeated `grpc_services` field of an ApiConfigSource. */
export function decodeGrpcServices(r: Reader, ctx?: DecodeContext, role: GrpcRole = 'other'): GrpcService[] {
  const out: GrpcService[] = [];
  for (const g of r.arr('grpc_services')) {
    const s = decodeGrpcService(g, ctx, role);
    if (s) out.push(s);
  }
  return out;
}

/** GrpcService.initial_metadata (HeaderValue list: key, value or base64 raw_value). */
export function decodeInitialMetadata(r: Reader): GrpcMetadataEntry[] {
  const out: GrpcMetadataEntry[] = [];
  for (const m of r.arr('initial_metadata')) {
    const key = headerName(m, 'key');
    let value = m.str('value', '');
    if (m.has('raw_value')) {
      if (m.has('value')) m.error('value', 'only one of value, raw_value may be set');
      value = Buffer.from(m.str('raw_value', ''), 'base64').toString('latin1');
    }
    m.done();
    if (key?.startsWith(':') || key === 'host') m.error('key', `${key} may not be set as gRPC metadata`);
    else if (key) out.push([key, value]);
  }
  return out;
}

/** envoy.config.core.v3.GrpcService (envoy_grpc or google_grpc). */
export function decodeGrpcService(r: Reader, ctx?: DecodeContext, role: GrpcRole = 'other'): GrpcService | undefined {
  const which = r.oneof(['envoy_grpc', 'google_grpc'] as const);
  const timeoutMs = dur(r, 'timeout');
  const md = decodeInitialMetadata(r);
  const initialMetadata = md.length > 0 ? { initialMetadata: md } : {};
  let out: GrpcService | undefined;
  if (which === undefined) {
    r.issues.error(r.path, 'one of envoy_grpc, google_grpc must be set');
  } else if (which === 'envoy_grpc') {
    const e = r.obj(which);
    if (e) {
      const clusterName = e.requiredStr('cluster_name');
      const authority = e.str('authority');
      if (ctx) {
        const report = (m: string) => e.error('cluster_name', m);
        if (role === 'xds' && ctx.refs && clusterName) {
          const t = ctx.refs.staticClusters.get(clusterName);
          if (t === undefined)
            report(`envoy_grpc cluster ${JSON.stringify(clusterName)} must be a statically defined cluster`);
          else if (t === 'EDS')
            report(`envoy_grpc cluster ${JSON.stringify(clusterName)} must be a statically defined non-EDS cluster`);
        } else checkClusterRef(ctx, report, clusterName);
      }
      e.done();
      if (clusterName) {
        out = {
          kind: 'envoy_grpc',
          clusterName,
          ...(authority ? { authority } : {}),
          ...(timeoutMs !== undefined ? { timeoutMs } : {}),
          ...initialMetadata,
        };
      }
    }
  } else {
    const g = r.obj(which);
    const google = g ? decodeGoogleGrpc(g) : undefined;
    if (google) out = { ...google, ...(timeoutMs !== undefined ? { timeoutMs } : {}), ...initialMetadata };
  }
  r.done();
  return out;
}

type SslFiles = { rootCerts?: DataSource; privateKey?: DataSource; certChain?: DataSource };

function decodeGoogleGrpc(g: Reader): Extract<GrpcService, { kind: 'google_grpc' }> | undefined {
  const targetUri = g.requiredStr('target_uri');
  const statPrefix = g.str('stat_prefix', '');
  let ssl: SslFiles | undefined;
  let local = false;
  const cc = g.obj('channel_credentials');
  if (cc) {
    const which = cc.oneof(['ssl_credentials', 'google_default', 'local_credentials'] as const);
    if (which === 'ssl_credentials') {
      const s = cc.obj(which);
      ssl = {};
      if (s) {
        for (const [key, field] of [
          ['root_certs', 'rootCerts'],
          ['private_key', 'privateKey'],
          ['cert_chain', 'certChain'],
        ] as const) {
          const d = s.obj(key);
          const ds = d ? decodeDataSource(d) : undefined;
          if (ds) ssl[field] = ds;
        }
        s.done();
      }
    } else if (which === 'google_default') {
      cc.error(which, 'Google default credentials are not supported by meshlet');
    } else if (which === 'local_credentials') {
      cc.obj(which)?.done();
      local = true;
      if (targetUri && !targetUri.startsWith('unix:'))
        cc.error(which, `local credentials need a unix: target_uri (got ${JSON.stringify(targetUri)})`);
    }
    cc.done();
  }
  const callCredentials: CallCredential[] = [];
  for (const c of g.arr('call_credentials')) {
    const cred = decodeCallCredential(c);
    if (cred) callCredentials.push(cred);
  }
  if (callCredentials.length > 0 && !ssl && !local)
    g.error(
      'call_credentials',
      'call credentials need channel_credentials ssl_credentials or local_credentials; they are never sent over plaintext',
    );
  g.done();
  if (!targetUri) return undefined;
  return {
    kind: 'google_grpc',
    targetUri,
    statPrefix,
    ...(ssl ? { ssl } : {}),
    ...(local ? { local } : {}),
    ...(callCredentials.length > 0 ? { callCredentials } : {}),
  };
}

/** GrpcService.GoogleGrpc.CallCredentials: the kinds meshlet can send; the Google-cloud ones are rejected. */
function decodeCallCredential(c: Reader): CallCredential | undefined {
  const which = c.oneof([
    'access_token',
    'google_compute_engine',
    'google_refresh_token',
    'service_account_jwt_access',
    'google_iam',
    'from_plugin',
    'sts_service',
  ] as const);
  let out: CallCredential | undefined;
  if (which === undefined) c.issues.error(c.path, 'one of access_token, google_iam, from_plugin, sts_service must be set');
  else if (which === 'access_token') {
    const token = c.requiredStr('access_token');
    if (token) out = { kind: 'access_token', token };
  } else if (which === 'google_iam') {
    const i = c.obj(which);
    if (i) {
      const authorizationToken = i.str('authorization_token', '');
      const authoritySelector = i.str('authority_selector', '');
      i.done();
      out = { kind: 'google_iam', authorizationToken, authoritySelector };
    }
  } else if (which === 'from_plugin') {
    const p = c.obj(which);
    if (p) out = decodePlugin(p);
  } else if (which === 'sts_service') {
    const s = c.obj(which);
    if (s) {
      const sts = decodeSts(s);
      if (sts) out = { kind: 'sts_service', sts };
    }
  } else {
    c.error(which, `${which} call credentials (Google Cloud) are not supported by meshlet`);
    c.raw(which);
  }
  c.done();
  return out;
}

function decodePlugin(p: Reader): CallCredential | undefined {
  const name = p.requiredStr('name');
  const tc = p.any('typed_config');
  let out: CallCredential | undefined;
  if (tc && tc.type !== FILE_BASED_METADATA_TYPE) {
    p.error('typed_config', `call credentials plugin type ${tc.type} is not supported by meshlet`);
  } else if (!tc && name !== FILE_BASED_METADATA) {
    p.error('name', `call credentials plugin ${JSON.stringify(name)} is not supported by meshlet (only ${FILE_BASED_METADATA})`);
  } else if (!tc) {
    p.error('typed_config', 'is required');
  } else {
    const f = tc.reader;
    const sd = f.obj('secret_data');
    const secret = sd ? decodeDataSource(sd) : undefined;
    if (!sd) f.error('secret_data', 'is required');
    const headerKey = f.str('header_key', '') || 'authorization';
    const headerPrefix = f.str('header_prefix', '');
    if (!/^[a-z0-9_.-]+$/.test(headerKey)) f.error('header_key', `invalid gRPC metadata key ${JSON.stringify(headerKey)}`);
    f.done();
    if (secret) out = { kind: 'file_based_metadata', secret, headerKey, headerPrefix };
  }
  p.done();
  return out;
}

function decodeSts(s: Reader): StsServiceConfig | undefined {
  const tokenExchangeServiceUri = s.str('token_exchange_service_uri', '');
  const subjectTokenPath = s.requiredStr('subject_token_path');
  const subjectTokenType = s.requiredStr('subject_token_type');
  const out: StsServiceConfig = {
    tokenExchangeServiceUri,
    resource: s.str('resource', ''),
    audience: s.str('audience', ''),
    scope: s.str('scope', ''),
    requestedTokenType: s.str('requested_token_type', ''),
    subjectTokenPath,
    subjectTokenType,
    actorTokenPath: s.str('actor_token_path', ''),
    actorTokenType: s.str('actor_token_type', ''),
  };
  if (!/^https?:\/\/[^/]/.test(tokenExchangeServiceUri))
    s.error('token_exchange_service_uri', `must be an http:// or https:// URI, got ${JSON.stringify(tokenExchangeServiceUri)}`);
  s.done();
  return subjectTokenPath && subjectTokenType && /^https?:\/\//.test(tokenExchangeServiceUri) ? out : undefined;
}
