/**
 * Contracts between the listener layer and what runs on an accepted connection.
 *
 * The listener accepts, runs listener filters (original destination, TLS/HTTP inspection), picks a
 * filter chain, terminates TLS when the chain has a transport socket, runs non-terminal network
 * filters (RBAC, connection limits) and then hands the connection to the chain's terminal
 * ConnectionHandler: the HTTP connection manager or the TCP proxy.
 */
import type { Socket } from 'node:net';
import type { DownstreamConnectionInfo } from '../http/codec';

/** What protocol detection learned from the first bytes (absent when detection did not run). */
export interface Sniffed {
  readonly transport: 'tls' | 'raw_buffer';
  /** 'h2' (HTTP/2 preface or ALPN h2), 'http/1.1', or undefined for opaque bytes. */
  readonly application?: 'h2' | 'http/1.1' | 'http/1.0';
  readonly sni?: string;
  readonly alpn?: readonly string[];
}

export interface ConnectionHandler {
  /**
   * Take ownership of an accepted (and, with a TLS transport socket, already terminated)
   * connection. Bytes read during detection have been unshifted back into the socket. The socket
   * is flowing; a handler that must hold data pauses it synchronously here.
   */
  handle(socket: Socket, info: DownstreamConnectionInfo, sniffed: Sniffed | undefined): void;
  /** Graceful drain: stop new streams on live connections (Connection: close / GOAWAY). */
  drain?(): void;
  /** Live connections owned by this handler (for drain completion). */
  readonly activeConnections: number;
}

let nextConnectionId = 1;
/** Process-wide connection ids (Envoy's %CONNECTION_ID%). */
export function newConnectionId(): number {
  return nextConnectionId++;
}
