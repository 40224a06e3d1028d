/**
 * A scripted ADS server for xds-client tests: a real @grpc/grpc-js server on 127.0.0.1 serving
 * envoy.service.discovery.v3.AggregatedDiscoveryService (SotW and delta) from the real protos. It
 * records every request in arrival order and sends exactly the responses a test scripts. It is a
 * test peer, not a control plane: it never answers on its own.
 */

import * as grpc from '@grpc/grpc-js';
import type {
  DeltaDiscoveryRequestProto,
  DeltaDiscoveryResponseProto,
  DiscoveryRequestProto,
  DiscoveryResponseProto,
} from '../../xds-client/protos';
import { adsServiceDefinition } from '../../xds-client/protos';

type AnyCall = grpc.ServerDuplexStream<unknown, unknown>;

/** One request as received, with the number of the stream it came on (1-based). */
export interface Recorded<T> {
  readonly stream: number;
  readonly req: T;
}

export class ScriptedAdsServer {
  private server?: grpc.Server;
  private readonly calls: AnyCall[] = [];
  /** The request metadata (headers) of each stream, in the order streams were opened. */
  readonly metadata: grpc.Metadata[] = [];
  private readonly log: Recorded<DiscoveryRequestProto & DeltaDiscoveryRequestProto>[] = [];
  private consumed = 0;
  private waiters: Array<() => void> = [];
  private streamWaiters: Array<() => void> = [];
  port = 0;

  /**
   * Start on 127.0.0.1 (port 0 = any free port; pass a port to restart on the same one).
   * `creds` defaults to plaintext.
   */
  static async start(port: number | string = 0, creds?: grpc.ServerCredentials): Promise<ScriptedAdsServer> {
    const s = new ScriptedAdsServer();
    await s.listen(port, creds ?? grpc.ServerCredentials.createInsecure());
    return s;
  }

  /** `port` may be a `unix:` address instead. */
  private async listen(port: number | string, creds: grpc.ServerCredentials): Promise<void> {
    const server = new grpc.Server();
    server.addService(adsServiceDefinition(), {
      StreamAggregatedResources: (call: AnyCall) => this.accept(call),
      DeltaAggregatedResources: (call: AnyCall) => this.accept(call),
    });
    this.port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(typeof port === 'string' ? port : `127.0.0.1:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p)));
    });
    this.server = server;
  }

  private accept(call: AnyCall): void {
    this.calls.push(call);
    this.metadata.push(call.metadata);
    const stream = this.calls.length;
    call.on('data', (req: unknown) => {
      this.log.push({ stream, req: req as DiscoveryRequestProto & DeltaDiscoveryRequestProto });
      this.wake();
    });
    call.on('error', () => {
      // client went away; the test decides what that means
    });
    call.on('end', () => {
      if (!call.writableEnded) call.end();
    });
    for (const w of this.streamWaiters.splice(0)) w();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Number of streams opened so far. */
  get streamCount(): number {
    return this.calls.length;
  }

  /** Every request received so far, in order. */
  get requests(): readonly Recorded<DiscoveryRequestProto & DeltaDiscoveryRequestProto>[] {
    return this.log;
  }

  /** The next request not yet returned by next(), waiting up to timeoutMs for it. */
  async next(timeoutMs = 5000): Promise<Recorded<DiscoveryRequestProto & DeltaDiscoveryRequestProto>> {
    const deadline = Date.now() + timeoutMs;
    while (this.consumed >= this.log.length) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`scripted ADS server: no request within ${timeoutMs} ms (received ${this.log.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.log[this.consumed++];
  }

  /** Wait until the n-th stream (1-based) has been opened. */
  async waitForStream(n: number, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.calls.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`scripted ADS server: stream ${n} not opened within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.streamWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Send a SotW response on the latest stream. */
  send(res: DiscoveryResponseProto): void {
    this.latest().write(res);
  }

  /** Send a delta response on the latest stream. */
  sendDelta(res: DeltaDiscoveryResponseProto): void {
    this.latest().write(res);
  }

  /** End the latest stream with a status (the client should reconnect). */
  endStream(code = grpc.status.UNAVAILABLE, details = 'scripted end'): void {
    this.latest().emit('error', { code, details });
  }

  private latest(): AnyCall {
    const call = this.calls[this.calls.length - 1];
    if (!call) throw new Error('scripted ADS server: no stream yet');
    return call;
  }

  /** Kill the server and every stream at once. */
  stop(): void {
    this.server?.forceShutdown();
    this.server = undefined;
    this.wake();
  }
}
