/**
 * A minimal state-of-the-world (and delta) ADS server for end-to-end tests that need to push arbitrary
 * (including invalid) resources: resources are Envoy-shaped JSON, encoded with the real protos
 * (xds-client/proto-json), served to every stream, pushed again on `set()`. It records NACKs.
 * Unlike control-plane/ (the real embedded control plane) it never validates what it serves.
 */
import * as grpc from '@grpc/grpc-js';
import { jsonToAny } from '../../xds-client/proto-json';
import { adsServiceDefinition, type DeltaDiscoveryRequestProto, type DiscoveryRequestProto } from '../../xds-client/protos';

type Call = grpc.ServerDuplexStream<DiscoveryRequestProto, unknown>;
type DeltaCall = grpc.ServerDuplexStream<DeltaDiscoveryRequestProto, unknown>;

export interface Nack {
  readonly typeUrl: string;
  readonly version: string;
  readonly message: string;
}

export class JsonAdsServer {
  private server: grpc.Server | undefined;
  private readonly calls = new Set<Call>();
  private readonly deltaCalls = new Set<DeltaCall>();
  private readonly resources = new Map<string, Record<string, unknown>[]>();
  private readonly versions = new Map<string, number>();
  private nonce = 0;
  readonly nacks: Nack[] = [];
  readonly acks: { typeUrl: string; version: string }[] = [];
  port = 0;

  async start(port = 0): Promise<void> {
    const server = new grpc.Server();
    server.addService(adsServiceDefinition(), {
      StreamAggregatedResources: (call: Call) => this.accept(call),
      DeltaAggregatedResources: (call: DeltaCall) => this.acceptDelta(call),
    });
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    this.server = server;
  }

  /** Replace every resource of a type (a new version) and push it to all streams. */
  set(typeUrl: string, resources: Record<string, unknown>[]): void {
    this.resources.set(typeUrl, resources);
    this.versions.set(typeUrl, (this.versions.get(typeUrl) ?? 0) + 1);
    for (const c of this.calls) this.send(c, typeUrl);
    for (const c of this.deltaCalls) this.sendDelta(c, typeUrl);
  }

  /** Delta: every resource of the type, each named (name, else cluster_name) and versioned. */
  private sendDelta(call: DeltaCall, typeUrl: string): void {
    const list = this.resources.get(typeUrl);
    if (!list) return;
    const version = String(this.versions.get(typeUrl) ?? 0);
    call.write({
      system_version_info: version,
      type_url: typeUrl,
      nonce: String(++this.nonce),
      resources: list.map((r) => ({
        name: String(r.name ?? r.cluster_name ?? ''),
        version,
        resource: jsonToAny({ '@type': typeUrl, ...r }),
      })),
    });
  }

  private acceptDelta(call: DeltaCall): void {
    this.deltaCalls.add(call);
    const subscribed = new Set<string>();
    call.on('data', (req: DeltaDiscoveryRequestProto) => {
      const t = req.type_url;
      const version = String(this.versions.get(t) ?? 0);
      if (req.response_nonce) {
        if (req.error_detail) this.nacks.push({ typeUrl: t, version, message: req.error_detail.message });
        else this.acks.push({ typeUrl: t, version });
      }
      if (!subscribed.has(t)) {
        subscribed.add(t);
        this.sendDelta(call, t);
      }
    });
    call.on('error', () => {});
    call.on('end', () => {
      this.deltaCalls.delete(call);
      call.end();
    });
    call.on('close', () => this.deltaCalls.delete(call));
  }

  private send(call: Call, typeUrl: string): void {
    const list = this.resources.get(typeUrl);
    if (!list) return;
    call.write({
      version_info: String(this.versions.get(typeUrl) ?? 0),
      type_url: typeUrl,
      nonce: String(++this.nonce),
      resources: list.map((r) => jsonToAny({ '@type': typeUrl, ...r })),
    });
  }

  private accept(call: Call): void {
    this.calls.add(call);
    const subscribed = new Set<string>();
    call.on('data', (req: DiscoveryRequestProto) => {
      const t = req.type_url;
      if (req.response_nonce) {
        if (req.error_detail) this.nacks.push({ typeUrl: t, version: req.version_info ?? '', message: req.error_detail.message });
        else this.acks.push({ typeUrl: t, version: req.version_info ?? '' });
      }
      if (!subscribed.has(t)) {
        subscribed.add(t);
        this.send(call, t);
      } else if (!req.response_nonce) this.send(call, t);
    });
    call.on('error', () => {});
    call.on('end', () => {
      this.calls.delete(call);
      call.end();
    });
    call.on('close', () => this.calls.delete(call));
  }

  /** Kill the server and every stream (the control plane "goes away"). */
  async stop(): Promise<void> {
    this.calls.clear();
    this.deltaCalls.clear();
    const s = this.server;
    this.server = undefined;
    s?.forceShutdown();
  }
}
