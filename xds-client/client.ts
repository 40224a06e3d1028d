/**
 * XdsClient: one ADS stream to the control plane (state of the world or delta), reconnected with
 * jittered exponential backoff, and a small watch/cancel API over a cache that outlives streams.
 *
 * Layers (style rule 5): client (channel, reconnect, public API) → stream (sotw-stream.ts /
 * delta-stream.ts: nonce, version, ACK/NACK) → parser (parser.ts: Any → decoded value, pure) →
 * resource type (injected decoders). Subscriptions and the cache live in subscriptions.ts.
 *
 * Leans towards availability: the cache is never cleared on disconnect, a NACK keeps the last good
 * value, and the client retries forever (1 s → 30 s, reset after a stream got a response).
 */

import { EventEmitter } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import type { DynamicResources, GrpcService, NodeInfo } from '../common/config-types';
import { MeshletError } from '../common/errors';
import { logger } from '../common/logger';
import { VERSION } from '../common/version';
import type { AdsStream, UpdateEvent } from './ads-stream';
import { type BackoffOptions, ExponentialBackoff } from './backoff';
import type { TypeCounters } from './cache';
import { DeltaStream } from './delta-stream';
import {
  type CallMetadataOptions,
  type CallMetadataSource,
  callMetadataSource,
  bytesDigest,
  googleChannelCredentialsWithDigest,
  toGrpcMetadata,
} from './grpc-credentials';
import { FileSource, type FileSourceOptions } from './file-source';
import { toStructProto } from './proto-json';
import { adsServiceDefinition, type NodeProto, TYPE_URLS } from './protos';
import type { ResourceTypeDef, XdsWatcher } from './resource-types';
import { buildSnapshot, type XdsSnapshot } from './snapshot';
import { SotwStream } from './sotw-stream';
import { Subscriptions } from './subscriptions';

/** Where an `envoy_grpc` cluster is (resolved by the proxy's cluster manager). */
export interface ResolvedCluster {
  readonly address: string;
  readonly port: number;
  /** A pipe (Unix socket) endpoint: dialled as unix:<path> instead of address:port. */
  readonly path?: string;
  /** TLS to the control plane; PEM strings or buffers. Absent = plaintext. */
  readonly tls?: {
    readonly rootCerts?: string | Buffer;
    readonly privateKey?: string | Buffer;
    readonly certChain?: string | Buffer;
    /** TLS server name / authority override. */
    readonly servername?: string;
  };
}

export interface XdsClientOptions {
  /** The bootstrap node identity. */
  readonly node: NodeInfo;
  /** `dynamic_resources` from the bootstrap; `adsConfig` is required unless LDS and CDS come from files. */
  readonly dynamicResources: DynamicResources;
  /** Resolve an `envoy_grpc.cluster_name` to an address (called on every connection attempt). */
  readonly resolveCluster?: (name: string) => ResolvedCluster | undefined;
  /** meshlet's version, sent as node.user_agent_version (default: package.json version). */
  readonly userAgentVersion?: string;
  /** Reconnect backoff (default 1 s base, 30 s max). */
  readonly backoff?: BackoffOptions;
  /** Extra gRPC channel options. */
  readonly channelOptions?: grpc.ChannelOptions;
  /** STS fetch and clock overrides for the call credentials. */
  readonly callMetadata?: CallMetadataOptions;
}

/** Counters and state for metrics (Envoy's control_plane.* and <type>.update_* stats). */
export interface XdsStats {
  readonly connected: boolean;
  readonly streamsStarted: number;
  readonly types: Record<string, Readonly<TypeCounters> & { readonly version: string }>;
}

/**
 * @grpc/grpc-js, loaded when the first XdsClient is built: importing xds-client (for its types,
 * or as part of a static bootstrap's module graph) does not pay for gRPC.
 */
function grpcLib(): typeof grpc {
  return require('@grpc/grpc-js') as typeof grpc;
}

/** Client features meshlet announces in node.client_features. */
export const CLIENT_FEATURES: readonly string[] = ['xds.config.resource-in-sotw'];


function toNodeProto(node: NodeInfo, userAgentVersion: string): NodeProto {
  const proto: NodeProto = {
    id: node.id,
    cluster: node.cluster,
    metadata: toStructProto(node.metadata ?? {}),
    user_agent_name: node.userAgentName || 'meshlet',
    user_agent_version: node.userAgentVersion || userAgentVersion,
    client_features: [...CLIENT_FEATURES],
  };
  if (node.locality)
    proto.locality = { region: node.locality.region, zone: node.locality.zone, sub_zone: node.locality.subZone };
  return proto;
}

function hostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

interface Target {
  readonly uri: string;
  readonly creds: grpc.ChannelCredentials;
  readonly key: string;
  readonly options: grpc.ChannelOptions;
}

/** Events an XdsClient emits (for metrics and readiness). */
export type XdsClientEvents = {
  /** A stream is established. */
  connected: [];
  /** The stream ended; the client is reconnecting (or closed). */
  disconnected: [status: { code: number; details: string }];
  /** A response was applied and ACKed or NACKed. */
  update: [event: UpdateEvent];
};

/** The xDS client. Create, register resource types, `start()`, then `watch`. */
export class XdsClient extends EventEmitter<XdsClientEvents> {
  private readonly subs: Subscriptions;
  private readonly backoff: ExponentialBackoff;
  private readonly node: NodeProto;
  private readonly delta: boolean;
  private readonly nodeOnFirstOnly: boolean;
  /** The ADS server; undefined when every dynamic type comes from a file. */
  private readonly service: GrpcService | undefined;
  /** lds_config / cds_config that name a file (path_config_source), by type URL. */
  private readonly fileOptions = new Map<string, FileSourceOptions>();
  private readonly files: FileSource[] = [];
  private readonly AdsClient = grpcLib().makeGenericClientConstructor(adsServiceDefinition(), 'AggregatedDiscoveryService');
  private grpcClient?: grpc.Client;
  private clientKey = '';
  private stream?: AdsStream<unknown, unknown>;
  private retryTimer?: NodeJS.Timeout;
  private started = false;
  private closed = false;
  private connectedFlag = false;
  private streamsStarted = 0;
  private attempt = 0;
  private readonly callMetadata?: CallMetadataSource;

  constructor(private readonly opts: XdsClientOptions) {
    super();
    const dyn = opts.dynamicResources;
    for (const [typeUrl, src] of [
      [TYPE_URLS.listener, dyn.ldsConfig],
      [TYPE_URLS.cluster, dyn.cdsConfig],
    ] as const) {
      if (src?.kind === 'path') this.fileOptions.set(typeUrl, { path: src.path, watchedDirectory: src.watchedDirectory });
    }
    const ads = dyn.adsConfig;
    const fileOnly = !ads && this.fileOptions.size > 0 && [dyn.ldsConfig, dyn.cdsConfig].every((c) => !c || c.kind === 'path');
    if (!ads && !fileOnly) throw new MeshletError('MESHLET_ERR_BOOTSTRAP', 'xds: dynamic_resources.ads_config is required');
    if (ads && ads.grpcServices.length === 0)
      throw new MeshletError('MESHLET_ERR_BOOTSTRAP', 'xds: ads_config.grpc_services is empty');
    // Envoy uses the first grpc_service; the others are ignored (as in Envoy).
    this.service = ads?.grpcServices[0];
    this.delta = ads?.apiType === 'DELTA_GRPC';
    this.nodeOnFirstOnly = ads?.setNodeOnFirstMessageOnly ?? false;
    this.node = toNodeProto(opts.node, opts.userAgentVersion ?? VERSION);
    this.callMetadata = this.service ? callMetadataSource(this.service, opts.callMetadata) : undefined;
    this.backoff = new ExponentialBackoff(opts.backoff);
    this.subs = new Subscriptions(opts.dynamicResources.initialFetchTimeoutMs, (typeUrl) => {
      if (!this.fileOptions.has(typeUrl)) this.stream?.interestChanged(typeUrl);
    });
  }

  /** Register a resource type (from the composition root, before `watch`). */
  registerType<T>(def: ResourceTypeDef<T>): void {
    const state = this.subs.register(def);
    if (this.fileOptions.has(def.typeUrl)) state.external = true;
  }

  /**
   * Watch one resource by name, or every resource of a wildcard-capable type with '*'. The cached
   * value (if any) is delivered right away (in a microtask). Returns the cancel function; when the
   * last watcher of a name cancels, the name is unsubscribed.
   */
  watch<T>(typeUrl: string, name: string, watcher: XdsWatcher<T>): () => void {
    if (this.closed) throw new MeshletError('MESHLET_ERR_INTERNAL', 'xds: client is closed');
    return this.subs.watch(typeUrl, name, watcher);
  }

  /** Open the ADS stream (idempotent). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.subs.armTimers();
    for (const [typeUrl, o] of this.fileOptions) {
      const state = this.subs.get(typeUrl);
      if (!state) continue;
      const src = new FileSource(state, this.subs, o, (e) => this.emit('update', e));
      this.files.push(src);
      src.start();
    }
    if (this.service) this.connect();
  }

  /** True while a stream is established (response headers or a response received). */
  get connected(): boolean {
    return this.connectedFlag;
  }

  /** Counters for metrics. */
  stats(): XdsStats {
    const types: Record<string, TypeCounters & { version: string }> = {};
    for (const s of this.subs.all()) types[s.typeUrl] = { ...s.counters, version: s.acceptedVersion };
    return { connected: this.connectedFlag, streamsStarted: this.streamsStarted, types };
  }

  /** Everything cached, per type, for /config_dump. */
  snapshot(): XdsSnapshot {
    return buildSnapshot(this.subs.all(), this.connectedFlag);
  }

  /** Stop the stream and timers. Cached values stay readable through snapshot(). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    for (const f of this.files.splice(0)) f.close();
    this.stream?.close();
    this.stream = undefined;
    this.subs.stopTimers();
    this.grpcClient?.close();
    this.grpcClient = undefined;
    this.setConnected(false, { code: grpcLib().status.CANCELLED, details: 'client closed' });
  }

  // ───────────── connection management ─────────────

  private resolveTarget(): Target {
    const svc = this.service!;
    const options: grpc.ChannelOptions = {
      // Big pushes (thousands of clusters/endpoints) exceed gRPC's 4 MiB default.
      'grpc.max_receive_message_length': 256 * 1024 * 1024,
      'grpc.primary_user_agent': `meshlet/${this.node.user_agent_version}`,
      ...this.opts.channelOptions,
    };
    if (svc.kind === 'google_grpc') {
      let uri = svc.targetUri;
      let creds: grpc.ChannelCredentials;
      let digest: string;
      try {
        ({ creds, digest } = googleChannelCredentialsWithDigest(grpcLib(), svc));
      } catch (e) {
        throw new MeshletError('MESHLET_ERR_BOOTSTRAP', `xds: ssl_credentials: ${(e as Error).message}`);
      }
      if (uri.startsWith('unix:') === false && uri.includes('://') === false && !uri.startsWith('dns:'))
        uri = `dns:${uri}`;
      // The credentials' bytes are in the key: a changed root file (a root roll) builds a new channel.
      return { uri, creds, key: `g|${uri}|${svc.ssl ? `tls|${digest}` : 'plain'}`, options };
    }
    const resolved = this.opts.resolveCluster?.(svc.clusterName);
    if (!resolved) {
      throw new MeshletError(
        'MESHLET_ERR_NO_CLUSTER',
        `xds: envoy_grpc cluster "${svc.clusterName}" cannot be resolved`,
      );
    }
    const uri = resolved.path !== undefined ? `unix:${resolved.path}` : hostPort(resolved.address, resolved.port);
    let creds: grpc.ChannelCredentials;
    if (resolved.tls) {
      const t = resolved.tls;
      creds = grpcLib().credentials.createSsl(
        t.rootCerts ? Buffer.from(t.rootCerts) : null,
        t.privateKey ? Buffer.from(t.privateKey) : null,
        t.certChain ? Buffer.from(t.certChain) : null,
      );
      if (t.servername) options['grpc.ssl_target_name_override'] = t.servername;
    } else {
      creds = grpcLib().credentials.createInsecure();
    }
    if (svc.authority) options['grpc.default_authority'] = svc.authority;
    const tlsKey = resolved.tls ? `tls|${bytesDigest([resolved.tls.rootCerts, resolved.tls.privateKey, resolved.tls.certChain])}` : 'plain';
    return { uri, creds, key: `e|${uri}|${tlsKey}|${resolved.tls?.servername ?? ''}`, options };
  }

  private connect(): void {
    if (this.closed) return;
    let target: Target;
    try {
      target = this.resolveTarget();
    } catch (err) {
      logger('xds').warn({ reason: (err as Error).message }, 'xds: cannot resolve the control plane; retrying');
      this.scheduleRetry();
      return;
    }
    if (!this.callMetadata) {
      this.openStream(target);
      return;
    }
    // initial_metadata and call credentials (a token file re-read when it changed, an STS
    // exchange) are resolved before each stream; failing to get them is retried like a refusal.
    const attempt = ++this.attempt;
    this.callMetadata().then(
      (entries) => {
        if (!this.closed && attempt === this.attempt) this.openStream(target, toGrpcMetadata(grpcLib(), entries));
      },
      (err: Error) => {
        if (this.closed || attempt !== this.attempt) return;
        logger('xds').warn({ reason: err.message }, 'xds: cannot get the call credentials; retrying');
        this.setConnected(false, { code: grpcLib().status.UNAUTHENTICATED, details: err.message });
        this.scheduleRetry();
      },
    );
  }

  private openStream(target: Target, metadata?: grpc.Metadata): void {
    if (!this.grpcClient || this.clientKey !== target.key) {
      this.grpcClient?.close();
      this.grpcClient = new this.AdsClient(target.uri, target.creds, target.options);
      this.clientKey = target.key;
    }
    const client = this.grpcClient as unknown as Record<string, (md?: grpc.Metadata) => grpc.ClientDuplexStream<unknown, unknown>>;
    const call = this.delta ? client.DeltaAggregatedResources(metadata) : client.StreamAggregatedResources(metadata);
    this.streamsStarted++;
    const hooks = {
      onResponse: () => {
        this.backoff.reset();
        this.setConnected(true);
      },
      onUpdate: (e: UpdateEvent) => this.emit('update', e),
    };
    const stream: AdsStream<unknown, unknown> = this.delta
      ? (new DeltaStream(call as never, this.subs, this.node, this.nodeOnFirstOnly, hooks) as AdsStream<
          unknown,
          unknown
        >)
      : (new SotwStream(call as never, this.subs, this.node, this.nodeOnFirstOnly, hooks) as AdsStream<
          unknown,
          unknown
        >);
    this.stream = stream;
    call.on('metadata', () => {
      if (this.stream === stream) this.setConnected(true);
    });
    call.on('error', () => {
      // Reported through 'status'.
    });
    call.on('status', (status: grpc.StatusObject) => {
      if (this.stream !== stream) return;
      stream.close();
      this.stream = undefined;
      if (this.closed) return;
      logger('xds').warn({ code: status.code, details: status.details }, 'xds: ADS stream closed; reconnecting');
      this.setConnected(false, { code: status.code, details: status.details });
      this.scheduleRetry();
    });
    logger('xds').info({ target: target.uri, delta: this.delta }, 'xds: starting ADS stream');
    stream.start();
  }

  private scheduleRetry(): void {
    if (this.closed) return;
    const delay = this.backoff.next();
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, delay);
    this.retryTimer.unref?.();
  }

  private setConnected(connected: boolean, status?: { code: number; details: string }): void {
    if (this.connectedFlag === connected) return;
    this.connectedFlag = connected;
    if (connected) this.emit('connected');
    else this.emit('disconnected', status ?? { code: grpcLib().status.UNAVAILABLE, details: '' });
  }
}
