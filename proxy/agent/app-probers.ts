/**
 * The application probes pilot-agent runs for the kubelet once the injector has rewritten them
 * to the agent port: `ISTIO_KUBE_APP_PROBERS` maps each `/app-health/<container>/<livez|readyz|
 * startupz>` path to the app's original probe (`httpGet`, `tcpSocket` or `grpc`, with
 * `timeoutSeconds`). The probe is made from inside the pod, to the app on loopback, so it is
 * never captured by the sidecar's mTLS. The answer maps as Istio's does: an HTTP probe passes the
 * app's status through (so 2xx/3xx pass, anything else fails), TCP and gRPC give 200 or 500.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type * as grpc from '@grpc/grpc-js';

export interface HttpGetProbe {
  readonly path?: string;
  readonly port: number | string;
  readonly host?: string;
  readonly scheme?: string;
  readonly httpHeaders?: readonly { readonly name: string; readonly value: string }[];
}

/** One entry of ISTIO_KUBE_APP_PROBERS (Istio's Prober). */
export interface AppProber {
  readonly httpGet?: HttpGetProbe;
  readonly tcpSocket?: { readonly port: number | string; readonly host?: string };
  readonly grpc?: { readonly port: number; readonly service?: string | null };
  readonly timeoutSeconds?: number;
}

export type AppProbers = ReadonlyMap<string, AppProber>;

/** Parses ISTIO_KUBE_APP_PROBERS; throws with the reason on malformed input. */
export function parseAppProbers(json: string | undefined): AppProbers {
  const out = new Map<string, AppProber>();
  if (!json) return out;
  const raw = JSON.parse(json) as unknown;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('ISTIO_KUBE_APP_PROBERS must be a JSON object');
  for (const [path, p] of Object.entries(raw as Record<string, unknown>)) {
    if (!path.startsWith('/app-health/')) throw new Error(`ISTIO_KUBE_APP_PROBERS: ${JSON.stringify(path)} is not an /app-health/ path`);
    const pr = p as AppProber;
    const kinds = [pr.httpGet, pr.tcpSocket, pr.grpc].filter((x) => x !== undefined).length;
    if (kinds !== 1) throw new Error(`ISTIO_KUBE_APP_PROBERS ${path}: exactly one of httpGet, tcpSocket, grpc is required`);
    out.set(path, pr);
  }
  return out;
}

function portOf(p: number | string): number {
  const n = typeof p === 'number' ? p : Number(p);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`named or invalid probe port ${JSON.stringify(p)}`);
  return n;
}

/** Runs one probe; resolves the HTTP status the agent answers with. Never rejects. */
export function runProbe(p: AppProber, host: string, grpcLib: () => typeof grpc): Promise<number> {
  const timeoutMs = Math.max(1, p.timeoutSeconds ?? 1) * 1000;
  try {
    if (p.httpGet) return httpProbe(p.httpGet, host, timeoutMs);
    if (p.tcpSocket) return tcpProbe(p.tcpSocket.host || host, portOf(p.tcpSocket.port), timeoutMs);
    if (p.grpc) return grpcProbe(grpcLib(), host, portOf(p.grpc.port), p.grpc.service ?? '', timeoutMs);
  } catch {
    return Promise.resolve(500);
  }
  return Promise.resolve(500);
}

function httpProbe(g: HttpGetProbe, host: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const secure = (g.scheme ?? 'HTTP').toUpperCase() === 'HTTPS';
    const headers: Record<string, string> = { 'user-agent': 'kube-probe/meshlet' };
    for (const h of g.httpHeaders ?? []) headers[h.name.toLowerCase()] = h.value;
    const opts = { host: g.host || host, port: portOf(g.port), path: g.path || '/', headers, agent: false, timeout: timeoutMs };
    // Like the kubelet, an HTTPS probe does not verify the app's certificate.
    const req = secure ? https.get({ ...opts, rejectUnauthorized: false }) : http.get(opts);
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 500);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(500));
  });
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (code: number) => {
      clearTimeout(t);
      s.destroy();
      resolve(code);
    };
    const t = setTimeout(() => done(500), timeoutMs);
    s.on('connect', () => done(200));
    s.on('error', () => done(500));
  });
}

// grpc.health.v1.HealthCheckRequest { string service = 1 } / HealthCheckResponse { ServingStatus status = 1 }.
function encodeRequest(service: string): Buffer {
  const s = Buffer.from(service, 'utf8');
  if (s.length === 0) return Buffer.alloc(0);
  const len: number[] = [];
  for (let n = s.length; ; n >>>= 7) {
    if (n < 0x80) {
      len.push(n);
      break;
    }
    len.push((n & 0x7f) | 0x80);
  }
  return Buffer.concat([Buffer.from([0x0a, ...len]), s]);
}

function decodeStatus(b: Buffer): number {
  return b.length >= 2 && b[0] === 0x08 ? b[1]! : 0;
}

function grpcProbe(lib: typeof grpc, host: string, port: number, service: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const client = new lib.Client(`${host.includes(':') ? `[${host}]` : host}:${port}`, lib.credentials.createInsecure());
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      encodeRequest,
      decodeStatus,
      service,
      new lib.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err, status) => {
        client.close();
        resolve(!err && status === 1 ? 200 : 500);
      },
    );
  });
}
