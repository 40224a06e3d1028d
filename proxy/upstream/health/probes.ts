/**
 * The three active health probes, each one attempt with one verdict: TCP (connect, optionally
 * send a payload and find the expected payloads in order), HTTP (GET `path` with Host = the
 * configured host or the cluster name and `user-agent: Envoy/HC`; healthy when the status is in
 * `expected_statuses`), and gRPC (`grpc.health.v1.Health/Check` through @grpc/grpc-js; healthy
 * only on SERVING).
 *
 * TCP and HTTP probes dial through the cluster's transport socket factory, so a cluster with an
 * UpstreamTlsContext is probed over the same mTLS its traffic uses (as Envoy does). gRPC probes
 * use a grpc-js channel per host in plaintext: a TLS cluster's gRPC check is not supported yet.
 *
 * Leans towards short-lived, self-cleaning attempts: every probe owns its socket and timer and
 * reports exactly once; nothing is reused between checks (Envoy's reuse_connection is ignored).
 */
import http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';
import type * as protobuf from 'protobufjs';
import type { HealthCheckConfig } from '../../config/types';
import type { Host } from '../host';
import { grpcChannelSecurity } from '../grpc-security';
import type { TransportSocketFactory } from '../types';

/**
 * One probe's verdict. `active` marks a failure where the host answered and the answer was wrong
 * (unexpected HTTP status, NOT_SERVING, a gRPC error status): Envoy's "active" failure type, which
 * marks a healthy host unhealthy at once. Other failures (connect, reset, timeout, payload not
 * received) are "network" failures and count towards unhealthy_threshold.
 */
export type ProbeCallback = (healthy: boolean, detail: string, active?: boolean) => void;

type TcpCheck = Extract<HealthCheckConfig['check'], { kind: 'tcp' }>;
type HttpCheck = Extract<HealthCheckConfig['check'], { kind: 'http' }>;
type GrpcCheck = Extract<HealthCheckConfig['check'], { kind: 'grpc' }>;

/** Wraps a callback so that only the first verdict counts, and the timeout fires one. */
function once(cb: ProbeCallback, timeoutMs: number, onTimeout: () => void): ProbeCallback & { timer: NodeJS.Timeout } {
  let done = false;
  const f = ((healthy: boolean, detail: string, active?: boolean) => {
    if (done) return;
    done = true;
    clearTimeout(f.timer);
    cb(healthy, detail, active);
  }) as ProbeCallback & { timer: NodeJS.Timeout };
  f.timer = setTimeout(() => {
    onTimeout();
    f(false, `timeout after ${timeoutMs}ms`);
  }, timeoutMs);
  return f;
}

/** Whether `needles` occur in `hay` in order (Envoy's "fuzzy" receive matching). */
export function containsInOrder(hay: Buffer, needles: readonly Buffer[]): boolean {
  let from = 0;
  for (const n of needles) {
    const i = hay.indexOf(n, from);
    if (i < 0) return false;
    from = i + n.length;
  }
  return true;
}

export function probeTcp(
  transport: TransportSocketFactory,
  host: Host,
  check: TcpCheck,
  timeoutMs: number,
  cb: ProbeCallback,
): void {
  let socket: import('node:net').Socket | undefined;
  const done = once(cb, timeoutMs, () => socket?.destroy());
  transport.connect(host, { timeoutMs }, (err, conn) => {
    if (err || !conn) {
      done(false, err?.detail ?? 'connect failed');
      return;
    }
    socket = conn.socket;
    const s = conn.socket;
    s.on('error', (e) => done(false, e.message));
    if (check.receive.length === 0) {
      if (check.send) s.write(check.send);
      s.end();
      s.destroy();
      done(true, 'connected');
      return;
    }
    let got: Buffer = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      got = got.length === 0 ? d : Buffer.concat([got, d]);
      if (containsInOrder(got, check.receive)) {
        s.destroy();
        done(true, 'expected payload received');
      } else if (got.length > 64 * 1024) {
        s.destroy();
        done(false, 'expected payload not found');
      }
    });
    s.on('end', () => {
      s.destroy();
      done(false, 'connection closed before the expected payload');
    });
    if (check.send) s.write(check.send);
  });
}

function statusExpected(status: number, ranges: HttpCheck['expectedStatuses']): boolean {
  for (const r of ranges) if (status >= r.start && status < r.end) return true;
  return false;
}

const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})/;

export function probeHttp(
  transport: TransportSocketFactory,
  host: Host,
  check: HttpCheck,
  clusterName: string,
  timeoutMs: number,
  cb: ProbeCallback,
): void {
  let cleanup: (() => void) | undefined;
  const done = once(cb, timeoutMs, () => cleanup?.());
  const authority = check.host !== '' ? check.host : clusterName;
  transport.connect(host, { timeoutMs, alpn: check.useHttp2 ? ['h2'] : ['http/1.1'] }, (err, conn) => {
    if (err || !conn) {
      done(false, err?.detail ?? 'connect failed');
      return;
    }
    const s = conn.socket;
    if (check.useHttp2) {
      const session = http2.connect(`http://${authority}`, { createConnection: () => s });
      cleanup = () => session.destroy();
      session.on('error', (e) => {
        session.destroy();
        done(false, e.message);
      });
      const req = session.request({
        ':method': 'GET',
        ':path': check.path,
        ':authority': authority,
        'user-agent': 'Envoy/HC',
      });
      req.on('response', (h) => {
        const status = Number(h[':status']);
        session.destroy();
        done(statusExpected(status, check.expectedStatuses), `status ${status}`, true);
      });
      req.on('error', (e) => {
        session.destroy();
        done(false, e.message);
      });
      req.end();
      return;
    }
    cleanup = () => s.destroy();
    let head = '';
    s.setEncoding('latin1');
    s.on('error', (e) => done(false, e.message));
    s.on('data', (d: string) => {
      head += d;
      const eol = head.indexOf('\r\n');
      if (eol < 0) {
        if (head.length > 8192) {
          s.destroy();
          done(false, 'malformed response');
        }
        return;
      }
      s.destroy();
      const m = STATUS_LINE.exec(head.slice(0, eol));
      if (!m) done(false, 'malformed status line');
      else {
        const status = Number(m[1]);
        done(statusExpected(status, check.expectedStatuses), `status ${status}`, true);
      }
    });
    s.on('end', () => {
      s.destroy();
      done(false, 'connection closed before a response');
    });
    s.write(`GET ${check.path} HTTP/1.1\r\nhost: ${authority}\r\nuser-agent: Envoy/HC\r\nconnection: close\r\n\r\n`);
  });
}

// @grpc/grpc-js and protobufjs load with the first gRPC health check, not with the cluster manager.
let grpcMod: typeof grpc | undefined;
let pbMod: typeof protobuf | undefined;
const grpcLib = (): typeof grpc => (grpcMod ??= require('@grpc/grpc-js') as typeof grpc);
const pbLib = (): typeof protobuf => (pbMod ??= require('protobufjs') as typeof protobuf);

// grpc.health.v1: HealthCheckRequest { string service = 1; }  HealthCheckResponse { ServingStatus status = 1; }
const SERVING = 1;

export function encodeHealthCheckRequest(service: string): Buffer {
  const w = pbLib().Writer.create();
  if (service !== '') w.uint32(10).string(service);
  return Buffer.from(w.finish());
}

export function decodeHealthCheckResponse(b: Buffer): number {
  const r = pbLib().Reader.create(b);
  let status = 0;
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 1 && (tag & 7) === 0) status = r.int32();
    else r.skipType(tag & 7);
  }
  return status;
}

/**
 * gRPC probes: one grpc-js client per host (and TLS context: a rotation makes a new one), secured
 * by the cluster's transport socket like its other connections, closed when the host goes away
 * or checking stops.
 */
export class GrpcProber {
  private readonly clients = new Map<Host, { client: grpc.Client; tag: string }>();

  probe(host: Host, check: GrpcCheck, timeoutMs: number, cb: ProbeCallback, transport?: TransportSocketFactory): void {
    const sec = transport !== undefined ? grpcChannelSecurity(transport) : undefined;
    const tag = sec?.tag ?? 'plain';
    let entry = this.clients.get(host);
    if (entry !== undefined && entry.tag !== tag) {
      entry.client.close();
      entry = undefined;
    }
    if (entry === undefined) {
      const target =
        host.address.kind === 'pipe' ? `unix:${host.address.path}` : `${host.connectAddress ?? host.host}:${host.port}`;
      const options: grpc.ChannelOptions = { ...sec?.options, ...(check.authority ? { 'grpc.default_authority': check.authority } : {}) };
      entry = { client: new (grpcLib().Client)(target, sec?.credentials ?? grpcLib().credentials.createInsecure(), options), tag };
      this.clients.set(host, entry);
    }
    const client = entry.client;
    const done = once(cb, timeoutMs + 50, () => {});
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      encodeHealthCheckRequest,
      decodeHealthCheckResponse,
      check.serviceName,
      new (grpcLib().Metadata)(),
      { deadline: Date.now() + timeoutMs },
      (err, status) => {
        if (err) {
          // UNAVAILABLE / DEADLINE_EXCEEDED are transport-level; any other status is the server's answer.
          const network = err.code === grpcLib().status.UNAVAILABLE || err.code === grpcLib().status.DEADLINE_EXCEEDED;
          done(false, `grpc status ${err.code}: ${err.details}`, !network);
        } else done(status === SERVING, `serving status ${status}`, true);
      },
    );
  }

  forget(host: Host): void {
    this.clients.get(host)?.client.close();
    this.clients.delete(host);
  }

  close(): void {
    for (const c of this.clients.values()) c.client.close();
    this.clients.clear();
  }
}
