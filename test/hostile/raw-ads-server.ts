/**
 * A state-of-the-world ADS server for malformed-xDS tests. Like test/support/json-ads-server.ts
 * (Envoy-shaped JSON encoded with the real protos) but it can also serve raw Any messages —
 * unknown type URLs, undecodable bytes, type mismatches — and types nobody subscribed to. It
 * records every ACK and NACK (with error_detail) and never validates anything.
 */
import * as grpc from '@grpc/grpc-js';
import { jsonToAny } from '../../xds-client/proto-json';
import { adsServiceDefinition, type DiscoveryRequestProto } from '../../xds-client/protos';

type Call = grpc.ServerDuplexStream<DiscoveryRequestProto, unknown>;
export type RawAny = { type_url: string; value: Buffer };

export interface Reply {
  readonly typeUrl: string;
  readonly version: string;
  readonly nonce: string;
  /** error_detail.message when this was a NACK. */
  readonly nack?: string;
}

export class RawAdsServer {
  private server: grpc.Server | undefined;
  private readonly calls = new Set<Call>();
  private readonly resources = new Map<string, RawAny[]>();
  private readonly versions = new Map<string, number>();
  private nonce = 0;
  readonly replies: Reply[] = [];
  port = 0;

  async start(): Promise<void> {
    const server = new grpc.Server();
    server.addService(adsServiceDefinition(), {
      StreamAggregatedResources: (call: Call) => this.accept(call),
      DeltaAggregatedResources: (call: Call) => call.end(),
    });
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    this.server = server;
  }

  /** Serve Envoy-shaped JSON resources of a type (a new version), pushed to every stream. */
  set(typeUrl: string, resources: Record<string, unknown>[]): string {
    return this.setRaw(
      typeUrl,
      resources.map((r) => jsonToAny({ '@type': typeUrl, ...r })),
    );
  }

  /** Serve raw Any messages under `typeUrl` (a new version). Returns the version string. */
  setRaw(typeUrl: string, anys: RawAny[]): string {
    this.resources.set(typeUrl, anys);
    const v = (this.versions.get(typeUrl) ?? 0) + 1;
    this.versions.set(typeUrl, v);
    for (const c of this.calls) this.send(c, typeUrl);
    return String(v);
  }

  nacks(typeUrl?: string): Reply[] {
    return this.replies.filter((r) => r.nack !== undefined && (typeUrl === undefined || r.typeUrl === typeUrl));
  }

  acks(typeUrl?: string): Reply[] {
    return this.replies.filter((r) => r.nack === undefined && (typeUrl === undefined || r.typeUrl === typeUrl));
  }

  private send(call: Call, typeUrl: string): void {
    const list = this.resources.get(typeUrl);
    if (!list) return;
    call.write({ version_info: String(this.versions.get(typeUrl) ?? 0), type_url: typeUrl, nonce: String(++this.nonce), resources: list });
  }

  private accept(call: Call): void {
    this.calls.add(call);
    const subscribed = new Set<string>();
    call.on('data', (req: DiscoveryRequestProto) => {
      const t = req.type_url;
      if (req.response_nonce) {
        this.replies.push({ typeUrl: t, version: req.version_info ?? '', nonce: req.response_nonce, nack: req.error_detail ? (req.error_detail.message ?? '') : undefined });
      }
      if (!subscribed.has(t)) {
        subscribed.add(t);
        this.send(call, t);
      }
    });
    call.on('error', () => {});
    call.on('end', () => {
      this.calls.delete(call);
      call.end();
    });
    call.on('close', () => this.calls.delete(call));
  }

  async stop(): Promise<void> {
    this.calls.clear();
    const s = this.server;
    this.server = undefined;
    s?.forceShutdown();
  }
}
