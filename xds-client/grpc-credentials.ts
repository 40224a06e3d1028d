/**
 * What meshlet sends to a gRPC service besides the messages: the GrpcService's `initial_metadata`
 * and its google_grpc `call_credentials` (access token, Google IAM headers, Envoy's
 * file_based_metadata plugin, OAuth 2.0 token exchange through `sts_service`), resolved into
 * metadata once per stream; and the channel credentials of a google_grpc target.
 *
 * Leans fresh: a file-based secret (Istio's projected service-account token, rotated by the
 * kubelet) is checked on every stream and re-read when its size, mtime or inode changed; an STS
 * access token is reused until a minute before it expires. All reads are asynchronous and happen
 * when a stream opens, never per message.
 */
import { createHash } from 'node:crypto';
import { stat, readFile } from 'node:fs/promises';
import type * as grpc from '@grpc/grpc-js';
import type { CallCredential, DataSource, GrpcService, StsServiceConfig } from '../common/config-types';
import { dataSourceBytes } from '../common/data-source';

/** One metadata entry; `-bin` keys carry bytes. */
export type MetadataEntry = readonly [key: string, value: string | Buffer];

/** Produces the metadata of a new stream; rejects when a credential cannot be obtained. */
export type CallMetadataSource = () => Promise<MetadataEntry[]>;

/** Options for tests and embedders. */
export interface CallMetadataOptions {
  /** fetch used for STS token exchange (default: global fetch). */
  readonly fetch?: typeof fetch;
  /** Clock (ms), for STS expiry. */
  readonly now?: () => number;
}

function entry(key: string, value: string): MetadataEntry {
  return key.endsWith('-bin') ? [key, Buffer.from(value, 'latin1')] : [key, value];
}

/**
 * A DataSource read when it changed: files are stat'ed on each call and re-read when size, mtime or
 * inode differ (a kubelet's atomic symlink swap changes the inode); inline and environment
 * sources are read once. A trailing newline is dropped: metadata values cannot carry one.
 */
export class ChangingSecret {
  private key = '';
  private value?: string;

  constructor(private readonly ds: DataSource) {}

  async read(): Promise<string> {
    if (this.ds.kind !== 'filename') {
      this.value ??= trimNewline(dataSourceBytes(this.ds).toString('utf8'));
      return this.value;
    }
    const st = await stat(this.ds.value);
    const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (this.value === undefined || key !== this.key) {
      this.value = trimNewline(await readFile(this.ds.value, 'utf8'));
      this.key = key;
    }
    return this.value;
  }
}

function trimNewline(s: string): string {
  return s.replace(/[\r\n]+$/, '');
}

/** gRPC's STS call credentials: RFC 8693 token exchange, the access token cached until near expiry. */
export class StsTokenSource {
  private token?: string;
  private expiresAt = 0;
  private inflight?: Promise<string>;
  private readonly subject: ChangingSecret;
  private readonly actor?: ChangingSecret;

  constructor(
    private readonly cfg: StsServiceConfig,
    private readonly opts: CallMetadataOptions = {},
  ) {
    this.subject = new ChangingSecret({ kind: 'filename', value: cfg.subjectTokenPath });
    if (cfg.actorTokenPath) this.actor = new ChangingSecret({ kind: 'filename', value: cfg.actorTokenPath });
  }

  /** The access token, exchanged again within 60 s of its expiry (gRPC's refresh margin). */
  async accessToken(): Promise<string> {
    const now = (this.opts.now ?? Date.now)();
    if (this.token !== undefined && now < this.expiresAt - 60_000) return this.token;
    this.inflight ??= this.exchange().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async exchange(): Promise<string> {
    const c = this.cfg;
    const form = new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange' });
    const put = (k: string, v: string) => {
      if (v) form.set(k, v);
    };
    put('resource', c.resource);
    put('audience', c.audience);
    put('scope', c.scope);
    put('requested_token_type', c.requestedTokenType);
    put('subject_token', await this.subject.read());
    put('subject_token_type', c.subjectTokenType);
    if (this.actor) {
      put('actor_token', await this.actor.read());
      put('actor_token_type', c.actorTokenType);
    }
    const res = await (this.opts.fetch ?? fetch)(c.tokenExchangeServiceUri, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`sts_service: ${c.tokenExchangeServiceUri} answered ${res.status}: ${text.slice(0, 200)}`);
    let body: { access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new Error(`sts_service: ${c.tokenExchangeServiceUri} answered with a body that is not JSON`);
    }
    if (typeof body.access_token !== 'string' || body.access_token === '')
      throw new Error(`sts_service: ${c.tokenExchangeServiceUri} answered without an access_token`);
    const ttl = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 3600;
    this.token = body.access_token;
    this.expiresAt = (this.opts.now ?? Date.now)() + ttl * 1000;
    return this.token;
  }
}

function credentialSource(c: CallCredential, opts: CallMetadataOptions): () => Promise<MetadataEntry[]> {
  switch (c.kind) {
    case 'access_token': {
      const md = [entry('authorization', `Bearer ${c.token}`)];
      return () => Promise.resolve(md);
    }
    case 'google_iam': {
      const md = [
        entry('x-goog-iam-authorization-token', c.authorizationToken),
        entry('x-goog-iam-authority-selector', c.authoritySelector),
      ];
      return () => Promise.resolve(md);
    }
    case 'file_based_metadata': {
      const secret = new ChangingSecret(c.secret);
      return async () => [entry(c.headerKey, c.headerPrefix + (await secret.read()))];
    }
    case 'sts_service': {
      const sts = new StsTokenSource(c.sts, opts);
      return async () => [entry('authorization', `Bearer ${await sts.accessToken()}`)];
    }
  }
}

/**
 * The metadata source of a GrpcService (initial_metadata first, then each call credential in
 * order), or undefined when it sends none.
 */
export function callMetadataSource(svc: GrpcService, opts: CallMetadataOptions = {}): CallMetadataSource | undefined {
  const fixed = (svc.initialMetadata ?? []).map(([k, v]) => entry(k, v));
  const creds = svc.kind === 'google_grpc' ? (svc.callCredentials ?? []).map((c) => credentialSource(c, opts)) : [];
  if (fixed.length === 0 && creds.length === 0) return undefined;
  return async () => {
    const out = [...fixed];
    for (const parts of await Promise.all(creds.map((f) => f()))) out.push(...parts);
    return out;
  };
}

/** grpc.Metadata holding the entries (later entries with the same key are added, as gRPC does). */
export function toGrpcMetadata(lib: typeof grpc, entries: readonly MetadataEntry[]): grpc.Metadata {
  const md = new lib.Metadata();
  for (const [k, v] of entries) md.add(k, v);
  return md;
}

/**
 * Channel credentials for a google_grpc target: TLS with the configured root/client certificates,
 * or insecure (plaintext, or local credentials on a Unix socket). Read when a channel is built.
 */
export function googleChannelCredentials(
  lib: typeof grpc,
  svc: Extract<GrpcService, { kind: 'google_grpc' }>,
): grpc.ChannelCredentials {
  return googleChannelCredentialsWithDigest(lib, svc).creds;
}

/**
 * The same, with a digest of the certificate bytes read: a channel built with other bytes (a
 * rolled root in `root_certs`' file) must be rebuilt, not reused.
 */
export function googleChannelCredentialsWithDigest(
  lib: typeof grpc,
  svc: Extract<GrpcService, { kind: 'google_grpc' }>,
): { creds: grpc.ChannelCredentials; digest: string } {
  if (!svc.ssl) return { creds: lib.credentials.createInsecure(), digest: '' };
  const read = (ds: DataSource | undefined) => (ds ? dataSourceBytes(ds) : null);
  const parts = [read(svc.ssl.rootCerts), read(svc.ssl.privateKey), read(svc.ssl.certChain)] as const;
  return { creds: lib.credentials.createSsl(...parts), digest: bytesDigest(parts) };
}

/** A short digest of some byte strings (absent ones included as such). */
export function bytesDigest(parts: readonly (Buffer | string | null | undefined)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p === null || p === undefined ? '-' : `${p.length}:`).update(p ?? '');
  return h.digest('hex').slice(0, 16);
}

/**
 * Options for a gRPC client built by a library that takes channel credentials and static metadata
 * (the OTLP trace exporter): TLS channel credentials composed with the call credentials (resolved
 * per call by gRPC), or, on a plaintext channel, initial_metadata as static metadata.
 */
export function grpcClientAuth(
  lib: typeof grpc,
  svc: GrpcService,
  opts: CallMetadataOptions = {},
): { secure: boolean; credentials?: grpc.ChannelCredentials; metadata?: grpc.Metadata } {
  const source = callMetadataSource(svc, opts);
  if (svc.kind === 'google_grpc' && svc.ssl) {
    const channel = googleChannelCredentials(lib, svc);
    if (!source) return { secure: true, credentials: channel };
    const call = lib.credentials.createFromMetadataGenerator((_params, cb) => {
      source().then(
        (entries) => cb(null, toGrpcMetadata(lib, entries)),
        (err: Error) => cb(err),
      );
    });
    return { secure: true, credentials: lib.credentials.combineChannelCredentials(channel, call) };
  }
  const fixed = svc.initialMetadata ?? [];
  return fixed.length > 0 ? { secure: false, metadata: toGrpcMetadata(lib, fixed.map(([k, v]) => entry(k, v))) } : { secure: false };
}
