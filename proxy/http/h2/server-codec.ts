/**
 * Downstream HTTP/2 codec: serves one accepted connection (h2c with prior knowledge, or TLS that
 * negotiated ALPN "h2") with node:http2's session/stream API and turns every stream into calls on
 * a RequestSink from the connection manager (proxy/http/codec.ts).
 *
 * Owns: the Http2Session of that connection, its SETTINGS, opening streams (request pseudo-headers,
 * extended CONNECT), premature-reset and PRIORITY flood accounting, idle close and graceful
 * GOAWAY. Each stream's ResponseEncoder and its listeners (response, trailers, flow control glue,
 * resets) are server-stream.ts.
 *
 * Leans towards speed and never crashing: nghttp2 does all framing; the session is created by a
 * shared, never-listening http2.Server fed through `emit('connection')`, so there is no
 * compatibility-layer object per request; per-stream event listeners are module-level functions
 * that find their state through a symbol on the stream (no closures per stream or per chunk).
 * Every session and stream has an 'error' listener: bad traffic resets a stream or closes the
 * connection, it never throws out of the codec.
 */
import { type Http2Session, constants as h2c, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { MeshletError } from '../../../common/errors';
import { logger } from '../../../common/logger';
import type { CodecErrorReport, DownstreamConnectionInfo, ServerCodecCallbacks } from '../codec';
import { decodeRequestHead } from './headers';
import {
  clampWindow,
  type H2ServerCodecOptions,
  h2ServerAbuseStats,
  MAX_CONTROL_PER_SECOND,
  MAX_PRIORITY_FRAMES_PER_STREAM,
  PREMATURE_RESET_TOTAL_STREAMS,
  sessionServerFor,
} from './server-settings';
import {
  H2ServerStream,
  kEncoder,
  onStreamClose,
  onStreamData,
  onStreamEnd,
  onStreamPriority,
  onStreamTrailers,
  RESPOND_END,
  type TaggedStream,
} from './server-stream';

export { type H2ServerCodecOptions, h2ServerAbuseStats, h2ServerOptionsFromHcm } from './server-settings';

const log = logger('h2');

const kCodec = Symbol('meshlet.h2.codec');

type TaggedSession = ServerHttp2Session & { [kCodec]?: H2ServerCodec };


let attaching: H2ServerCodec | undefined;

function onServerSession(session: ServerHttp2Session): void {
  const codec = attaching;
  attaching = undefined;
  if (codec !== undefined) codec.attach(session);
  else session.destroy();
}

function noop(): void {}

/** Session errors (bad frames, socket errors) end the connection; they never throw. */
function onSessionError(this: TaggedSession, err: Error): void {
  if (log.isLevelEnabled('debug')) {
    log.debug(
      { connection: this[kCodec]?.connection.id, err: err.message, code: (err as NodeJS.ErrnoException).code },
      'downstream HTTP/2 session error',
    );
  }
}

// ───────────── per-stream listeners (module level: no closures per stream) ─────────────

function onStream(this: TaggedSession, stream: ServerHttp2Stream, _h: unknown, flags: number, raw: string[]): void {
  const codec = this[kCodec];
  if (codec !== undefined) codec.onStream(stream as TaggedStream, flags, raw);
  else stream.close(h2c.NGHTTP2_REFUSED_STREAM);
}

/** PRIORITY frames: node emits them on the stream when it is open, else on the session. */
function onSessionPriority(this: TaggedSession): void {
  this[kCodec]?.onPriorityFrame();
}

/** A SETTINGS or PING frame received (node answers it with an ACK by itself). */
function onSessionControl(this: TaggedSession): void {
  this[kCodec]?.onControlFrame();
}

// ───────────── the connection ─────────────

/**
 * One downstream HTTP/2 connection. Construct it with the accepted socket; it starts serving
 * immediately. `preface` hands back bytes the listener already read while detecting the protocol
 * (for example the `PRI * HTTP/2.0` preface); they are unshifted into the socket first.
 */
export class H2ServerCodec {
  private session: ServerHttp2Session | undefined;
  private active = 0;
  private closing = false;
  private gone = false;
  /** The peer half-closed (FIN, or TLS close_notify then FIN): close once no stream is open. */
  private peerEnded = false;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Streams closed on this connection, and how many of them the peer reset prematurely. */
  private closedStreams = 0;
  private prematureResets = 0;
  /** PRIORITY frames received and streams opened (Envoy's inbound priority frame flood rule). */
  private priorityFrames = 0;
  private controlInWindow = 0;
  private controlWindowStart = 0;
  private streamsOpened = 0;
  /** Set when the connection was closed for too many premature resets (downstream_rq_too_many_premature_resets). */
  prematureResetClose = false;
  readonly secure: boolean;
  /** max_request_headers_kb in bytes (HPACK accounting: name + value + 32 per field). */
  private readonly maxHeaderListSize: number;

  constructor(
    socket: Duplex,
    readonly connection: DownstreamConnectionInfo,
    readonly callbacks: ServerCodecCallbacks,
    private readonly options: H2ServerCodecOptions,
    preface?: Buffer,
  ) {
    this.secure = (socket as { encrypted?: boolean }).encrypted === true;
    this.maxHeaderListSize = Math.max(1024, Math.floor(options.maxRequestHeadersKb * 1024));
    if (preface !== undefined && preface.length > 0) socket.unshift(preface);
    if (this.secure) {
      // The connection manager chose HTTP/2 (ALPN h2, or codec_type HTTP2 with prior knowledge
      // over TLS). node would hand a TLS socket without ALPN h2 to its HTTP/1 fallback path, so
      // state the decision on the socket the way ALPN would have.
      const t = socket as {
        alpnProtocol?: string | false | null;
        secureConnecting?: boolean;
        _secureEstablished?: boolean;
      };
      if (t.alpnProtocol !== 'h2') t.alpnProtocol = 'h2';
      // A server TLSSocket built outside tls.Server (the listener terminates TLS itself) keeps
      // secureConnecting=true after its handshake, and node:http2 would then wait for a
      // 'secureConnect' that never comes. tls.Server clears the flag the same way.
      if (t.secureConnecting === true && t._secureEstablished === true) t.secureConnecting = false;
    }
    // Listeners allow half-open sockets (for tcp_proxy), and node:http2 does not act on the
    // peer's FIN: a client that ends its byte stream without GOAWAY (curl does) would otherwise
    // leave this connection in CLOSE-WAIT until idle_timeout. Answer what is in flight, then close.
    socket.once('end', () => this.onPeerEnd());
    const server = sessionServerFor(options, onServerSession);
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the codec being attached, read by the shared server's handler
    attaching = this;
    try {
      server.emit('connection', socket);
    } finally {
      attaching = undefined;
    }
    if (this.session === undefined) {
      // node refused the socket; nothing to serve.
      log.warn({ connection: connection.id }, 'HTTP/2 session could not be created; closing the connection');
      this.gone = true;
      socket.destroy();
    }
  }

  /** Called synchronously from the shared server's 'session' event. */
  attach(session: ServerHttp2Session): void {
    this.session = session;
    (session as TaggedSession)[kCodec] = this;
    session.on('stream', onStream);
    session.on('error', onSessionError);
    session.on('priority', onSessionPriority);
    session.on('remoteSettings', onSessionControl);
    session.on('ping', onSessionControl);
    session.once('close', () => this.onSessionClose());
    const connWindow = this.options.http2.initialConnectionWindowSize;
    if (connWindow > 65535) {
      try {
        session.setLocalWindowSize(clampWindow(connWindow));
      } catch {
        // Session already torn down: nothing to size.
      }
    }
    this.armIdle();
  }

  /** Streams currently open on this connection. */
  get activeStreams(): number {
    return this.active;
  }

  /** True once GOAWAY was sent or the connection is gone. */
  isClosing(): boolean {
    return this.closing || this.gone;
  }

  /** @internal The session or its socket is gone (streams die with the connection). */
  transportGone(): boolean {
    const s = this.session;
    return this.gone || s === undefined || s.destroyed || s.socket === undefined || s.socket.destroyed;
  }

  /** Graceful close: GOAWAY now, let active streams finish, then close the connection. */
  drain(): void {
    if (this.closing || this.gone || this.session === undefined) return;
    this.closing = true;
    this.session.close();
  }

  /** Close the connection now; active streams see onDownstreamReset('connection_termination'). */
  destroy(): void {
    if (this.gone) return;
    this.closing = true;
    this.session?.destroy();
  }

  /** Report a request the codec answered itself. */
  reportError(status: number, flag: CodecErrorReport['flag'], detail: string): void {
    this.options.onCodecError?.({ status, flag, detail });
  }

  /** @internal Called from the 'stream' listener. */
  onStream(stream: TaggedStream, flags: number, raw: string[]): void {
    // The idle timer keeps running; it only acts when it fires with no active stream.
    this.active++;
    const enc = new H2ServerStream(this, stream);
    stream[kEncoder] = enc;
    stream.on('error', noop);
    stream.on('close', onStreamClose);
    stream.on('priority', onStreamPriority);
    this.streamsOpened++;
    const endStream = (flags & h2c.NGHTTP2_FLAG_END_STREAM) !== 0;
    // node enforces SETTINGS_MAX_HEADER_LIST_SIZE only once the client has acknowledged our
    // SETTINGS (it reads nghttp2's acked local settings); a header block sent before the ACK
    // would bypass max_request_headers_kb. Enforce it here too, the same way (RST_STREAM).
    let size = 0;
    for (let i = 0; i < raw.length; i++) size += raw[i]!.length + (i & 1) * 32;
    if (size > this.maxHeaderListSize) {
      h2ServerAbuseStats.headerOverflow++;
      this.reportError(431, 'DPE', 'request headers too large');
      enc.responseEnded = true;
      enc.localReset = true;
      stream.close(h2c.NGHTTP2_ENHANCE_YOUR_CALM);
      return;
    }
    const head = decodeRequestHead(raw, endStream, this.secure);
    if (typeof head === 'string') {
      this.reportError(400, 'DPE', head);
      enc.responseEnded = true;
      enc.localReset = true;
      try {
        stream.respond({ ':status': 400 }, RESPOND_END);
      } catch {
        stream.close(h2c.NGHTTP2_PROTOCOL_ERROR);
      }
      stream.resume();
      return;
    }
    enc.upgrade = head.upgrade !== undefined;
    enc.requestEnded = endStream;
    stream.on('data', onStreamData);
    stream.on('end', onStreamEnd);
    stream.on('trailers', onStreamTrailers);
    try {
      enc.sink = this.callbacks.newStream(enc);
      enc.sink.onRequestHeaders(head, endStream);
    } catch {
      // The connection manager must not throw; if it does, only this stream is lost.
      enc.sink = undefined;
      enc.reset('local_reset');
    }
  }

  /** @internal A stream closed. */
  streamClosed(premature: boolean): void {
    this.active--;
    this.closedStreams++;
    if (premature) this.prematureResets++;
    if (this.prematureResets > 0 && !this.gone) this.checkPrematureResets();
    if (this.active === 0) {
      if (this.peerEnded) this.drain();
      else this.armIdle();
    }
  }

  /** The peer sent FIN: nothing more can arrive, so no new stream; close when the last ends. */
  private onPeerEnd(): void {
    this.peerEnded = true;
    if (this.active === 0) this.drain();
  }

  /**
   * Envoy's max_inbound_priority_frames_per_stream (default 100): more than 100 × (1 + streams
   * opened) PRIORITY frames is a flood (CVE-2019-9513); nghttp2 has no such limit. Closing sends
   * GOAWAY ENHANCE_YOUR_CALM.
   */
  onPriorityFrame(): void {
    if (++this.priorityFrames <= MAX_PRIORITY_FRAMES_PER_STREAM * (1 + this.streamsOpened) || this.gone) return;
    h2ServerAbuseStats.inboundPriorityFramesFlood++;
    log.warn({ connection: this.connection.id, priorityFrames: this.priorityFrames }, 'closing HTTP/2 connection: PRIORITY frame flood');
    this.closing = true;
    this.priorityFrames = 0;
    this.session?.destroy(new MeshletError('MESHLET_ERR_OVERFLOW', 'PRIORITY frame flood'), h2c.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  /**
   * SETTINGS and PING frames from a client that reads every ACK: nghttp2 only limits ACKs the
   * client leaves unread, so more than MAX_CONTROL_PER_SECOND in one second is a flood here, as
   * on meshlet's own framing (raw-server-guard.ts). Closing sends GOAWAY ENHANCE_YOUR_CALM.
   */
  onControlFrame(): void {
    const now = Date.now();
    if (now - this.controlWindowStart >= 1000) {
      this.controlWindowStart = now;
      this.controlInWindow = 0;
    }
    if (++this.controlInWindow <= MAX_CONTROL_PER_SECOND || this.gone || this.closing) return;
    log.warn({ connection: this.connection.id }, 'closing HTTP/2 connection: SETTINGS/PING flood');
    this.closing = true;
    this.session?.destroy(new MeshletError('MESHLET_ERR_OVERFLOW', 'SETTINGS/PING flood'), h2c.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  /**
   * Envoy's rule (runtime overload.premature_reset_total_stream_count, default 500): once the
   * connection has closed that many streams, more than half of them reset prematurely by the peer
   * closes it; so does reaching that many premature resets at all. Closing sends GOAWAY
   * ENHANCE_YOUR_CALM. nghttp2's own reset rate limit sends a GOAWAY but leaves the socket open.
   */
  private checkPrematureResets(): void {
    const closed = this.closedStreams;
    const premature = this.prematureResets;
    if (closed < PREMATURE_RESET_TOTAL_STREAMS ? premature < PREMATURE_RESET_TOTAL_STREAMS : premature * 2 < closed) return;
    h2ServerAbuseStats.tooManyPrematureResets++;
    log.warn({ connection: this.connection.id, closed, premature }, 'closing HTTP/2 connection: too many premature stream resets');
    this.prematureResetClose = true;
    this.closing = true;
    // (destroy(undefined, code) would send NO_ERROR: node's default parameter replaces undefined.)
    this.session?.destroy(new MeshletError('MESHLET_ERR_OVERFLOW', 'too many premature stream resets'), h2c.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  private armIdle(): void {
    const ms = this.options.idleTimeoutMs ?? 0;
    if (ms <= 0 || this.closing || this.gone) return;
    if (this.idleTimer === undefined) {
      this.idleTimer = setTimeout(() => {
        if (this.active === 0) this.drain();
      }, ms);
      this.idleTimer.unref();
    } else {
      this.idleTimer.refresh();
    }
  }

  private onSessionClose(): void {
    this.gone = true;
    this.closing = true;
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.options.onClose?.();
  }

  /** The underlying session, for admin/debug views. */
  get http2Session(): Http2Session | undefined {
    return this.session;
  }
}
