/**
 * The shapes shared by meshlet's own upstream HTTP/2 framing (raw-client-session.ts and its
 * send side, raw-client-send.ts) and its users (raw-client-stream.ts, raw-tunnel.ts, the pool):
 * the per-stream state object, the events a stream and the pool receive, the session options.
 */
/** Events a stream receives from its connection. */
export interface RawStreamHandler {
  /** A complete header block (response headers, 1xx, or trailers). */
  onHeaders(fields: string[], endStream: boolean, oversize: boolean): void;
  onData(chunk: Buffer, endStream: boolean): void;
  /** The stream ended abnormally: RST_STREAM from the peer, GOAWAY, or the connection died. */
  onReset(code: number, kind: 'remote' | 'refused' | 'gone'): void;
  /** Queued request data left (flow-control window or socket drained). */
  onWritable(): void;
}

/** Events the pool receives from a connection. */
export interface RawSessionOwner {
  onRemoteSettings(maxConcurrentStreams: number): void;
  onGoaway(): void;
  onClose(): void;
}

/** One stream's state inside the connection. */
export class RawStream {
  sendWindow: number;
  recvWindow: number;
  /** Octets delivered to the consumer but not yet credited back to the peer. */
  recvUnacked = 0;
  localEnded = false;
  remoteEnded = false;
  /** Request data waiting for flow-control window; `queuedEnd`: END_STREAM after it. */
  queued: Buffer[] | undefined = undefined;
  queuedBytes = 0;
  queuedEnd = false;
  queuedTrailers: string[] | undefined = undefined;
  blocked = false;
  /** Paused by the consumer: received data is held here and not credited. */
  paused = false;
  held: Buffer[] | undefined = undefined;
  heldEnd = false;
  /** Trailers that arrived behind held data: delivered after it on resume. */
  heldTrailers: string[] | undefined = undefined;

  constructor(
    readonly id: number,
    readonly handler: RawStreamHandler,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }
}

export interface RawSessionOptions {
  /** Our SETTINGS_INITIAL_WINDOW_SIZE (per stream) and the connection receive window. */
  readonly streamWindow: number;
  readonly connectionWindow: number;
  /** Largest response header list accepted (RFC 7541 accounting). */
  readonly maxHeaderListSize: number;
}
