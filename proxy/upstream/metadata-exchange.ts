/**
 * Istio's TCP metadata exchange on a connection (istio/proxy's `envoy.tcp.metadataexchange`),
 * both ends of it:
 *
 * - `exchangeMetadata(socket, frame, cb)`: write this node's frame, read the peer's, hand back the
 *   peer and leave the socket paused with every byte after the frame still in it. Used by the
 *   inbound network filter (listeners/istio-network-filters.ts) and by
 * - `MetadataExchangeTransport`: the upstream cluster filter
 *   (`envoy.filters.network.upstream.metadata_exchange`), a transport wrapper that runs the
 *   exchange on each new connection before it is handed out; the peer travels on the
 *   TransportConnection (the TCP proxy's istio_tcp_* metrics read it as the destination).
 *
 * As istio-proxy: the exchange runs only when the negotiated ALPN is the configured `protocol`
 * (istiod: `istio-peer-exchange`, which Istio's mTLS clusters offer first and its inbound TCP
 * chains accept); otherwise the connection is left alone. The peer's frame is 8 bytes (magic
 * 0x3D230467, length, big-endian) then a google.protobuf.Any of a Struct
 * (proxy/http/peer-metadata.ts). Bytes that do not start with the magic are not a frame: they stay
 * in the stream for the next filter and the peer is unknown. istio-proxy writes its own frame when
 * the first bytes cross the connection in either direction; meshlet writes at once, which an
 * istio-proxy peer answers with its own.
 *
 * Differences, on purpose: a peer closing the connection in the middle of its frame closes the
 * connection (istio-proxy passes the partial frame on); a frame longer than 64 KiB is not read as
 * one (its bytes pass through).
 */
import type { Socket } from 'node:net';
import type { NodeInfo } from '../config/types';
import type { ResetReason } from '../http/codec';
import { decodeExchangeAny, encodeExchangeFrame, MX_HEADER_BYTES, MX_MAGIC, MX_MAX_BYTES, type PeerMetadata } from '../http/peer-metadata';
import type { Host } from './host';
import type { ClientTlsOptions, TransportConnection, TransportSocketFactory } from './types';

/** How an exchange ended. */
export type ExchangeResult =
  /** The peer's frame was read (peer undefined when it did not carry Istio's metadata Struct). */
  | { readonly kind: 'peer'; readonly peer: PeerMetadata | undefined }
  /** The first bytes were not a frame (istio-proxy: "Incorrect istio-peer-exchange ALPN magic"). */
  | { readonly kind: 'no_frame' }
  /** The connection ended, failed or closed before the frame was complete. */
  | { readonly kind: 'closed' };

/** The frame per node object (encoded once). */
const frames = new WeakMap<NodeInfo, Buffer>();
export function exchangeFrame(node: NodeInfo): Buffer {
  let f = frames.get(node);
  if (f === undefined) {
    f = encodeExchangeFrame(node);
    frames.set(node, f);
  }
  return f;
}

/**
 * Write `frame` and read the peer's. `cb` runs once; for 'peer' and 'no_frame' the socket is
 * paused and holds the bytes that follow the frame (all bytes, for 'no_frame').
 */
export function exchangeMetadata(socket: Socket, frame: Buffer, cb: (r: ExchangeResult) => void): void {
  let buf: Buffer | undefined;
  let done = false;
  const finish = (r: ExchangeResult, rest: Buffer | undefined): void => {
    if (done) return;
    done = true;
    socket.removeListener('data', onData);
    socket.removeListener('end', onClosed);
    socket.removeListener('error', onClosed);
    socket.removeListener('close', onClosed);
    socket.pause();
    if (rest !== undefined && rest.length > 0) socket.unshift(rest);
    cb(r);
  };
  const onClosed = (): void => finish({ kind: 'closed' }, undefined);
  const onData = (chunk: Buffer): void => {
    buf = buf === undefined ? chunk : Buffer.concat([buf, chunk]);
    if (buf.length < MX_HEADER_BYTES) return;
    const len = buf.readUInt32BE(4);
    if (buf.readUInt32BE(0) !== MX_MAGIC || len > MX_MAX_BYTES) {
      finish({ kind: 'no_frame' }, buf);
      return;
    }
    if (buf.length < MX_HEADER_BYTES + len) return;
    const peer = decodeExchangeAny(buf.subarray(MX_HEADER_BYTES, MX_HEADER_BYTES + len));
    finish({ kind: 'peer', peer }, buf.subarray(MX_HEADER_BYTES + len));
  };
  socket.on('data', onData);
  socket.once('end', onClosed);
  socket.once('error', onClosed);
  socket.once('close', onClosed);
  socket.write(frame);
  socket.resume();
}

/** The negotiated ALPN as istio-proxy compares it ("" when none was). */
export function negotiatedProtocol(alpn: string | undefined): string {
  return alpn ?? '';
}

/** The upstream cluster filter: connections whose ALPN is `protocol` exchange metadata first. */
export class MetadataExchangeTransport implements TransportSocketFactory {
  readonly ssl: TransportSocketFactory['ssl'];

  constructor(
    private readonly inner: TransportSocketFactory,
    private readonly protocol: string,
    private readonly node: NodeInfo,
  ) {
    this.ssl = inner.ssl;
    if (inner.clientTls !== undefined) this.clientTls = () => inner.clientTls!();
  }

  clientTls?: () => ClientTlsOptions;

  connect(
    host: Host,
    opts: Parameters<TransportSocketFactory['connect']>[1],
    cb: (err: { reason: ResetReason; detail: string } | undefined, conn: TransportConnection | undefined) => void,
  ): void {
    this.inner.connect(host, opts, (err, conn) => {
      if (err !== undefined || conn === undefined || negotiatedProtocol(conn.alpn) !== this.protocol) {
        cb(err, conn);
        return;
      }
      exchangeMetadata(conn.socket, exchangeFrame(this.node), (r) => {
        if (r.kind === 'closed') {
          conn.socket.destroy();
          cb({ reason: 'connect_failure', detail: `${host.key} closed the connection during the ${this.protocol} metadata exchange` }, undefined);
          return;
        }
        conn.socket.resume();
        cb(undefined, r.kind === 'peer' && r.peer !== undefined ? { ...conn, peer: r.peer } : conn);
      });
    });
  }
}

/** Wrap a cluster's transport with its upstream metadata exchange filter, when it has one. */
export function withMetadataExchange(
  transport: TransportSocketFactory,
  mx: { readonly protocol: string } | undefined,
  node: NodeInfo | undefined,
): TransportSocketFactory {
  return mx === undefined || node === undefined ? transport : new MetadataExchangeTransport(transport, mx.protocol, node);
}
