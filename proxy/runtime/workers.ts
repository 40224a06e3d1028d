/**
 * `meshlet proxy --concurrency N`: N worker processes (node:cluster) share the listening sockets,
 * like Envoy's worker threads, so meshlet can use more than one core. Default 1 = no extra process.
 *
 * The primary does no proxying. It owns:
 * - the workers: forks them, re-forks one that dies unexpectedly, drains them all on SIGTERM
 *   (each worker runs the single-process graceful shutdown) and exits once all have exited;
 * - the one xDS stream (runtime/xds-relay.ts): ACK/NACK decided here, accepted resources relayed
 *   to every worker as proto3 JSON;
 * - admin on the bootstrap's admin address, built from the workers' private admins (each worker
 *   binds its own on 127.0.0.1:0, exclusive): /ready is 200 only when every worker is ready;
 *   /stats and /stats/prometheus sum every numeric series across workers (counters and histogram
 *   buckets add up; gauges such as active connections too); POSTs go to every worker; any other
 *   GET (/config_dump, /clusters, /listeners, /certs, …) is answered by the first live worker —
 *   every worker holds the same configuration. GET /workers lists pid, id and admin port.
 * - Istio's 15090 (summed Prometheus) and 15021 (all workers ready) when enabled.
 *
 * Leans towards the kernel spreading connections (cluster.SCHED_NONE: every worker accepts on
 * the shared socket) because the round-robin primary would hop every accepted connection through
 * itself; NODE_CLUSTER_SCHED_POLICY=rr selects Node's round-robin instead (bench/PROFILE.md).
 */
import cluster, { type Worker } from 'node:cluster';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Address, Bootstrap } from '../config/types';
import type { DecodeContext } from '../config/envoy/context';
import { hasDynamicSources } from '../../common/config-types';
import { logger } from '../../common/logger';
import { isRelayMessage, type RelayMessage, XdsRelay } from './xds-relay';

const log = logger('workers');

/** Worker → primary: its private admin port once it is serving. */
interface AdminMessage {
  readonly meshlet: 'admin';
  readonly port: number;
}

/** Primary → worker: begin the graceful shutdown (same as a first SIGTERM). */
export const SHUTDOWN_MESSAGE = { meshlet: 'shutdown' } as const;

export function isShutdownMessage(m: unknown): boolean {
  return typeof m === 'object' && m !== null && (m as { meshlet?: unknown }).meshlet === 'shutdown';
}

/** Called in a worker once its server is up: tells the primary where its admin listens. */
export function announceWorkerAdmin(port: number): void {
  process.send?.({ meshlet: 'admin', port } satisfies AdminMessage);
}

/** The bootstrap a worker runs: admin moved to a private loopback port (the primary owns the real one). */
export function workerBootstrap(b: Bootstrap): Bootstrap {
  return { ...b, admin: { ...(b.admin ?? {}), address: { kind: 'socket', host: '127.0.0.1', port: 0 } as Address } };
}

export interface PrimaryOptions {
  readonly concurrency: number;
  readonly bootstrap: Bootstrap;
  readonly decodeContext: DecodeContext;
  readonly statsPort?: number;
  readonly healthPort?: number;
}

interface WorkerSlot {
  readonly id: number;
  worker: Worker;
  adminPort: number;
  /** Whether any incarnation of this slot ever came up (a start-up failure is fatal, a crash is not). */
  everStarted: boolean;
}

type Fetched = { status: number; body: string; contentType: string };

function fetchAdmin(port: number, method: string, path: string, body?: Buffer): Promise<Fetched> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: false, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 502, body: Buffer.concat(chunks).toString(), contentType: String(res.headers['content-type'] ?? 'text/plain') }),
      );
      res.on('error', () => resolve({ status: 502, body: 'worker admin answer cut short\n', contentType: 'text/plain' }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => resolve({ status: 503, body: `worker admin unreachable: ${e.message}\n`, contentType: 'text/plain' }));
    req.end(body);
  });
}

/**
 * Gauges every worker reports identically (the same config or the same process-wide state): the
 * aggregate is their maximum, not their sum (Envoy shows them once per process).
 */
const SAME_IN_EVERY_WORKER = /(membership_healthy|membership_total|connected_state|server[._]uptime|server[._]state|server[._]live|active_clusters|total_listeners_active)$/;

/**
 * Sum numeric series across workers: "name: 12" (/stats) or "name{labels} 12" (Prometheus);
 * the gauges in SAME_IN_EVERY_WORKER take the maximum instead. Lines that are not a number
 * (comments, HELP/TYPE, text values) come from the first worker.
 */
export function sumSeries(bodies: readonly string[], prometheus: boolean): string {
  const order: string[] = [];
  const sums = new Map<string, number | string>();
  for (const body of bodies) {
    for (const line of body.split('\n')) {
      if (line === '') continue;
      const cut = prometheus ? line.lastIndexOf(' ') : line.indexOf(': ');
      const key = cut > 0 && !line.startsWith('#') ? line.slice(0, cut) : line;
      const raw = cut > 0 ? line.slice(cut + (prometheus ? 1 : 2)) : '';
      const n = key !== line && raw !== '' && /^-?[0-9.eE+-]+$/.test(raw) ? Number(raw) : Number.NaN;
      const prev = sums.get(key);
      if (prev === undefined) {
        order.push(key);
        sums.set(key, Number.isNaN(n) ? line : n);
      } else if (typeof prev === 'number' && !Number.isNaN(n)) {
        const name = prometheus ? key.split('{')[0]! : key;
        sums.set(key, SAME_IN_EVERY_WORKER.test(name) ? Math.max(prev, n) : prev + n);
      }
    }
  }
  return `${order
    .map((k) => {
      const v = sums.get(k)!;
      return typeof v === 'string' ? v : `${k}${prometheus ? ' ' : ': '}${v}`;
    })
    .join('\n')}\n`;
}

/** The primary: fork workers, relay xDS, serve aggregated admin. Resolves with the exit code. */
export async function runPrimary(o: PrimaryOptions): Promise<number> {
  if (process.env.NODE_CLUSTER_SCHED_POLICY === undefined) cluster.schedulingPolicy = cluster.SCHED_NONE;
  const slots: WorkerSlot[] = [];
  let stopping = false;
  let failed = false;
  const broadcast = (m: RelayMessage | typeof SHUTDOWN_MESSAGE): void => {
    for (const s of slots) if (s.worker.isConnected()) s.worker.send(m);
  };
  const relay = hasDynamicSources(o.bootstrap.dynamicResources) ? new XdsRelay(o.bootstrap, o.decodeContext, broadcast) : undefined;

  let resolveExit: (code: number) => void = () => {};
  const exited = new Promise<number>((r) => {
    resolveExit = r;
  });

  const fork = (id: number): WorkerSlot => {
    const worker = cluster.fork({ MESHLET_WORKER_ID: String(id) });
    const slot: WorkerSlot = slots[id] ?? { id, worker, adminPort: 0, everStarted: false };
    slot.worker = worker;
    slot.adminPort = 0;
    slots[id] = slot;
    worker.on('message', (m: unknown) => {
      if (isRelayMessage(m) && m.meshlet === 'xds-hello' && relay) worker.send(relay.replay());
      else if (typeof m === 'object' && m !== null && (m as AdminMessage).meshlet === 'admin') {
        slot.adminPort = (m as AdminMessage).port;
        slot.everStarted = true;
      }
    });
    worker.on('exit', (code, signal) => {
      if (stopping) {
        if (slots.every((s) => s.worker.isDead())) resolveExit(failed ? 1 : 0);
        return;
      }
      if (!slot.everStarted) {
        // Like a single process whose listeners cannot bind: exit 1 (the worker logged why).
        log.error({ worker: id, code, signal }, 'worker failed to start; stopping');
        failed = true;
        stop();
        return;
      }
      log.error({ worker: id, pid: worker.process.pid, code, signal }, 'worker exited unexpectedly; starting a new one');
      setTimeout(() => {
        if (!stopping) fork(id);
      }, 250).unref();
    });
    return slot;
  };
  for (let i = 0; i < o.concurrency; i++) fork(i);
  relay?.start();
  log.info({ workers: o.concurrency, pid: process.pid, policy: cluster.schedulingPolicy === cluster.SCHED_RR ? 'rr' : 'none' }, 'primary started');

  const live = (): WorkerSlot[] => slots.filter((s) => s.adminPort > 0 && !s.worker.isDead());
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    for (const s of slots) {
      if (s.worker.isDead()) continue;
      // A started worker drains on the IPC request; one still starting has no drain to do yet.
      if (s.adminPort > 0 && s.worker.isConnected()) s.worker.send(SHUTDOWN_MESSAGE);
      else s.worker.process.kill('SIGTERM');
    }
    if (slots.every((s) => s.worker.isDead())) resolveExit(failed ? 1 : 0);
  };

  const ready = async (): Promise<Fetched> => {
    const ls = live();
    if (ls.length < o.concurrency) return { status: 503, body: `PRE_INITIALIZING (${ls.length}/${o.concurrency} workers up)\n`, contentType: 'text/plain' };
    const answers = await Promise.all(ls.map((s) => fetchAdmin(s.adminPort, 'GET', '/ready')));
    return answers.find((a) => a.status !== 200) ?? answers[0]!;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '/';
    const path = url.split('?')[0]!;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length > 0 ? Buffer.concat(chunks) : undefined;
    let out: Fetched;
    const ls = live();
    if (path === '/workers' && req.method === 'GET') {
      out = {
        status: 200,
        contentType: 'application/json',
        body: `${JSON.stringify({ primary: process.pid, workers: slots.map((s) => ({ id: s.id, pid: s.worker.process.pid, admin_port: s.adminPort, alive: !s.worker.isDead() })) }, null, 2)}\n`,
      };
    } else if (path === '/ready' && (req.method === 'GET' || req.method === 'HEAD')) out = await ready();
    else if (ls.length === 0) out = { status: 503, body: 'no worker is serving admin yet\n', contentType: 'text/plain' };
    else if ((path === '/stats' || path === '/stats/prometheus') && req.method === 'GET' && !url.includes('format=json')) {
      const answers = await Promise.all(ls.map((s) => fetchAdmin(s.adminPort, 'GET', url)));
      const bad = answers.find((a) => a.status !== 200);
      out = bad ?? { status: 200, contentType: answers[0]!.contentType, body: sumSeries(answers.map((a) => a.body), path === '/stats/prometheus') };
    } else if (req.method === 'POST') {
      if (path === '/quitquitquit') stopping = true;
      const answers = await Promise.all(ls.map((s) => fetchAdmin(s.adminPort, 'POST', url, body)));
      out = answers.find((a) => a.status >= 300) ?? answers[0]!;
    } else out = await fetchAdmin(ls[0]!.adminPort, req.method ?? 'GET', url, body);
    res.writeHead(out.status, { 'content-type': out.contentType, 'cache-control': 'no-cache, max-age=0' });
    res.end(req.method === 'HEAD' ? undefined : out.body);
  };
  const servers: http.Server[] = [];
  const serve = async (address: Address | undefined, filter?: (path: string) => boolean): Promise<void> => {
    if (!address) return;
    const server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]!;
      if (filter && !filter(path)) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not served here\n');
        return;
      }
      if (path === '/healthz/ready') req.url = '/ready';
      if (path === '/metrics') req.url = '/stats/prometheus';
      handle(req, res).catch((e: Error) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`${e.message}\n`);
      });
    });
    servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (address.kind === 'pipe') server.listen(address.path, resolve);
      else server.listen(address.port, address.host, resolve);
    });
  };
  try {
    await serve(o.bootstrap.admin?.address);
    if (o.statsPort !== undefined) await serve({ kind: 'socket', host: '0.0.0.0', port: o.statsPort } as Address, (p) => p === '/stats/prometheus' || p === '/metrics');
    if (o.healthPort !== undefined) await serve({ kind: 'socket', host: '0.0.0.0', port: o.healthPort } as Address, (p) => p === '/healthz/ready');
  } catch (e) {
    log.error({ err: (e as Error).message }, 'primary admin could not listen');
    failed = true;
    stop();
  }

  let signalled = false;
  const onSignal = (sig: string): void => {
    if (signalled) {
      log.warn({ signal: sig }, 'second signal: stopping workers now');
      for (const s of slots) s.worker.process.kill('SIGKILL');
      process.exit(1);
    }
    signalled = true;
    log.info({ signal: sig }, 'shutting down: draining all workers');
    stop();
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));

  const code = await exited;
  relay?.close();
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  log.info('all workers exited');
  return code;
}
