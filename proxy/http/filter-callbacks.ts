/**
 * The seam between the filter manager and its stream (Envoy's FilterManagerCallbacks), and the
 * stream-level part of the callbacks every filter gets, delegated to the stream as they are.
 * FilterManager (filter-manager.ts) extends StreamFilterCallbacks with what depends on its own
 * state (continue calls, local replies, per-route config, read-disable).
 */
import type { RuntimeReader } from '../../common/runtime';
import type { Duplex } from 'node:stream';
import type { ResponseFlag } from '../../common/errors';
import type { HcmConfig, NodeInfo, Route, RouteConfiguration } from '../config/types';
import type { ClusterLookup } from '../upstream/types';
import type {
  DownstreamConnectionInfo,
  HeaderList,
  HttpProtocol,
  RequestHead,
  ResetReason,
  ResponseHead,
} from './codec';
import type { HeaderFormatContext } from './headers';
import type { CompiledRoute } from './route-matcher';
import type { StreamInfo } from './stream-info';

/** What the filter manager needs from its stream (Envoy's FilterManagerCallbacks). */
export interface FilterManagerCallbacks {
  readonly info: StreamInfo;
  readonly connection: DownstreamConnectionInfo;
  readonly hcm: HcmConfig;
  readonly downstreamProtocol: HttpProtocol;
  readonly internal: boolean;
  readonly trustedRemoteAddress: string;
  readonly clusters: ClusterLookup;
  readonly runtime: RuntimeReader;
  readonly localNode: NodeInfo | undefined;
  readonly formatContext: HeaderFormatContext;
  readonly random: () => number;
  /** The request head (undefined before headers arrived). */
  readonly request: RequestHead | undefined;
  /** The cached route for the current headers (resolved on first use). */
  resolveRoute(): CompiledRoute | undefined;
  routeConfig(): RouteConfiguration | undefined;
  clearRouteCache(): void;
  /** The response entered the encoder filters (timers react). */
  onResponseStarted(): void;
  /** Response activity: the stream idle timer restarts. */
  refreshIdleTimer(): void;
  /** Write to the codec (after the last encoder filter). */
  writeHeaders(head: ResponseHead, endStream: boolean): void;
  writeData(chunk: Buffer, endStream: boolean): boolean;
  writeTrailers(trailers: HeaderList): void;
  /** Read-disable the request (true) or read again (false). */
  setReadDisabled(disabled: boolean): void;
  resetStream(reason: ResetReason): void;
  takeDownstreamTunnel(): Duplex;
  onTunnelDone(bytesUp: number, bytesDown: number): void;
  /** A filter threw from a continue call: answer 500 or reset. */
  onFilterError(err: unknown): void;
}

/** The callbacks a filter gets that are facts or actions of the whole stream. */
export abstract class StreamFilterCallbacks {
  constructor(protected readonly cb: FilterManagerCallbacks) {}

  get connection(): DownstreamConnectionInfo {
    return this.cb.connection;
  }
  get trustedRemoteAddress(): string {
    return this.cb.trustedRemoteAddress;
  }
  get clusters(): ClusterLookup {
    return this.cb.clusters;
  }
  get localNode(): NodeInfo | undefined {
    return this.cb.localNode;
  }
  get runtime(): RuntimeReader {
    return this.cb.runtime;
  }
  get formatContext(): HeaderFormatContext {
    return this.cb.formatContext;
  }
  get streamInfo(): StreamInfo {
    return this.cb.info;
  }
  get hcm(): HcmConfig {
    return this.cb.hcm;
  }
  get downstreamProtocol(): HttpProtocol {
    return this.cb.downstreamProtocol;
  }
  get internal(): boolean {
    return this.cb.internal;
  }
  get random(): () => number {
    return this.cb.random;
  }
  route(): Route | undefined {
    return this.cb.resolveRoute()?.route;
  }
  routeEntry(): CompiledRoute | undefined {
    return this.cb.resolveRoute();
  }
  routeConfig(): RouteConfiguration | undefined {
    return this.cb.routeConfig();
  }
  clearRouteCache(): void {
    this.cb.clearRouteCache();
  }
  setResponseFlag(flag: ResponseFlag): void {
    this.cb.info.setResponseFlag(flag);
  }
  setDynamicMetadata(namespace: string, key: string, value: unknown): void {
    this.cb.info.setDynamicMetadata(namespace, key, value);
  }
  dynamicMetadataOf(namespace: string): Readonly<Record<string, unknown>> | undefined {
    return this.cb.info.dynamicMetadataOf(namespace);
  }
  setMetadata(key: string, value: string): void {
    this.cb.info.setMetadata(key, value);
  }
  resetStream(reason: ResetReason): void {
    this.cb.resetStream(reason);
  }
  takeDownstreamTunnel(): Duplex {
    return this.cb.takeDownstreamTunnel();
  }
  onTunnelDone(bytesUp: number, bytesDown: number): void {
    this.cb.onTunnelDone(bytesUp, bytesDown);
  }
}
