/**
 * One ADS stream on the server side, in both protocol variants: state-of-the-world
 * (`StreamAggregatedResources`) and incremental (`DeltaAggregatedResources`).
 *
 * Owns the per-stream protocol state: the node (from the first request), requested names per type
 * (wildcard for LDS/CDS), what was sent (version, nonce, per-resource versions for delta), what was
 * ACKed or NACKed. Follows docs/root/api-docs/xds_protocol.rst: a SotW request whose nonce is not
 * the latest sent for its type is stale and ignored; a NACK (error_detail set) keeps the stream,
 * is logged, and the rejected version is not sent again — the next push carries a new version.
 * Leans towards sending nothing rather than duplicates: a response is written only when the
 * selected resources' versions differ from what the client has.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type {
  DeltaDiscoveryRequestProto,
  DeltaDiscoveryResponseProto,
  DiscoveryRequestProto,
  DiscoveryResponseProto,
} from '../xds-client/protos';
import { TYPE_URLS } from '../xds-client/protos';
import type { CallerIdentity } from './caller-auth';
import type { CertIssuer } from './issuer';
import type { MeshWorkload } from './mesh';
import { isWildcardType, SERVED_TYPES, type SnapshotCache, setVersion, type VersionedResource } from './snapshot';

/** What a stream needs from the server. */
export interface StreamHost {
  readonly cache: SnapshotCache;
  readonly issuer: CertIssuer;
  readonly log: Logger;
  readonly identifier: string;
  /** Local development only: send the `default` secret with the workload's private key. */
  readonly sendPrivateKeys: boolean;
  findWorkload(nodeId: string): MeshWorkload | undefined;
  closed(stream: AdsStream): void;
}

/** Per-type status, for tests and a debug dump. */
export interface TypeStatus {
  readonly wildcard: boolean;
  readonly names: readonly string[];
  readonly sentVersion?: string;
  readonly ackedVersion?: string;
  readonly nackedVersion?: string;
  readonly lastError?: string;
  readonly responses: number;
  readonly acks: number;
  readonly nacks: number;
}

interface TypeState {
  wildcard: boolean;
  names: Set<string>;
  sentVersion?: string;
  sentNonce?: string;
  ackedVersion?: string;
  nackedVersion?: string;
  lastError?: string;
  responses: number;
  acks: number;
  nacks: number;
  /** Delta only: the version of each resource the client has (or was last sent). */
  clientVersions: Map<string, string>;
  /** Delta only: version sent per nonce, to name what an ACK/NACK refers to. */
  nonceVersions: Map<string, string>;
}

type AnyCall =
  | grpc.ServerDuplexStream<DiscoveryRequestProto, DiscoveryResponseProto>
  | grpc.ServerDuplexStream<DeltaDiscoveryRequestProto, DeltaDiscoveryResponseProto>;

/** Who opened a stream: the peer address and, unless the server allows anonymous ADS, an identity. */
export interface StreamCaller {
  readonly peer: string;
  readonly identity?: CallerIdentity;
}

export abstract class AdsStream {
  nodeId?: string;
  workload?: MeshWorkload;
  protected readonly types = new Map<string, TypeState>();
  private holdsCert?: MeshWorkload;
  private queue: Promise<void> = Promise.resolve();
  private nonce = 0;
  private done = false;
  abstract readonly protocol: 'sotw' | 'delta';

  constructor(
    protected readonly host: StreamHost,
    protected readonly call: AnyCall,
    readonly caller: StreamCaller,
  ) {
    const finish = () => this.finish();
    call.on('end', () => {
      finish();
      call.end();
    });
    call.on('error', finish);
    call.on('cancelled', finish);
    call.on('close', finish);
  }

  /** Re-resolve the node against a new mesh and send whatever changed. */
  meshChanged(): void {
    if (this.nodeId === undefined) return;
    let w = this.host.findWorkload(this.nodeId);
    if (!w)
      this.host.log.warn(
        { node: this.nodeId, peer: this.caller.peer },
        'node no longer matches a workload in the mesh; sending empty configuration',
      );
    else if (this.identityMismatch(w)) {
      this.host.log.warn(
        { node: this.nodeId, peer: this.caller.peer, reason: this.identityMismatch(w) },
        'node now names a workload of another service account; sending empty configuration',
      );
      w = undefined;
    }
    this.workload = w;
    if (this.holdsCert) this.host.issuer.release(this.holdsCert);
    this.holdsCert = undefined;
    if (w && this.types.has(TYPE_URLS.secret)) this.holdCert(w);
    this.pushAll();
  }

  /** Push every subscribed type (in CDS, EDS, LDS, RDS, SDS order). */
  pushAll(): void {
    for (const t of SERVED_TYPES) if (this.types.has(t)) this.enqueue(t);
  }

  /** Push one type if subscribed. */
  push(typeUrl: string): void {
    if (this.types.has(typeUrl)) this.enqueue(typeUrl);
  }

  status(): { nodeId?: string; workload?: string; protocol: string; types: Record<string, TypeStatus> } {
    const types: Record<string, TypeStatus> = {};
    for (const [t, s] of this.types) {
      types[t] = {
        wildcard: s.wildcard,
        names: [...s.names].sort(),
        sentVersion: s.sentVersion,
        ackedVersion: s.ackedVersion,
        nackedVersion: s.nackedVersion,
        lastError: s.lastError,
        responses: s.responses,
        acks: s.acks,
        nacks: s.nacks,
      };
    }
    return { nodeId: this.nodeId, workload: this.workload?.name, protocol: this.protocol, types };
  }

  /** Whether the stream subscribed to secrets, and whether it ACKed the last ones it was sent. */
  secretsState(): { subscribed: boolean; acked: boolean } {
    const s = this.types.get(TYPE_URLS.secret);
    return { subscribed: s !== undefined, acked: s !== undefined && s.sentVersion !== undefined && s.ackedVersion === s.sentVersion };
  }

  /** Close the stream from the server side (shutdown). */
  close(): void {
    if (!this.done) this.call.end();
    this.finish();
  }

  /** Handle the node on a request; false if the stream was ended because of it. */
  protected acceptNode(id: string | undefined): boolean {
    if (this.nodeId !== undefined) return true;
    if (!id) return this.fail(grpc.status.INVALID_ARGUMENT, 'the first request on a stream must carry node.id');
    const w = this.host.findWorkload(id);
    if (!w) {
      return this.fail(
        grpc.status.NOT_FOUND,
        `node id "${id}" matches no workload in the mesh (use "<name>", "<name>.<namespace>" or "sidecar~<ip>~<name>.<namespace>~<namespace>.svc.cluster.local")`,
      );
    }
    const mismatch = this.identityMismatch(w);
    if (mismatch) return this.fail(grpc.status.PERMISSION_DENIED, `node id "${id}": ${mismatch}`);
    this.nodeId = id;
    this.workload = w;
    const who = this.caller.identity;
    this.host.log.info(
      {
        node: id,
        peer: this.caller.peer,
        workload: `${w.namespace}/${w.name}`,
        protocol: this.protocol,
        authenticated: who ? `${who.namespace}/${who.serviceAccount} (${who.via})` : 'no (insecure mode)',
      },
      'ADS stream opened',
    );
    return true;
  }

  /** Why the authenticated caller may not receive `w`'s configuration; undefined = it may. */
  private identityMismatch(w: MeshWorkload): string | undefined {
    const who = this.caller.identity;
    if (!who || (who.namespace === w.namespace && who.serviceAccount === w.serviceAccount)) return undefined;
    return `the caller is service account ${who.namespace}/${who.serviceAccount}, workload ${w.namespace}/${w.name} runs as ${w.namespace}/${w.serviceAccount}`;
  }

  protected state(typeUrl: string): TypeState | undefined {
    if (!SERVED_TYPES.includes(typeUrl)) {
      this.host.log.warn(
        { node: this.nodeId, typeUrl },
        'request for a resource type this control plane does not serve; ignored',
      );
      return undefined;
    }
    let s = this.types.get(typeUrl);
    if (!s) {
      s = {
        wildcard: false,
        names: new Set(),
        responses: 0,
        acks: 0,
        nacks: 0,
        clientVersions: new Map(),
        nonceVersions: new Map(),
      };
      this.types.set(typeUrl, s);
      if (typeUrl === TYPE_URLS.secret && this.workload) this.holdCert(this.workload);
    }
    return s;
  }

  protected recordAck(
    typeUrl: string,
    s: TypeState,
    version: string | undefined,
    errorMessage: string | undefined,
  ): void {
    if (errorMessage !== undefined) {
      s.nacks++;
      s.nackedVersion = version;
      s.lastError = errorMessage;
      this.host.log.warn(
        { node: this.nodeId, typeUrl, version, error: errorMessage },
        'NACK: client rejected configuration; keeping the stream, not resending this version',
      );
    } else {
      s.acks++;
      s.ackedVersion = version;
      s.lastError = undefined;
      this.host.log.debug({ node: this.nodeId, typeUrl, version }, 'ACK');
    }
  }

  protected nextNonce(): string {
    return String(++this.nonce);
  }

  protected write(msg: DiscoveryResponseProto | DeltaDiscoveryResponseProto): void {
    if (this.done || this.call.cancelled || this.call.destroyed) return;
    (this.call as grpc.ServerDuplexStream<unknown, unknown>).write(msg);
  }

  protected async resources(typeUrl: string): Promise<ReadonlyMap<string, VersionedResource>> {
    return this.host.cache.resources(this.workload, typeUrl, this.host.sendPrivateKeys);
  }

  /** Compute and send `typeUrl` if the client does not already have it. */
  protected abstract send(typeUrl: string): Promise<void>;

  private enqueue(typeUrl: string): void {
    this.queue = this.queue
      .then(() => (this.done ? undefined : this.send(typeUrl)))
      .catch((err: unknown) => this.host.log.error({ node: this.nodeId, typeUrl, err }, 'failed to build a response'));
  }

  private holdCert(w: MeshWorkload): void {
    // Without key hand-out nothing is issued here: workloads obtain their certificates by CSR.
    if (!this.host.sendPrivateKeys) return;
    this.host.issuer.acquire(w);
    this.holdsCert = w;
  }

  private fail(code: grpc.status, details: string): false {
    this.host.log.warn({ code, details, peer: this.caller.peer }, 'ADS stream rejected');
    if (!this.done) this.call.emit('error', { code, details } as grpc.ServiceError);
    this.finish();
    return false;
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    if (this.holdsCert) this.host.issuer.release(this.holdsCert);
    this.holdsCert = undefined;
    this.host.closed(this);
  }
}

/** State-of-the-world ADS (`StreamAggregatedResources`). */
export class SotwStream extends AdsStream {
  readonly protocol = 'sotw' as const;

  constructor(host: StreamHost, call: grpc.ServerDuplexStream<DiscoveryRequestProto, DiscoveryResponseProto>, caller: StreamCaller) {
    super(host, call, caller);
    call.on('data', (req: DiscoveryRequestProto) => this.onRequest(req));
  }

  private onRequest(req: DiscoveryRequestProto): void {
    if (!this.acceptNode(req.node?.id)) return;
    const s = this.state(req.type_url);
    if (!s) return;
    if (req.response_nonce) {
      if (req.response_nonce !== s.sentNonce) {
        this.host.log.debug(
          { node: this.nodeId, typeUrl: req.type_url, nonce: req.response_nonce },
          'stale nonce; request ignored',
        );
        return;
      }
      this.recordAck(
        req.type_url,
        s,
        req.error_detail ? s.sentVersion : req.version_info,
        req.error_detail?.message ?? (req.error_detail ? '' : undefined),
      );
    }
    const names = req.resource_names ?? [];
    s.wildcard = isWildcardType(req.type_url) && (names.length === 0 || names.includes('*'));
    s.names = new Set(names.filter((n) => n !== '*'));
    this.push(req.type_url);
  }

  protected async send(typeUrl: string): Promise<void> {
    const s = this.types.get(typeUrl)!;
    const all = await this.resources(typeUrl);
    const selected: VersionedResource[] = [];
    if (s.wildcard) selected.push(...all.values());
    else
      for (const n of s.names) {
        const r = all.get(n);
        if (r) selected.push(r);
      }
    const version = setVersion(selected);
    // Same content as last sent (ACKed or NACKed): nothing to do.
    if (version === s.sentVersion) return;
    const nonce = this.nextNonce();
    s.sentVersion = version;
    s.sentNonce = nonce;
    s.responses++;
    this.write({
      version_info: version,
      resources: selected.map((r) => r.any),
      type_url: typeUrl,
      nonce,
      control_plane: { identifier: this.host.identifier },
    });
  }
}

/** Incremental ADS (`DeltaAggregatedResources`). */
export class DeltaStream extends AdsStream {
  readonly protocol = 'delta' as const;

  constructor(
    host: StreamHost,
    call: grpc.ServerDuplexStream<DeltaDiscoveryRequestProto, DeltaDiscoveryResponseProto>,
    caller: StreamCaller,
  ) {
    super(host, call, caller);
    call.on('data', (req: DeltaDiscoveryRequestProto) => this.onRequest(req));
  }

  private onRequest(req: DeltaDiscoveryRequestProto): void {
    if (!this.acceptNode(req.node?.id)) return;
    const first = !this.types.has(req.type_url);
    const s = this.state(req.type_url);
    if (!s) return;
    const subscribe = req.resource_names_subscribe ?? [];
    const unsubscribe = req.resource_names_unsubscribe ?? [];
    if (first) {
      s.wildcard = isWildcardType(req.type_url) && (subscribe.length === 0 || subscribe.includes('*'));
      for (const [k, v] of Object.entries(req.initial_resource_versions ?? {})) s.clientVersions.set(k, v);
    }
    if (req.response_nonce) {
      const version = s.nonceVersions.get(req.response_nonce);
      s.nonceVersions.delete(req.response_nonce);
      this.recordAck(req.type_url, s, version, req.error_detail ? (req.error_detail.message ?? '') : undefined);
    }
    let changed = first;
    for (const n of subscribe) {
      if (n === '*') {
        changed ||= !s.wildcard;
        s.wildcard = true;
      } else if (!s.names.has(n)) {
        s.names.add(n);
        changed = true;
      }
    }
    for (const n of unsubscribe) {
      if (n === '*') s.wildcard = false;
      else s.names.delete(n);
      s.clientVersions.delete(n);
    }
    if (changed) this.push(req.type_url);
  }

  protected async send(typeUrl: string): Promise<void> {
    const s = this.types.get(typeUrl)!;
    const all = await this.resources(typeUrl);
    const wanted = (name: string) => s.wildcard || s.names.has(name);
    const updates: VersionedResource[] = [];
    for (const r of all.values()) if (wanted(r.name) && s.clientVersions.get(r.name) !== r.version) updates.push(r);
    const removed: string[] = [];
    for (const name of s.clientVersions.keys()) if (!all.has(name) && wanted(name)) removed.push(name);
    if (updates.length === 0 && removed.length === 0 && s.responses > 0) return;
    for (const r of updates) s.clientVersions.set(r.name, r.version);
    for (const n of removed) s.clientVersions.delete(n);
    const nonce = this.nextNonce();
    const version = setVersion(all.values());
    s.sentVersion = version;
    s.sentNonce = nonce;
    s.nonceVersions.set(nonce, version);
    if (s.nonceVersions.size > 64) s.nonceVersions.delete(s.nonceVersions.keys().next().value!);
    s.responses++;
    this.write({
      system_version_info: version,
      resources: updates.map((r) => ({ name: r.name, version: r.version, resource: r.any })),
      type_url: typeUrl,
      removed_resources: removed,
      nonce,
      control_plane: { identifier: this.host.identifier },
    });
  }
}
