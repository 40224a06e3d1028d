/**
 * The HTTP connection manager (Envoy's `envoy.filters.network.http_connection_manager`), the
 * per-connection side: it takes accepted connections, picks each one's codec (HTTP/1.1 or
 * HTTP/2, from codec_type, ALPN and what the listener sniffed, or the first bytes under AUTO),
 * keeps the live connections, drains them gracefully (Envoy's drain sequence) and reports the
 * requests a codec answered itself. Each request is an ActiveStream (active-stream.ts), which
 * sees this class only as its StreamOwner. The router is an ordinary terminal filter from the
 * registry, so nothing here knows about upstreams.
 */
import type { Socket } from 'node:net';
import type { HcmConfig } from '../config/types';
import type { ConnectionHandler, DrainDecision, Sniffed } from '../listeners/types';
import { logger } from '../../common/logger';
import { ActiveStream, type StreamOptions, type StreamOwner } from './active-stream';
import type {
  CodecErrorReport,
  DownstreamConnectionInfo,
  RequestSink,
  ResponseEncoder,
  ServerCodecCallbacks,
} from './codec';
import type { HttpFilterRegistry } from './filter';
import { type ResolvedChain, resolveFilterChain } from './filter-chain';
import { H1ServerCodec, h1ServerOptions } from './h1/server-codec';
import { H2ServerCodec, h2ServerOptionsFromHcm } from './h2/server-codec';
import { H2RawServerCodec } from './h2/raw-server-session';
import { h2ServerCodecKind } from './h2/server-settings';
import { type StreamCompleteListener, StreamInfo } from './stream-info';

const log = logger('hcm');

/** Everything a connection manager is built from (one per filter chain). */
export interface HcmOptions extends StreamOptions {
  readonly config: HcmConfig;
  /** Filter factories by typed_config type (registered from the composition root). */
  readonly filters: HttpFilterRegistry;
  /** Called once per finished stream (access logs, metrics, tracing). */
  readonly onStreamComplete?: StreamCompleteListener;
}

interface Codec {
  readonly activeStreams: number;
  drain(): void;
  destroy(): void;
}

/** Drain at once (a replaced chain, a listener drained without a drain time). */
const DRAIN_NOW: DrainDecision = { drainClose: () => true, noticeDelayMs: () => 0 };

export class HttpConnectionManager implements ConnectionHandler, ServerCodecCallbacks, StreamOwner {
  readonly config: HcmConfig;
  /** http_filters resolved once: every stream's FilterManager instantiates it. */
  readonly chain: ResolvedChain;
  private readonly codecs = new Set<Codec>();
  /** AUTO connections still waiting for their first bytes. */
  private readonly undecided = new Set<Socket>();
  /**
   * Set once the listener drains (Envoy's drain decision): asked on every response whether to
   * close after it. undefined while not draining, so the hot path pays one check.
   */
  drainDecision: DrainDecision | undefined;
  /** Per connection while draining: the timer that starts its drain, then the one that closes it if idle. */
  private readonly drainTimers = new Map<Codec, NodeJS.Timeout>();

  constructor(readonly opts: HcmOptions) {
    this.config = opts.config;
    this.chain = resolveFilterChain(opts.config, opts.filters);
  }

  get activeConnections(): number {
    return this.codecs.size + this.undecided.size;
  }

  /** Streams in flight across all connections. */
  get activeStreams(): number {
    let n = 0;
    for (const c of this.codecs) n += c.activeStreams;
    return n;
  }

  /** Take an accepted connection: pick HTTP/1.1 or HTTP/2 and start serving it. */
  handle(socket: Socket, info: DownstreamConnectionInfo, sniffed: Sniffed | undefined): void {
    const cfg = this.config;
    let h2: boolean | undefined;
    if (cfg.codecType === 'HTTP2') h2 = true;
    else if (cfg.codecType === 'HTTP1') h2 = false;
    else if (sniffed?.application !== undefined) h2 = sniffed.application === 'h2';
    // TLS with a negotiated ALPN decides; without one (Istio's istio-h2 / istio-http/1.1 offers
    // meet h2 / http/1.1: nothing in common) the first bytes do, as Envoy's AUTO codec.
    else if (info.tls !== undefined && info.tls.alpn !== undefined) h2 = info.tls.alpn === 'h2';
    if (h2 !== undefined) {
      this.serve(socket, info, h2);
      return;
    }
    // AUTO on a connection nobody inspected: one read decides (the HTTP/2 preface starts "PRI ").
    this.undecided.add(socket);
    // A client that connects and never sends a byte is still subject to idle_timeout (Envoy arms
    // the connection idle timer before any codec exists), and one that half-closes before its
    // first byte is gone (listeners allow half-open sockets for tcp_proxy).
    const idleMs = cfg.idleTimeoutMs;
    const idle = idleMs > 0 ? setTimeout(destroyUndecided, idleMs, socket) : undefined;
    idle?.unref();
    const onEnd = (): void => {
      socket.destroy();
    };
    socket.once('end', onEnd);
    socket.once('close', () => {
      this.undecided.delete(socket);
      if (idle !== undefined) clearTimeout(idle);
    });
    socket.once('data', (first: Buffer) => {
      if (idle !== undefined) clearTimeout(idle);
      socket.removeListener('end', onEnd);
      this.undecided.delete(socket);
      socket.pause();
      socket.unshift(first);
      const h2 = isH2Preface(first);
      this.serve(socket, info, h2);
      // node:http2 drains the unshifted bytes itself; the HTTP/1 codec reads through 'data'.
      if (!h2) socket.resume();
    });
  }

  private serve(socket: Socket, info: DownstreamConnectionInfo, h2: boolean): void {
    const cfg = this.config;
    // One closure per connection (not per request): rejected requests are reported with their connection.
    const onCodecError = (r: CodecErrorReport): void => this.onCodecError(r, info, h2);
    let codec: Codec;
    if (h2) {
      const Codec = h2ServerCodecKind() === 'meshlet' ? H2RawServerCodec : H2ServerCodec;
      codec = new Codec(socket, info, this, { ...h2ServerOptionsFromHcm(cfg), onCodecError });
    } else {
      codec = new H1ServerCodec(socket, this, info, h1ServerOptions(cfg, onCodecError));
    }
    this.codecs.add(codec);
    socket.once('close', () => {
      this.codecs.delete(codec);
      const t = this.drainTimers.get(codec);
      if (t !== undefined) {
        clearTimeout(t);
        this.drainTimers.delete(codec);
      }
    });
    if (this.drainDecision !== undefined) this.scheduleDrain(codec, this.drainDecision);
  }

  /**
   * Graceful drain (Envoy's listener drain): every response may now close its connection (see
   * ActiveStream.writeHeaders), and each live connection — and each one accepted while draining —
   * starts draining on its own after the decision's delay. A connection that has not sent its
   * first byte yet (AUTO, undecided) is left alone: closing it could race the request its client
   * is writing; it drains once it has a codec.
   */
  drain(decision: DrainDecision = DRAIN_NOW): void {
    if (this.drainDecision !== undefined && decision !== DRAIN_NOW) return;
    this.drainDecision = decision;
    for (const c of this.codecs) this.scheduleDrain(c, decision);
  }

  private scheduleDrain(codec: Codec, decision: DrainDecision): void {
    const old = this.drainTimers.get(codec);
    if (old !== undefined) clearTimeout(old);
    const delay = decision.noticeDelayMs();
    if (delay <= 0) {
      this.startDrainSequence(codec);
      return;
    }
    const t = setTimeout(() => this.startDrainSequence(codec), delay);
    t.unref();
    this.drainTimers.set(codec, t);
  }

  /**
   * Envoy's startDrainSequence for one connection. HTTP/2: GOAWAY now (node can only send the
   * final GOAWAY — last stream id = last processed — not nghttp2's shutdown notice, after which
   * nghttp2 would silently ignore new streams; clients retry streams above the last id), and the
   * connection closes once its streams end. HTTP/1.1: the next response says `Connection: close`
   * and the connection closes after it; one that stays idle for drain_timeout is closed then
   * (Envoy's onDrainTimeout) — an idle HTTP/1.1 connection cannot be told anything else.
   */
  private startDrainSequence(codec: Codec): void {
    this.drainTimers.delete(codec);
    if (!(codec instanceof H1ServerCodec)) {
      codec.drain();
      return;
    }
    codec.shutdownNotice();
    const t = setTimeout(() => {
      this.drainTimers.delete(codec);
      codec.drain();
    }, this.config.drainTimeoutMs);
    t.unref();
    this.drainTimers.set(codec, t);
  }

  /** Close every connection now. */
  destroy(): void {
    for (const t of this.drainTimers.values()) clearTimeout(t);
    this.drainTimers.clear();
    for (const c of this.codecs) c.destroy();
    this.codecs.clear();
    for (const s of this.undecided) s.destroy();
    this.undecided.clear();
  }

  newStream(encoder: ResponseEncoder): RequestSink {
    return new ActiveStream(this, encoder);
  }

  /** A request the codec answered itself (400/408/413/431…): reported like a finished stream. */
  private onCodecError(r: CodecErrorReport, conn: DownstreamConnectionInfo, h2: boolean): void {
    if (!this.opts.onStreamComplete) return;
    const info = new StreamInfo(conn, h2 ? 'HTTP/2' : 'HTTP/1.1');
    info.responseCode = r.status;
    info.responseCodeDetails = r.detail;
    info.setResponseFlag(r.flag);
    this.complete(info);
  }

  /** Report a finished stream; a failing listener never breaks the data plane. */
  complete(info: StreamInfo): void {
    const l = this.opts.onStreamComplete;
    if (!l) return;
    try {
      l(info);
    } catch (err) {
      log.warn({ err }, 'stream completion listener failed');
    }
  }
}

const PREFACE_START = Buffer.from('PRI ', 'latin1');

/** idle_timeout fired on a connection that never sent its first byte. */
function destroyUndecided(socket: Socket): void {
  socket.destroy();
}

/** Whether the first bytes of a connection can only be the HTTP/2 client preface. */
export function isH2Preface(first: Buffer): boolean {
  const n = Math.min(first.length, PREFACE_START.length);
  return n > 0 && first.subarray(0, n).equals(PREFACE_START.subarray(0, n));
}
