/**
 * Telemetry for one proxy process (one MeshletServer): metrics (Istio + Envoy-style), access logs and tracing,
 * composed once per connection manager / TCP proxy when a listener is built, so the data path
 * gets one pre-built completion callback and (only when tracing is configured) a tracer.
 *
 * Owns the telemetry side of the process surface too: the admin paths `/stats`,
 * `/stats/prometheus` and `POST /reset_counters`, and the Istio ports served by meshlet itself —
 * 15090 `/stats/prometheus` and 15021 `/healthz/ready` — when enabled.
 *
 * Leans on doing work at build time: reporter side, workload labels, compiled access-log formats
 * and the tracer are resolved per listener; a finished stream runs a few cached lookups.
 *
 * Sees the server only through TelemetryHost (what it reads) and EnvoyStats sources (registered by
 * the composition), so it sits below the server in the layers.
 */

import type { X509Certificate } from 'node:crypto';
import http from 'node:http';
import type { AdminResponse, AdminServer } from '../admin/admin-server';
import { acceptsGzip, json, streamBody, text } from '../admin/admin-server';
import type { HcmConfig, ListenerConfig, NodeInfo, TcpProxyConfig, TracingConfig } from '../config/types';
import type { HttpTracer, StreamCompleteListener, StreamInfo } from '../http/stream-info';
import type { TcpSessionRecord } from '../tcp/tcp-proxy';
import { AccessLogger, AccessLogSinks } from './access-log';
import { HttpIstioReporter, type LocalIdentity, type ReporterOptions, reporterFor, TcpIstioReporter, workloadFromNode } from './istio';
import { DEFAULT_ISTIO_STATS, type IstioStatsConfig } from '../config/filters/istio-stats';
import { logger } from '../../common/logger';
import { MeshletMetrics } from './metrics';
import { registerEnvoyFamilies } from './envoy-families';
import { EnvoyStats } from './stats';
import { TracingService } from './tracing';

const log = logger('telemetry');

export interface TelemetryOptions {
  /** Port for Prometheus `/stats/prometheus` (Istio: 15090); undefined = not served. 0 = any. */
  readonly statsPort?: number;
  /** Port for `/healthz/ready` (Istio: 15021); undefined = not served. 0 = any. */
  readonly healthPort?: number;
  /** Address the two ports bind (default 0.0.0.0, as Istio: Prometheus and kubelet reach them). */
  readonly portsHost?: string;
  /** Tracing export interval in ms (default 1000). */
  readonly traceExportDelayMs?: number;
}

/** What telemetry reads of the process it reports on. */
export interface TelemetryHost {
  /** The bootstrap's node (workload labels, tracing resource). */
  readonly node: NodeInfo;
  /** The bootstrap's tracing provider, if any. */
  readonly tracing?: TracingConfig;
  /** The current workload certificate (leaf), for the local principal label. */
  localCertificate(): X509Certificate | undefined;
  /** A cluster's first host ("host:port"), for tracing collectors named by cluster. */
  resolveCluster(name: string): string | undefined;
  /** A cluster's metadata (Istio's `istio.services` names destination_service). */
  clusterMetadata?(name: string): Readonly<Record<string, unknown>> | undefined;
  /** Readiness for the 15021 port: undefined when ready, else the state to report. */
  readiness(): string | undefined;
  /** Embedder hooks called with every finished HTTP stream / TCP session. */
  readonly onHttpStream?: StreamCompleteListener;
  readonly onTcpSession?: (rec: TcpSessionRecord) => void;
}

/** SPIFFE ID in a certificate's URI SAN, or "". */
function spiffeOf(cert: X509Certificate | undefined): string {
  const san = cert?.subjectAltName ?? '';
  const m = /URI:(spiffe:\/\/[^,\s]+)/.exec(san);
  return m ? m[1]! : '';
}

export class Telemetry {
  readonly metrics = new MeshletMetrics();
  readonly stats: EnvoyStats;
  readonly accessLogs = new AccessLogSinks();
  readonly tracing: TracingService;
  private readonly identity: LocalIdentity;
  private statsServer: http.Server | undefined;
  private healthServer: http.Server | undefined;
  statsPort = 0;
  healthPort = 0;

  constructor(
    private readonly host: TelemetryHost,
    private readonly opts: TelemetryOptions = {},
  ) {
    this.stats = new EnvoyStats();
    this.metrics.onScrape(registerEnvoyFamilies(this.stats, this.metrics.registry));
    const workload = workloadFromNode(host.node);
    let cachedFor: unknown;
    let cached = '';
    this.identity = {
      workload,
      localPrincipal: () => {
        const leaf = host.localCertificate();
        if (leaf !== cachedFor) {
          cachedFor = leaf;
          cached = spiffeOf(leaf);
        }
        return cached;
      },
    };
    this.tracing = new TracingService({
      bootstrapProvider: host.tracing,
      node: host.node,
      metrics: this.metrics,
      resolveCluster: (name) => host.resolveCluster(name),
      scheduledDelayMs: opts.traceExportDelayMs,
    });
    this.metrics.gauge(
      'meshlet_access_log_dropped_lines',
      'Access log lines dropped because a sink could not keep up',
      [],
      (g) => {
        g.set(this.accessLogs.droppedLines);
      },
    );
  }

  /** What one HTTP connection manager reports through: completion callback and tracer. */
  forHcm(
    hcm: HcmConfig,
    listener: ListenerConfig,
  ): { onStreamComplete: StreamCompleteListener; tracer: HttpTracer | undefined } {
    const direction = hcm.trafficDirection ?? listener.trafficDirection;
    const names = [listener.name, hcm.statPrefix];
    const side = reporterFor(direction, names);
    const istio = new HttpIstioReporter(this.metrics, side, this.identity, this.reporterOptions(istioStatsOf(hcm)));
    const access = hcm.accessLog.length > 0 ? new AccessLogger(hcm.accessLog, this.accessLogs) : undefined;
    // Spans: CLIENT (egress) on outbound, SERVER (ingress) otherwise, as Envoy.
    const tracer = this.tracing.forHcm(hcm, reporterFor(direction, names, 'destination'));
    const user = this.host.onHttpStream;
    const onStreamComplete = (info: StreamInfo): void => {
      if (info.span !== undefined) info.span.end(info);
      istio.record(info);
      if (access !== undefined) access.log({ http: info });
      if (user !== undefined) user(info);
    };
    return { onStreamComplete, tracer };
  }

  /**
   * What one TCP proxy reports through: session end and progress callbacks. `istioStats` is the
   * chain's istio.stats network filter (its TCP reporting interval, reporter and overrides).
   */
  forTcp(
    tcp: TcpProxyConfig,
    listener: ListenerConfig,
    istioStats?: IstioStatsConfig,
  ): {
    onSessionEnd: (rec: TcpSessionRecord) => void;
    onSessionProgress: (rec: TcpSessionRecord) => void;
    progressIntervalMs: number;
  } {
    const side = reporterFor(listener.trafficDirection, [listener.name, tcp.statPrefix]);
    const istio = new TcpIstioReporter(this.metrics, side, this.identity, this.reporterOptions(istioStats));
    const logs = [...tcp.accessLog, ...listener.accessLog];
    const access = logs.length > 0 ? new AccessLogger(logs, this.accessLogs) : undefined;
    const user = this.host.onTcpSession;
    return {
      onSessionProgress: (rec) => istio.progress(rec),
      // Istio's default (5 s) without a stats filter too: long connections show their bytes.
      progressIntervalMs: (istioStats ?? DEFAULT_ISTIO_STATS).tcpReportingDurationMs,
      onSessionEnd: (rec) => {
        istio.closed(rec);
        if (access !== undefined) access.log({ tcp: rec });
        if (user !== undefined) user(rec);
      },
    };
  }

  private reporterOptions(stats: IstioStatsConfig | undefined): ReporterOptions {
    const host = this.host;
    return {
      ...(stats ? { stats } : {}),
      node: host.node,
      ...(host.clusterMetadata ? { clusterMetadata: (name: string) => host.clusterMetadata!(name) } : {}),
    };
  }

  /** Admin: /stats, /stats/prometheus, POST /reset_counters. */
  registerAdmin(admin: AdminServer): void {
    admin.route('GET', '/stats', 'Envoy-style stats (?format=json|prometheus, ?filter=regex, ?usedonly)', async (q) => {
      const format = q.get('format');
      if (format === 'prometheus') return this.prometheusResponse();
      let filter: RegExp | undefined;
      const f = q.get('filter');
      if (f) {
        try {
          filter = new RegExp(f);
        } catch (err) {
          return text(`invalid filter regex: ${(err as Error).message}`, 400);
        }
      }
      if (format === 'json') return json(this.stats.json(filter));
      return text(this.stats.text(filter, q.has('usedonly')));
    });
    admin.route('GET', '/stats/prometheus', 'all metrics in Prometheus text format', () => this.prometheusResponse());
    admin.route('POST', '/reset_counters', 'reset every counter to zero (gauges stay)', () => {
      this.resetCounters();
      return text('OK');
    });
  }

  /** Envoy's reset_counters: Istio counters and histograms restart, Envoy counters rebase. */
  resetCounters(): void {
    this.stats.resetCounters();
    this.metrics.registry.resetMetrics();
  }

  private prometheusResponse(): AdminResponse {
    return { status: 200, contentType: this.metrics.contentType, body: '', stream: (write) => this.metrics.prometheusStream(write) };
  }

  /** Start the Istio ports (15090 metrics, 15021 readiness) that are enabled. */
  async listen(): Promise<void> {
    const host = this.opts.portsHost ?? '0.0.0.0';
    if (this.opts.statsPort !== undefined) {
      this.statsServer = http.createServer((req, res) => {
        const path = (req.url ?? '/').split('?')[0];
        if (req.method !== 'GET' || (path !== '/stats/prometheus' && path !== '/metrics')) {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /stats/prometheus is served here\n');
          return;
        }
        const gzip = acceptsGzip(req.headers['accept-encoding']);
        res.writeHead(200, { 'content-type': this.metrics.contentType, vary: 'Accept-Encoding', ...(gzip ? { 'content-encoding': 'gzip' } : {}) });
        void streamBody(res, (write) => this.metrics.prometheusStream(write), { gzip });
      });
      this.statsPort = await listenOn(this.statsServer, this.opts.statsPort, host);
    }
    if (this.opts.healthPort !== undefined) {
      this.healthServer = http.createServer((req, res) => {
        const path = (req.url ?? '/').split('?')[0];
        if (path !== '/healthz/ready') {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('only /healthz/ready is served here\n');
          return;
        }
        const notReady = this.host.readiness();
        res.writeHead(notReady === undefined ? 200 : 503, { 'content-type': 'text/plain' }).end(notReady === undefined ? '' : `${notReady}\n`);
      });
      this.healthPort = await listenOn(this.healthServer, this.opts.healthPort, host);
    }
    if (this.statsServer || this.healthServer) {
      log.info(
        { statsPort: this.statsPort || undefined, healthPort: this.healthPort || undefined },
        'telemetry ports listening',
      );
    }
  }

  /** Stop the ports, flush traces and access logs. */
  async close(): Promise<void> {
    await Promise.all([closeServer(this.statsServer), closeServer(this.healthServer)]);
    this.statsServer = undefined;
    this.healthServer = undefined;
    await this.tracing.close();
    await this.accessLogs.close();
  }
}

/** The HTTP istio.stats filter of a connection manager (native, TypedStruct or Wasm form), if any. */
function istioStatsOf(hcm: HcmConfig): IstioStatsConfig | undefined {
  for (const f of hcm.httpFilters) {
    const c = f.config as { kind?: unknown } | undefined;
    if (!f.disabled && c !== undefined && c !== null && c.kind === 'istio_stats') return c as IstioStatsConfig;
  }
  return undefined;
}

function listenOn(server: http.Server, port: number, host: string): Promise<number> {
  server.keepAliveTimeout = 5_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      const a = server.address();
      resolve(a && typeof a === 'object' ? a.port : 0);
    });
  });
}

function closeServer(s: http.Server | undefined): Promise<void> {
  if (!s) return Promise.resolve();
  s.closeAllConnections();
  return new Promise((r) => s.close(() => r()));
}
