/**
 * meshlet's inspection endpoints (no Envoy equivalent; `meshlet proxy-config` and the overview
 * page read them): GET /explain (a request's decision path, explain.ts), GET /secrets
 * (certificate facts per secret, never key material) and GET /overview (listeners, clusters with
 * their traffic, endpoint health, certificates, xDS state; HTML for a browser, JSON otherwise).
 *
 * Read-only: nothing here counts stats, opens connections or changes state.
 */
import type { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { InspectTarget } from './inspect-target';
import { VERSION } from '../../common/version';
import { type AdminServer, json, text } from './admin-server';
import { explainRequest } from './explain';
import { overviewHtml, wantsHtml } from './home-page';

export interface CertFacts {
  secret: string;
  type: 'Cert Chain' | 'CA';
  status: 'ACTIVE' | 'WARMING';
  spiffeId?: string;
  subject?: string;
  issuer?: string;
  serialNumber?: string;
  notBefore?: string;
  notAfter?: string;
  secondsToExpiry?: number;
  /** The chain ends at a trusted root in the store (identity secrets). */
  valid?: boolean;
}

function certFacts(secret: string, type: CertFacts['type'], x: X509Certificate, now: number): CertFacts {
  const spiffe = /URI:(spiffe:\/\/[^,\s]+)/.exec(x.subjectAltName ?? '')?.[1];
  const notAfter = Date.parse(x.validTo);
  return {
    secret,
    type,
    status: 'ACTIVE',
    ...(spiffe ? { spiffeId: spiffe } : {}),
    subject: (x.subject ?? '').replace(/\n/g, ', '),
    issuer: (x.issuer ?? '').replace(/\n/g, ', '),
    serialNumber: x.serialNumber.toLowerCase(),
    notBefore: new Date(Date.parse(x.validFrom)).toISOString(),
    notAfter: new Date(notAfter).toISOString(),
    secondsToExpiry: Math.floor((notAfter - now) / 1000),
  };
}

/** Every secret the proxy holds or waits for, one row per certificate. */
export function secretFacts(server: InspectTarget): CertFacts[] {
  const now = Date.now();
  const out: CertFacts[] = [];
  const names = new Set(server.certs.names());
  for (const name of [...names].sort()) {
    const s = server.certs.get(name);
    if (!s) continue;
    if (s.kind === 'identity') out.push({ ...certFacts(name, 'Cert Chain', s.chain[0]!, now), valid: s.verified });
    else for (const r of s.roots) out.push(certFacts(name, 'CA', r, now));
  }
  // Secrets the configuration names but that have not arrived (SDS still warming).
  const snap = server.dynamic?.client.snapshot();
  for (const t of snap?.types ?? []) {
    if (!t.type_url.endsWith('.Secret')) continue;
    for (const r of t.resources) if (!names.has(r.name)) out.push({ secret: r.name, type: 'Cert Chain', status: 'WARMING' });
  }
  return out;
}

/** histogram_quantile over cumulative buckets (upper bounds ascending, +Inf last). */
export function quantile(q: number, bounds: readonly number[], cumulative: readonly number[]): number | undefined {
  const total = cumulative[cumulative.length - 1] ?? 0;
  if (total === 0) return undefined;
  const rank = q * total;
  for (let i = 0; i < cumulative.length; i++) {
    if (cumulative[i]! >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1];
      const lo = i === 0 ? 0 : bounds[i - 1]!;
      const below = i === 0 ? 0 : cumulative[i - 1]!;
      const inBucket = cumulative[i]! - below;
      return inBucket === 0 ? bounds[i] : lo + ((bounds[i]! - lo) * (rank - below)) / inBucket;
    }
  }
  return undefined;
}

/** p50/p99 of istio_request_duration_milliseconds per destination_service (both reporters). */
function latencyByService(server: InspectTarget): { service: string; count: number; p50?: number; p99?: number }[] {
  const fam = server.telemetry.metrics.requestDuration;
  const exported = fam.getForPromString();
  const bounds = fam.buckets;
  const by = new Map<string, number[]>();
  for (const v of exported.values) {
    if (v.metricName !== `${fam.name}_bucket`) continue;
    const svc = v.sharedLabels?.destination_service ?? 'unknown';
    let acc = by.get(svc);
    if (!acc) {
      acc = new Array<number>(bounds.length + 1).fill(0);
      by.set(svc, acc);
    }
    const le = v.labels.le;
    const i = le === '+Inf' ? bounds.length : bounds.indexOf(Number(le));
    if (i >= 0) acc[i]! += v.value;
  }
  return [...by].map(([service, cum]) => ({
    service,
    count: cum[cum.length - 1]!,
    p50: round(quantile(0.5, bounds, cum)),
    p99: round(quantile(0.99, bounds, cum)),
  }));
}

function round(v: number | undefined): number | undefined {
  return v === undefined ? undefined : Math.round(v * 100) / 100;
}

/** The service a cluster's requests are labelled with (Istio cluster names carry the FQDN). */
function serviceOfCluster(name: string): string {
  return name.startsWith('outbound|') || name.startsWith('inbound|') ? name.slice(name.lastIndexOf('|') + 1) : name;
}

/** Everything the overview page shows, from the running objects and the same stats as /stats. */
export function overview(server: InspectTarget): Record<string, unknown> {
  const stats = new Map<string, Map<string, number>>();
  for (const e of server.telemetry.stats.collect()) {
    if (e.scope !== 'cluster' || !e.tag || !e.stat) continue;
    let m = stats.get(e.tag);
    if (!m) stats.set(e.tag, (m = new Map()));
    m.set(e.stat, e.value);
  }
  const latency = latencyByService(server);
  const clusters = server.clusters.describe().map((c) => {
    const s = stats.get(c.name);
    const total = s?.get('upstream_rq_total') ?? 0;
    const errors = s?.get('upstream_rq_5xx') ?? 0;
    const lat = latency.find((l) => l.service === serviceOfCluster(c.name));
    return {
      name: c.name,
      type: c.type,
      rq_total: total,
      rq_5xx: errors,
      rq_active: s?.get('upstream_rq_active') ?? 0,
      cx_connect_fail: s?.get('upstream_cx_connect_fail') ?? 0,
      error_rate: total > 0 ? errors / total : 0,
      ...(lat?.p99 !== undefined ? { p99_ms: lat.p99 } : {}),
      hosts: c.hosts.map((h) => ({ address: h.address, health: h.healthFlags, weight: h.weight, priority: h.priority })),
      healthy: c.hosts.filter((h) => h.healthFlags === 'healthy').length,
    };
  });
  const snap = server.dynamic?.client.snapshot();
  let lastNack: Record<string, unknown> | undefined;
  for (const t of snap?.types ?? []) {
    const e = t.error_state as { details?: string; last_update_attempt?: string; version_info?: string } | undefined;
    if (e && (!lastNack || String(e.last_update_attempt) > String(lastNack.at))) {
      lastNack = { type_url: t.type_url, details: e.details, at: e.last_update_attempt, version: e.version_info };
    }
  }
  return {
    time: new Date().toISOString(),
    server: {
      version: `meshlet/${VERSION}`,
      state: server.state,
      ready: server.ready,
      node: server.bootstrap.node.id,
      uptime_s: Math.floor((Date.now() - server.startedAt) / 1000),
    },
    listeners: server.listeners.all().map((l) => ({
      name: l.config.name,
      address: l.config.address.kind === 'pipe' ? l.config.address.path : `${l.config.address.host}:${l.boundPort || l.config.address.port}`,
      direction: l.config.trafficDirection,
      filter_chains: l.config.filterChains.length,
      cx_active: l.activeConnections,
      cx_total: l.stats.downstreamCxTotal,
    })),
    clusters,
    latency,
    certificates: secretFacts(server),
    xds: snap
      ? {
          configured: true,
          connected: snap.connected,
          types: snap.types.map((t) => ({ type_url: t.type_url, version: t.version_info, last_updated: t.last_updated, resources: t.resources.length, nacked: t.error_state !== undefined })),
          ...(lastNack ? { last_nack: lastNack } : {}),
        }
      : { configured: false },
  };
}

function explainQuery(q: URLSearchParams): Parameters<typeof explainRequest>[1] | string {
  const url = q.get('url');
  if (!url) return 'url= is required (an absolute http:// or https:// URL)';
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return `url ${url}: only http and https are explained`;
  } catch {
    return `url ${url} is not an absolute URL`;
  }
  const headers: [string, string][] = [];
  for (const h of q.getAll('header')) {
    const i = h.indexOf(':', 1);
    if (i < 0) return `header ${h}: expected name:value`;
    headers.push([h.slice(0, i).trim().toLowerCase(), h.slice(i + 1).trim()]);
  }
  return {
    method: q.get('method') ?? 'GET',
    url,
    headers,
    ...(q.get('source') ? { source: q.get('source')! } : {}),
    ...(q.get('listener') ? { listener: q.get('listener')! } : {}),
    ...(q.get('principal') ? { principal: q.get('principal')! } : {}),
  };
}

export function registerInspectEndpoints(admin: AdminServer, server: InspectTarget): void {
  admin.route('GET', '/explain', "a request's path through the running config (?url=&method=&header=k:v&source=&principal=&listener=)", (q) => {
    const req = explainQuery(q);
    if (typeof req === 'string') return text(req, 400);
    return json(explainRequest(server, req));
  });
  admin.route('GET', '/secrets', 'certificates per secret: SPIFFE ID, serial, issuer, validity (never keys)', () => json({ secrets: secretFacts(server) }));
  admin.route('GET', '/overview', 'live overview: listeners, cluster traffic, endpoint health, certificates, xDS (HTML in a browser)', (_q, req: IncomingMessage) =>
    wantsHtml(req) ? { contentType: 'text/html; charset=UTF-8', body: overviewHtml() } : json(overview(server)),
  );
}
