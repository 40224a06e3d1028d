/**
 * Settings of downstream HTTP/2 connections: the codec options taken from the HCM, Envoy's flood
 * limits and abuse counters, the first SETTINGS frame of meshlet's own framing, and the never-listening http2.Server per distinct SETTINGS that
 * creates sessions for proxy/http/h2/server-codec.ts (fed through emit('connection')).
 */
import { createServer, type Http2Server, type ServerHttp2Session } from 'node:http2';
import type { Http2Options } from '../../config/types';
import type { CodecErrorReport } from '../codec';
import {
  S_ENABLE_CONNECT_PROTOCOL,
  S_INITIAL_WINDOW_SIZE,
  S_MAX_CONCURRENT_STREAMS,
  S_MAX_HEADER_LIST_SIZE,
  settingsFrame,
} from './frames';

/** Options of one downstream HTTP/2 connection (from the HCM config). */
export interface H2ServerCodecOptions {
  /** http2_protocol_options: SETTINGS_MAX_CONCURRENT_STREAMS and window sizes. */
  readonly http2: Http2Options;
  /** max_request_headers_kb → SETTINGS_MAX_HEADER_LIST_SIZE (Envoy default 60). */
  readonly maxRequestHeadersKb: number;
  /** common_http_protocol_options.max_headers_count (Envoy default 100). */
  readonly maxHeadersCount: number;
  /** Advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441) so clients may use extended CONNECT. */
  readonly allowConnect?: boolean;
  /**
   * common_http_protocol_options.idle_timeout: with no active stream for this long the
   * connection is closed gracefully (GOAWAY). 0 or absent = disabled.
   */
  readonly idleTimeoutMs?: number;
  /** Called once when the connection is gone (after all streams closed). */
  readonly onClose?: () => void;
  /** Requests the codec answered itself (malformed head): for logs and metrics. */
  readonly onCodecError?: (report: CodecErrorReport) => void;
}

/** Build codec options from an HCM config object (the relevant subset). */
export function h2ServerOptionsFromHcm(hcm: {
  readonly http2: Http2Options;
  readonly maxRequestHeadersKb: number;
  readonly maxHeadersCount: number;
  readonly idleTimeoutMs: number;
  readonly upgradeTypes: readonly string[];
}): H2ServerCodecOptions {
  return {
    http2: hcm.http2,
    maxRequestHeadersKb: hcm.maxRequestHeadersKb,
    maxHeadersCount: hcm.maxHeadersCount,
    idleTimeoutMs: hcm.idleTimeoutMs,
    allowConnect: hcm.upgradeTypes.length > 0,
  };
}

const MAX_WINDOW = 2 ** 31 - 1;

/**
 * Which downstream HTTP/2 codec serves new connections: meshlet's own framing
 * (raw-server-session.ts) by default; node:http2 (server-codec.ts) with
 * MESHLET_H2_SERVER_CODEC=nghttp2, kept for comparison. Read per connection.
 */
export function h2ServerCodecKind(): 'meshlet' | 'nghttp2' {
  return process.env.MESHLET_H2_SERVER_CODEC === 'nghttp2' ? 'nghttp2' : 'meshlet';
}

/** Envoy's overload.premature_reset_min_stream_lifetime_seconds default (1 s). */
export const PREMATURE_RESET_MIN_LIFETIME_MS = 1_000;
/**
 * Abuse counters of downstream HTTP/2 connections, process-wide (Envoy's names in comments), for
 * the telemetry module to publish: connections closed by meshlet's own flood rules, and request
 * heads over max_request_headers_kb caught by the codec.
 */
export const h2ServerAbuseStats = {
  /** http.<prefix>.downstream_rq_too_many_premature_resets */
  tooManyPrematureResets: 0,
  /** http2.inbound_priority_frames_flood */
  inboundPriorityFramesFlood: 0,
  /** http2.header_overflow */
  headerOverflow: 0,
};

/** Envoy's http2_protocol_options.max_inbound_priority_frames_per_stream default. */
export const MAX_PRIORITY_FRAMES_PER_STREAM = 100;
/** SETTINGS + PING frames needing an answer, per second, before a connection is a flood (a client that reads every ACK). */
export const MAX_CONTROL_PER_SECOND = 2_000;
/** Envoy's overload.premature_reset_total_stream_count default. */
export const PREMATURE_RESET_TOTAL_STREAMS = 500;

/** Our first SETTINGS frame on meshlet's own framing (raw-server-session.ts). */
export function rawServerSettingsFrame(o: H2ServerCodecOptions, streamWindow: number, maxHeaderListSize: number): Buffer {
  const settings: [number, number][] = [
    [S_MAX_CONCURRENT_STREAMS, o.http2.maxConcurrentStreams],
    [S_INITIAL_WINDOW_SIZE, streamWindow],
    [S_MAX_HEADER_LIST_SIZE, maxHeaderListSize],
  ];
  if (o.allowConnect === true) settings.push([S_ENABLE_CONNECT_PROTOCOL, 1]);
  return settingsFrame(settings);
}

export function clampWindow(n: number): number {
  return Math.min(MAX_WINDOW, Math.max(65535, n));
}

const servers = new Map<string, Http2Server>();

function ignore(): void {}

/**
 * The never-listening http2.Server for one set of SETTINGS (one per distinct settings, shared by
 * every connection that uses them); its 'session' event goes to `onSession`.
 */
export function sessionServerFor(o: H2ServerCodecOptions, onSession: (session: ServerHttp2Session) => void): Http2Server {
  const maxHeaderListSize = Math.max(1024, Math.floor(o.maxRequestHeadersKb * 1024));
  const streamWindow = clampWindow(o.http2.initialStreamWindowSize);
  const allowConnect = o.allowConnect === true;
  const key = `${o.http2.maxConcurrentStreams}|${streamWindow}|${maxHeaderListSize}|${o.maxHeadersCount}|${allowConnect}`;
  let server = servers.get(key);
  if (server === undefined) {
    server = createServer({
      settings: {
        maxConcurrentStreams: o.http2.maxConcurrentStreams,
        initialWindowSize: streamWindow,
        maxHeaderListSize,
        enablePush: false,
        enableConnectProtocol: allowConnect,
      },
      // node counts pseudo-headers too; leave room for the four request pseudo-headers.
      maxHeaderListPairs: Math.max(4, o.maxHeadersCount + 4),
      // Default is 10 MB, which refuses streams under large windows and many streams.
      maxSessionMemory: 64,
    });
    server.on('session', onSession);
    server.on('sessionError', ignore);
    servers.set(key, server);
  }
  return server;
}
