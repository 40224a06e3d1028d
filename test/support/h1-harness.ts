/**
 * Test harness pieces for the HTTP/1.1 codec tests (real sockets only, loopback only): a plain-TCP
 * TransportSocketFactory, counting circuit-breaker resources, and a tiny forwarding sink that
 * wires a downstream H1ServerCodec stream to an upstream ConnectionPool the way the router does
 * (without routing, retries or filters).
 *
 * Test support only (kept out of dist/); the production transport lives in proxy/upstream.
 */
import net from 'node:net';
import type { Address } from '../../proxy/config/types';
import { Host } from '../../proxy/upstream/host';
import { type ClusterResources, ClusterStats, type Resource, type TransportSocketFactory } from '../../proxy/upstream/types';
import type {
  ConnectionPool,
  HeaderList,
  PoolCallbacks,
  RequestEncoder,
  RequestHead,
  RequestSink,
  ResetReason,
  ResponseEncoder,
  ResponseHead,
  ResponseSink,
  ServerCodecCallbacks,
  UpstreamInfo,
} from '../../proxy/http/codec';
import type { H1PoolCluster } from '../../proxy/http/h1/pool';

export class CountingResource implements Resource {
  count = 0;
  constructor(public max: number) {}
  canCreate(): boolean {
    return this.count < this.max;
  }
  inc(): void {
    this.count++;
  }
  dec(): void {
    this.count--;
  }
}

export function resources(max: Partial<Record<keyof ClusterResources, number>> = {}): ClusterResources {
  return {
    connections: new CountingResource(max.connections ?? 1024),
    pendingRequests: new CountingResource(max.pendingRequests ?? 1024),
    requests: new CountingResource(max.requests ?? 1024),
    retries: new CountingResource(max.retries ?? 3),
  };
}

/** Plain TCP connects with a timeout; reports connect_failure / timeout like the real transport. */
export function tcpTransport(): TransportSocketFactory {
  return {
    connect(host, opts, cb) {
      const socket = net.connect({ host: host.host, port: host.port });
      let done = false;
      const timer = setTimeout(() => {
        if (done) return;
        done = true;
        socket.destroy();
        cb({ reason: 'timeout', detail: `connect timeout after ${opts.timeoutMs} ms` }, undefined);
      }, opts.timeoutMs);
      socket.once('connect', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        cb(undefined, { socket });
      });
      socket.once('error', (e) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        cb({ reason: 'connect_failure', detail: e.message }, undefined);
      });
    },
  };
}

export function loopbackHost(port: number, host = '127.0.0.1'): Host {
  const address: Address = { kind: 'socket', host, port };
  return new Host(address);
}

export function poolCluster(
  opts: {
    transport?: TransportSocketFactory;
    connectTimeoutMs?: number;
    upstreamIdleTimeoutMs?: number;
    maxRequestsPerConnection?: number;
    resources?: ClusterResources;
  } = {},
): H1PoolCluster & { stats: ClusterStats } {
  return {
    name: 'test',
    config: {
      connectTimeoutMs: opts.connectTimeoutMs ?? 5000,
      upstreamIdleTimeoutMs: opts.upstreamIdleTimeoutMs ?? 0,
      maxRequestsPerConnection: opts.maxRequestsPerConnection ?? 0,
    },
    stats: new ClusterStats(),
    resources: opts.resources ?? resources(),
    transport: opts.transport ?? tcpTransport(),
  };
}

/** What a forwarding stream saw, for assertions. */
export interface ForwardRecord {
  head?: RequestHead;
  resets: ResetReason[];
  upstreamResets: { reason: ResetReason; detail?: string }[];
}

/**
 * A minimal "router": every downstream request goes to `pool` unchanged; the response comes back
 * unchanged; failures become 503 (pool) or 502 (protocol error) local replies.
 */
export class ForwardingCallbacks implements ServerCodecCallbacks {
  readonly records: ForwardRecord[] = [];
  constructor(private readonly pool: ConnectionPool) {}
  newStream(encoder: ResponseEncoder): RequestSink {
    const rec: ForwardRecord = { resets: [], upstreamResets: [] };
    this.records.push(rec);
    return new ForwardingStream(this.pool, encoder, rec);
  }
}

class ForwardingStream implements RequestSink, ResponseSink, PoolCallbacks {
  private upstream: RequestEncoder | undefined;
  private buffered: { chunk?: Buffer; end: boolean; trailers?: HeaderList }[] = [];
  private headEnd = false;
  private responded = false;
  private done = false;

  constructor(
    private readonly pool: ConnectionPool,
    private readonly downstream: ResponseEncoder,
    private readonly rec: ForwardRecord,
  ) {}

  onRequestHeaders(head: RequestHead, endStream: boolean): void {
    this.rec.head = head;
    this.headEnd = endStream;
    this.pool.newStream(this, this);
  }
  onRequestData(chunk: Buffer, endStream: boolean): void {
    if (this.upstream !== undefined) this.upstream.writeData(chunk, endStream);
    else this.buffered.push({ chunk: Buffer.from(chunk), end: endStream });
  }
  onRequestTrailers(trailers: HeaderList): void {
    if (this.upstream !== undefined) this.upstream.writeTrailers(trailers);
    else this.buffered.push({ end: true, trailers });
  }
  onDownstreamReset(reason: ResetReason): void {
    this.rec.resets.push(reason);
    this.done = true;
    this.upstream?.reset(reason);
  }
  onDownstreamWritable(): void {
    this.upstream?.resumeResponse();
  }

  onPoolReady(encoder: RequestEncoder, _info: UpstreamInfo): void {
    if (this.done) {
      encoder.reset('local_reset');
      return;
    }
    this.upstream = encoder;
    encoder.writeHeaders(this.rec.head!, this.headEnd);
    for (const b of this.buffered) {
      if (b.trailers !== undefined) encoder.writeTrailers(b.trailers);
      else encoder.writeData(b.chunk!, b.end);
    }
    this.buffered = [];
  }
  onPoolFailure(reason: ResetReason, detail: string): void {
    this.rec.upstreamResets.push({ reason, detail });
    this.localReply(503, `pool failure: ${reason}`);
  }

  onResponseHeaders(head: ResponseHead, endStream: boolean): void {
    this.responded = true;
    if (head.status === 101 && this.upstream !== undefined) {
      // Accepted upgrade: splice the two raw byte streams together.
      this.downstream.writeHeaders(head, false);
      const up = this.upstream.takeTunnel();
      const down = this.downstream.takeTunnel();
      up.pipe(down);
      down.pipe(up);
      const end = () => {
        up.destroy();
        down.destroy();
      };
      up.on('error', end);
      down.on('error', end);
      up.on('close', end);
      down.on('close', end);
      return;
    }
    this.downstream.writeHeaders(head, endStream);
  }
  onResponseData(chunk: Buffer, endStream: boolean): void {
    if (!this.downstream.writeData(chunk, endStream)) this.upstream?.pauseResponse();
  }
  onResponseTrailers(trailers: HeaderList): void {
    this.downstream.writeTrailers(trailers);
  }
  onUpstreamReset(reason: ResetReason, detail?: string): void {
    this.rec.upstreamResets.push({ reason, detail });
    if (this.responded) this.downstream.reset(reason);
    else this.localReply(reason === 'protocol_error' ? 502 : 503, `upstream reset: ${reason}`);
  }
  onUpstreamWritable(): void {
    this.downstream.resumeRequest();
  }

  private localReply(status: number, text: string): void {
    if (this.done) return;
    this.responded = true;
    const body = Buffer.from(text);
    this.downstream.writeHeaders(
      { status, headers: ['content-type', 'text/plain'], contentLength: body.length },
      false,
    );
    this.downstream.writeData(body, true);
  }
}

/** Outcome of {@link poolRequest}. */
export interface PoolResult {
  status: number;
  headers: HeaderList;
  body: Buffer;
  trailers?: HeaderList;
  /** Set when the pool failed or the stream was reset instead of completing. */
  failure?: { reason: ResetReason; detail?: string; from: 'pool' | 'reset' };
  info?: UpstreamInfo;
}

/** Send one request through `pool` and collect the response (or the failure). */
export function poolRequest(
  pool: ConnectionPool,
  head: Partial<RequestHead> & { path: string },
  body?: Buffer,
): Promise<PoolResult> {
  return new Promise((resolve) => {
    const result: PoolResult = { status: 0, headers: [], body: Buffer.alloc(0) };
    const chunks: Buffer[] = [];
    const finish = () => {
      result.body = Buffer.concat(chunks);
      resolve(result);
    };
    const sink: ResponseSink = {
      onResponseHeaders(h, end) {
        result.status = h.status;
        result.headers = h.headers;
        if (end) finish();
      },
      onResponseData(chunk, end) {
        chunks.push(Buffer.from(chunk));
        if (end) finish();
      },
      onResponseTrailers(t) {
        result.trailers = t;
        finish();
      },
      onUpstreamReset(reason, detail) {
        result.failure = { reason, detail, from: 'reset' };
        finish();
      },
      onUpstreamWritable() {},
    };
    const full: RequestHead = {
      method: head.method ?? (body ? 'POST' : 'GET'),
      path: head.path,
      authority: head.authority ?? 'upstream.test',
      scheme: 'http',
      protocol: 'HTTP/1.1',
      headers: head.headers ?? [],
      contentLength: body ? body.length : 0,
      upgrade: head.upgrade,
    };
    pool.newStream(sink, {
      onPoolReady(encoder, info) {
        result.info = info;
        encoder.writeHeaders(full, body === undefined);
        if (body !== undefined) encoder.writeData(body, true);
      },
      onPoolFailure(reason, detail) {
        result.failure = { reason, detail, from: 'pool' };
        finish();
      },
    });
  });
}
