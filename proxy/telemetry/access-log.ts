/**
 * Access logs (Envoy's `access_log` with the stdout, stderr and file loggers): one JSON line per
 * finished HTTP stream or TCP session, written asynchronously through sonic-boom (pino's
 * destination), never with synchronous I/O on the data path.
 *
 * Formats are compiled once when a listener is built: no format string → Envoy's default text
 * format (as Envoy; Istio's JSON encoding only when the config's `json_format` asks for it); `json_format` → the given keys, each value a format string (a value
 * that is a single numeric operator is written as a number, as Envoy does); `text_format` →
 * Envoy's command operators substituted into the text. Unknown operators print "-" and are
 * warned about once when compiled.
 *
 * Leans on dropping rather than blocking: if the sink cannot keep up, sonic-boom buffers (bounded
 * by `maxLength`) and excess lines are dropped, counted in `AccessLogSinks.droppedLines`.
 */

import pino from 'pino';
import type { AccessLogConfig } from '../config/types';
import { getHeader } from '../http/headers';
import type { StreamInfo } from '../http/stream-info';
import type { TcpSessionRecord } from '../tcp/tcp-proxy';
import { logger } from '../../common/logger';

const log = logger('access-log');

/** What a format reads: an HTTP stream or a TCP session, behind one shape. */
export interface LogContext {
  readonly http?: StreamInfo;
  readonly tcp?: TcpSessionRecord;
}

type Op = (c: LogContext) => string | number | undefined;

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function addr(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%: first upstream byte received − request sent, in ms. */
function upstreamServiceTime(i: StreamInfo): number | undefined {
  if (i.firstUpstreamRxByteMs < 0 || i.firstUpstreamTxByteMs < 0) return undefined;
  return Math.round(i.firstUpstreamRxByteMs - i.firstUpstreamTxByteMs);
}

function reqHeader(i: StreamInfo | undefined, name: string): string | undefined {
  if (!i) return undefined;
  if (name === ':method') return i.method;
  if (name === ':path') return i.path;
  if (name === ':authority' || name === 'host') return i.authority;
  if (name === 'x-request-id' && i.requestId) return i.requestId;
  if (name === 'user-agent' && i.userAgent) return i.userAgent;
  return i.requestHeaders ? getHeader(i.requestHeaders, name) : undefined;
}

/** Envoy's command operators (the ones meshlet can answer). */
const OPS: Readonly<Record<string, Op>> = {
  START_TIME: (c) => iso(c.http ? c.http.startTime : (c.tcp?.startTime ?? Date.now())),
  PROTOCOL: (c) => (c.http ? c.http.protocol : undefined),
  RESPONSE_CODE: (c) => (c.http ? c.http.responseCode : 0),
  RESPONSE_FLAGS: (c) => (c.http ? c.http.responseFlags() : c.tcp?.flags || '-'),
  RESPONSE_CODE_DETAILS: (c) => c.http?.responseCodeDetails || undefined,
  BYTES_RECEIVED: (c) => (c.http ? c.http.bytesReceived : (c.tcp?.bytesReceived ?? 0)),
  BYTES_SENT: (c) => (c.http ? c.http.bytesSent : (c.tcp?.bytesSent ?? 0)),
  DURATION: (c) => Math.round(c.http ? c.http.durationMs : (c.tcp?.durationMs ?? 0)),
  UPSTREAM_HOST: (c) => (c.http ? c.http.upstreamHost : c.tcp?.upstreamHost) || undefined,
  UPSTREAM_CLUSTER: (c) => (c.http ? c.http.clusterName : c.tcp?.cluster) || undefined,
  UPSTREAM_LOCAL_ADDRESS: (c) => c.http?.upstreamLocalAddress || undefined,
  UPSTREAM_TRANSPORT_FAILURE_REASON: (c) => c.http?.upstreamTransportFailureReason || undefined,
  UPSTREAM_PEER_URI_SAN: (c) => (c.http ? c.http.upstreamPeerPrincipal : c.tcp?.upstreamPrincipal) || undefined,
  DOWNSTREAM_REMOTE_ADDRESS: (c) => {
    const conn = c.http?.connection ?? c.tcp?.info;
    return conn ? addr(conn.remoteAddress, conn.remotePort) : undefined;
  },
  DOWNSTREAM_LOCAL_ADDRESS: (c) => {
    const conn = c.http?.connection ?? c.tcp?.info;
    if (!conn) return undefined;
    return conn.originalDst
      ? addr(conn.originalDst.address, conn.originalDst.port)
      : addr(conn.localAddress, conn.localPort);
  },
  DOWNSTREAM_PEER_URI_SAN: (c) => (c.http?.connection ?? c.tcp?.info)?.tls?.peerPrincipal,
  DOWNSTREAM_LOCAL_URI_SAN: (c) => (c.http?.connection ?? c.tcp?.info)?.tls?.localPrincipal,
  REQUESTED_SERVER_NAME: (c) => (c.http?.connection ?? c.tcp?.info)?.tls?.sni,
  ROUTE_NAME: (c) => c.http?.routeName || undefined,
  UPSTREAM_REQUEST_ATTEMPT_COUNT: (c) => c.http?.attemptCount,
  CONNECTION_ID: (c) => (c.http?.connection ?? c.tcp?.info)?.id,
};

const NUMERIC = new Set([
  'RESPONSE_CODE',
  'BYTES_RECEIVED',
  'BYTES_SENT',
  'DURATION',
  'UPSTREAM_REQUEST_ATTEMPT_COUNT',
  'CONNECTION_ID',
]);

/** Compile one command operator, e.g. `REQ(X-ENVOY-ORIGINAL-PATH?:PATH):100`. */
function compileOp(op: string, warn: (m: string) => void): { fn: Op; numeric: boolean } {
  const m = /^(REQ|RESP|TRAILER)\(([^)]*)\)(?::(\d+))?$/.exec(op);
  if (m) {
    const [main, alt] = m[2]!.split('?').map((s) => s.trim().toLowerCase());
    const max = m[3] ? Number(m[3]) : 0;
    const cut = (v: string | undefined) => (v !== undefined && max > 0 && v.length > max ? v.slice(0, max) : v);
    if (m[1] === 'REQ') {
      return { fn: (c) => cut(reqHeader(c.http, main!) ?? (alt ? reqHeader(c.http, alt) : undefined)), numeric: false };
    }
    if (m[1] === 'RESP' && main === 'x-envoy-upstream-service-time') {
      return { fn: (c) => (c.http ? upstreamServiceTime(c.http) : undefined), numeric: true };
    }
    warn(`%${op}%: response headers and trailers are not kept by meshlet; printed as "-"`);
    return { fn: () => undefined, numeric: false };
  }
  const name = op.replace(/\(.*$/, '');
  const fn = OPS[name];
  if (!fn) {
    warn(`%${op}% is not supported by meshlet; printed as "-"`);
    return { fn: () => undefined, numeric: false };
  }
  return { fn, numeric: NUMERIC.has(name) };
}

type Part = string | Op;

/** A format string compiled into literal and operator parts. */
function compileText(
  text: string,
  warn: (m: string) => void,
): { parts: Part[]; single?: { fn: Op; numeric: boolean } } {
  const parts: Part[] = [];
  const re = /%([A-Z_]+(?:\([^)]*\))?(?::\d+)?)%/g;
  let last = 0;
  let single: { fn: Op; numeric: boolean } | undefined;
  let ops = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m.index > last) parts.push(text.slice(last, m.index));
    const c = compileOp(m[1]!, warn);
    parts.push(c.fn);
    single = c;
    ops++;
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return { parts, single: ops === 1 && parts.length === 1 ? single : undefined };
}

/** `empty`: what a missing value prints as ("-", or "" with omit_empty_values). */
function render(parts: readonly Part[], c: LogContext, empty: string): string {
  let out = '';
  for (const p of parts) {
    if (typeof p === 'string') out += p;
    else {
      const v = p(c);
      out += v === undefined || v === '' ? empty : String(v);
    }
  }
  return out;
}

/**
 * Envoy's default access log format, used when an access log has no `log_format` (Envoy's
 * "Default format string"; the trailing newline is added by the writer).
 */
export const ENVOY_DEFAULT_FORMAT =
  '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ' +
  '%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ' +
  '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ' +
  '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"';

/** Compiled formatter: LogContext → one line (without the newline). */
export type Formatter = (c: LogContext) => string;

export function compileFormat(
  format: AccessLogConfig['format'],
  warn: (m: string) => void = (m) => log.warn(m),
): Formatter {
  if (format?.kind !== 'json') {
    const text = format ? format.text : ENVOY_DEFAULT_FORMAT;
    const { parts } = compileText(text.endsWith('\n') ? text.slice(0, -1) : text, warn);
    const empty = format?.omitEmptyValues ? '' : '-';
    return (c) => render(parts, c, empty);
  }
  const json = format.json;
  const omit = format.omitEmptyValues === true;
  const fields: { key: string; parts?: Part[]; single?: { fn: Op; numeric: boolean }; constant?: unknown }[] = [];
  for (const [key, v] of Object.entries(json)) {
    if (typeof v !== 'string') {
      fields.push({ key, constant: v });
      continue;
    }
    const c = compileText(v, warn);
    fields.push({ key, parts: c.parts, single: c.single });
  }
  return (c) => {
    const obj: Record<string, unknown> = {};
    for (const f of fields) {
      if (f.constant !== undefined) obj[f.key] = f.constant;
      else if (f.single) {
        const v = f.single.fn(c);
        // Envoy's json_format: a value that is one operator keeps its type; a missing one is null
        // (left out with omit_empty_values).
        if (v === undefined || v === '') {
          if (!omit) obj[f.key] = null;
        } else obj[f.key] = v;
      } else {
        const s = render(f.parts!, c, omit ? '' : '-');
        if (!(omit && s === '')) obj[f.key] = s;
      }
    }
    return JSON.stringify(obj);
  };
}

interface Sink {
  write(line: string): boolean;
  flush?(): void;
  end(): void;
}

/** Destinations shared by every access log that names the same file (or stdout/stderr). */
export class AccessLogSinks {
  private readonly sinks = new Map<string, Sink>();
  /** Lines dropped because a sink's buffer was full. */
  droppedLines = 0;

  get(sink: AccessLogConfig['sink']): Sink {
    const key = sink.kind === 'file' ? sink.path : sink.kind;
    let s = this.sinks.get(key);
    if (!s) {
      const dest = sink.kind === 'file' ? sink.path : sink.kind === 'stdout' ? 1 : 2;
      const boom = pino.destination({ dest, sync: false, mkdir: sink.kind === 'file', maxLength: 16 * 1024 * 1024 });
      boom.on('error', (err: Error) => log.warn({ err: err.message, sink: key }, 'access log sink failed'));
      boom.on('drop', () => {
        this.droppedLines++;
      });
      s = boom as unknown as Sink;
      this.sinks.set(key, s);
    }
    return s;
  }

  /** Flush and close every file (shutdown). */
  async close(): Promise<void> {
    const all = [...this.sinks.values()];
    this.sinks.clear();
    await Promise.all(
      all.map(
        (s) =>
          new Promise<void>((resolve) => {
            const boom = s as unknown as import('node:events').EventEmitter & { fd: number; end(): void };
            if (boom.fd === 1 || boom.fd === 2) {
              s.flush?.();
              resolve();
              return;
            }
            boom.once('close', () => resolve());
            boom.once('error', () => resolve());
            try {
              s.end();
            } catch {
              resolve();
            }
          }),
      ),
    );
  }
}

/** The access logs of one connection manager or TCP proxy, compiled. */
export class AccessLogger {
  private readonly entries: { format: Formatter; sink: Sink }[];

  constructor(configs: readonly AccessLogConfig[], sinks: AccessLogSinks) {
    this.entries = configs.map((c) => ({ format: compileFormat(c.format), sink: sinks.get(c.sink) }));
  }

  get enabled(): boolean {
    return this.entries.length > 0;
  }

  log(c: LogContext): void {
    for (const e of this.entries) {
      try {
        e.sink.write(`${e.format(c)}\n`);
      } catch (err) {
        // A closed sink (shutdown) or a formatter bug: the data plane never fails for a log line.
        log.warn({ err: (err as Error).message }, 'access log write failed');
      }
    }
  }
}
