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
  /**
   * Graceful drain of every live connection (and of those handed over later): `decision` says,
   * per response, whether to close after it, and when each connection starts draining on its own
   * (HTTP/2 GOAWAY; HTTP/1.1 `Connection: close` on its next response, then closed if it stays
   * idle for the connection manager's drain_timeout). Without one: drain at once.
   */
  drain?(decision?: DrainDecision): void;
  /** Live connections owned by this handler (for drain completion). */
  readonly activeConnections: number;
}

/** Envoy's Network::DrainDecision, as the connection manager reads it while draining. */
export interface DrainDecision {
  /** Close the connection after this response (`Connection: close` / GOAWAY). */
  drainClose(): boolean;
  /** How long a live connection waits before it starts draining on its own. */
  noticeDelayMs(): number;
}

let nextConnectionId = 1;
/** Process-wide connection ids (Envoy's %CONNECTION_ID%). */
export function newConnectionId(): number {
  return nextConnectionId++;
}
