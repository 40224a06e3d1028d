/**
 * The rows `meshlet proxy-config` prints, computed from Envoy's admin answers (/config_dump,
 * /clusters) so the command works against meshlet and Envoy alike. Columns follow istioctl's
 * proxy-config: clusters (SERVICE FQDN, PORT, SUBSET, DIRECTION, TYPE, DESTINATION RULE),
 * listeners (ADDRESSES, PORT, MATCH, DESTINATION), routes (NAME, VHOST NAME, DOMAINS, MATCH,
 * VIRTUAL SERVICE), endpoints (ENDPOINT, STATUS, OUTLIER CHECK, CLUSTER) — plus meshlet's LB
 * weight for endpoints.
 *
 * Resources may be written in proto3 JSON's snake_case or lowerCamelCase (a user's static
 * bootstrap keeps what the user wrote): `f()` reads either.
 */

export type Json = Record<string, unknown>;

/** A field by its proto name, in snake_case or lowerCamelCase. */
export function f(o: unknown, snake: string): unknown {
  if (!o || typeof o !== 'object') return undefined;
  const r = o as Json;
  if (snake in r) return r[snake];
  const camel = snake.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
  return r[camel];
}

function arr(v: unknown): Json[] {
  return Array.isArray(v) ? (v as Json[]) : [];
}

function str(v: unknown, def = ''): string {
  return v === undefined || v === null ? def : String(v);
}

/** The typed sections of a /config_dump answer. */
export interface DumpSections {
  bootstrap?: Json;
  clusters: Json[];
  listeners: Json[];
  routeConfigs: Json[];
}

export function sections(dump: { configs?: Json[] }): DumpSections {
  const out: DumpSections = { clusters: [], listeners: [], routeConfigs: [] };
  for (const c of dump.configs ?? []) {
    const t = str(c['@type']);
    if (t.endsWith('BootstrapConfigDump')) out.bootstrap = c.bootstrap as Json;
    else if (t.endsWith('ClustersConfigDump')) {
      for (const s of arr(c.static_clusters)) out.clusters.push(s.cluster as Json);
      for (const s of arr(c.dynamic_active_clusters)) out.clusters.push(s.cluster as Json);
    } else if (t.endsWith('ListenersConfigDump')) {
      for (const s of arr(c.static_listeners)) out.listeners.push(s.listener as Json);
      for (const s of arr(c.dynamic_listeners)) {
        const l = (s.active_state as Json | undefined)?.listener;
        if (l) out.listeners.push(l as Json);
      }
    } else if (t.endsWith('RoutesConfigDump')) {
      for (const s of arr(c.static_route_configs)) out.routeConfigs.push(s.route_config as Json);
      for (const s of arr(c.dynamic_route_configs)) out.routeConfigs.push(s.route_config as Json);
    }
  }
  out.clusters = out.clusters.filter(Boolean);
  out.listeners = out.listeners.filter(Boolean);
  out.routeConfigs = out.routeConfigs.filter(Boolean);
  return out;
}

export interface Filters {
  fqdn?: string;
  port?: number;
  subset?: string;
  direction?: string;
  cluster?: string;
  address?: string;
  status?: 'healthy' | 'unhealthy';
  name?: string;
}

/** Istio cluster names: direction|port|subset|fqdn. */
export function parseClusterName(name: string): { fqdn: string; port: string; subset: string; direction: string } {
  const p = name.split('|');
  if (p.length === 4) return { direction: p[0]!, port: p[1]!, subset: p[2]! || '-', fqdn: p[3]! };
  return { fqdn: name, port: '-', subset: '-', direction: '-' };
}

function fqdnMatches(fqdn: string, want: string): boolean {
  return fqdn === want || fqdn.startsWith(`${want}.`);
}

function istioConfig(meta: unknown): string {
  const fm = f(meta, 'filter_metadata') as Json | undefined;
  const cfg = str((fm?.istio as Json | undefined)?.config);
  // /apis/networking.istio.io/v1/namespaces/<ns>/destination-rule/<name> → name.ns
  const m = /namespaces\/([^/]+)\/[^/]+\/([^/]+)$/.exec(cfg);
  return m ? `${m[2]}.${m[1]}` : '-';
}

export const CLUSTER_HEADERS = ['SERVICE FQDN', 'PORT', 'SUBSET', 'DIRECTION', 'TYPE', 'DESTINATION RULE'];

export function clusterRows(clusters: Json[], flt: Filters): { rows: string[][]; kept: Json[] } {
  const rows: string[][] = [];
  const kept: Json[] = [];
  // istioctl's order: FQDN, then port, subset, direction.
  const key = (c: Json): string => {
    const p = parseClusterName(str(c.name));
    return `${p.fqdn}\u0000${p.port.padStart(5, '0')}\u0000${p.subset}\u0000${p.direction}`;
  };
  const sorted = [...clusters].sort((a, b) => key(a).localeCompare(key(b)));
  for (const c of sorted) {
    const name = str(c.name);
    const p = parseClusterName(name);
    if (flt.name && name !== flt.name) continue;
    if (flt.fqdn && !fqdnMatches(p.fqdn, flt.fqdn)) continue;
    if (flt.port !== undefined && p.port !== String(flt.port)) continue;
    if (flt.subset && p.subset !== flt.subset) continue;
    if (flt.direction && p.direction !== flt.direction) continue;
    const type = str(f(c, 'type'), f(c, 'cluster_type') ? 'CUSTOM' : 'EDS' in c ? 'EDS' : 'STATIC');
    rows.push([p.fqdn, p.port, p.subset, p.direction, type, istioConfig(f(c, 'metadata'))]);
    kept.push(c);
  }
  return { rows, kept };
}

function socket(a: unknown): { address: string; port: number } {
  const s = f(a, 'socket_address') as Json | undefined;
  return { address: str(s?.address, str(f(f(a, 'pipe'), 'path'))), port: Number(f(s, 'port_value') ?? 0) };
}

function hcmOf(filters: Json[]): Json | undefined {
  for (const x of filters) {
    const tc = f(x, 'typed_config') as Json | undefined;
    if (str(tc?.['@type']).endsWith('HttpConnectionManager')) return tc;
  }
  return undefined;
}

function describeMatchShort(m: unknown): string {
  const prefix = f(m, 'prefix');
  if (prefix !== undefined) return `${str(prefix)}*`;
  const path = f(m, 'path');
  if (path !== undefined) return str(path);
  const re = f(m, 'safe_regex');
  if (re !== undefined) return `regex ${str(f(re, 'regex'))}`;
  const sep = f(m, 'path_separated_prefix');
  if (sep !== undefined) return `${str(sep)}/*`;
  return f(m, 'connect_matcher') !== undefined ? 'CONNECT' : '/*';
}

function chainDestination(filters: Json[]): string {
  const hcm = hcmOf(filters);
  if (hcm) {
    const rds = f(hcm, 'rds');
    if (rds) return `Route: ${str(f(rds, 'route_config_name'))}`;
    const rc = f(hcm, 'route_config') as Json | undefined;
    const vhs = arr(f(rc, 'virtual_hosts'));
    if (vhs.length === 1 && JSON.stringify(f(vhs[0], 'domains')) === '["*"]') {
      const rs = arr(f(vhs[0], 'routes'));
      const cl = rs.length === 1 ? f(f(rs[0], 'route'), 'cluster') : undefined;
      if (cl !== undefined && f(f(rs[0], 'match'), 'prefix') === '/') return `Cluster: ${str(cl)}`;
    }
    return `Inline Route: ${vhs
      .map((vh) => {
        const d = arr(f(vh, 'domains')) as unknown as string[];
        const rs = arr(f(vh, 'routes')).map((r) => describeMatchShort(f(r, 'match'))).join(', ');
        return d.length === 1 && d[0] === '*' ? rs : `${d.join('/')} ${rs}`;
      })
      .join('; ')}`;
  }
  for (const x of filters) {
    const tc = f(x, 'typed_config') as Json | undefined;
    if (str(tc?.['@type']).endsWith('TcpProxy')) {
      const cl = f(tc, 'cluster');
      return cl !== undefined ? `Cluster: ${str(cl)}` : 'Cluster: weighted';
    }
  }
  return 'Non-HTTP/Non-TCP';
}

function chainMatch(m: unknown): string {
  const d: string[] = [];
  const sni = arr(f(m, 'server_names')) as unknown as string[];
  if (sni.length) d.push(`SNI: ${sni.join(',')}`);
  const tp = f(m, 'transport_protocol');
  if (tp) d.push(`Trans: ${str(tp)}`);
  const app = arr(f(m, 'application_protocols')) as unknown as string[];
  if (app.length) d.push(`App: ${app.join(',')}`);
  const port = f(m, 'destination_port');
  const portS = port !== undefined ? `:${str(port)}` : '';
  const pr = arr(f(m, 'prefix_ranges'));
  if (pr.length) d.push(`Addr: ${pr.map((p) => `${str(f(p, 'address_prefix'))}/${str(f(p, 'prefix_len'), '32')}`).join(',')}${portS}`);
  else if (portS) d.push(`Addr: *${portS}`);
  const src = arr(f(m, 'source_prefix_ranges'));
  if (src.length) d.push(`Addr: ${src.map((p) => `${str(f(p, 'address_prefix'))}/${str(f(p, 'prefix_len'), '32')}`).join(',')} (source)`);
  return d.length ? d.join('; ') : 'ALL';
}

export const LISTENER_HEADERS = ['ADDRESSES', 'PORT', 'MATCH', 'DESTINATION'];

export function listenerRows(listeners: Json[], flt: Filters): { rows: string[][]; kept: Json[] } {
  const rows: string[][] = [];
  const kept: Json[] = [];
  const sorted = [...listeners].sort((a, b) => socket(f(a, 'address')).port - socket(f(b, 'address')).port || str(a.name).localeCompare(str(b.name)));
  for (const l of sorted) {
    const a = socket(f(l, 'address'));
    if (flt.name && str(l.name) !== flt.name) continue;
    if (flt.address && a.address !== flt.address) continue;
    if (flt.port !== undefined && a.port !== flt.port) continue;
    const chains = arr(f(l, 'filter_chains'));
    const dfc = f(l, 'default_filter_chain') as Json | undefined;
    for (const c of chains) rows.push([a.address, String(a.port), chainMatch(f(c, 'filter_chain_match')), chainDestination(arr(f(c, 'filters')))]);
    if (dfc) rows.push([a.address, String(a.port), 'ALL (default chain)', chainDestination(arr(f(dfc, 'filters')))]);
    if (chains.length === 0 && !dfc) rows.push([a.address, String(a.port), 'ALL', '-']);
    kept.push(l);
  }
  return { rows, kept };
}

export const ROUTE_HEADERS = ['NAME', 'VHOST NAME', 'DOMAINS', 'MATCH', 'VIRTUAL SERVICE'];

/** Route configurations: RDS ones plus those inline in listeners (named after their listener). */
export function allRouteConfigs(s: DumpSections): Json[] {
  const out = [...s.routeConfigs];
  for (const l of s.listeners) {
    for (const c of [...arr(f(l, 'filter_chains')), ...(f(l, 'default_filter_chain') ? [f(l, 'default_filter_chain') as Json] : [])]) {
      const rc = f(hcmOf(arr(f(c, 'filters'))), 'route_config') as Json | undefined;
      if (rc) out.push(rc.name ? rc : { ...rc, name: str(l.name) });
    }
  }
  return out;
}

export function routeRows(configs: Json[], flt: Filters): { rows: string[][]; kept: Json[] } {
  const rows: string[][] = [];
  const kept: Json[] = [];
  for (const rc of [...configs].sort((a, b) => str(a.name).localeCompare(str(b.name)))) {
    const name = str(rc.name);
    if (flt.name && name !== flt.name) continue;
    kept.push(rc);
    for (const vh of arr(f(rc, 'virtual_hosts'))) {
      const domains = arr(f(vh, 'domains')) as unknown as string[];
      const shown = domains.length > 1 ? `${domains[0]} +${domains.length - 1} more...` : (domains[0] ?? '');
      for (const r of arr(f(vh, 'routes'))) rows.push([name, str(f(vh, 'name')), shown, describeMatchShort(f(r, 'match')), istioConfig(f(r, 'metadata'))]);
    }
  }
  return { rows, kept };
}

export const ENDPOINT_HEADERS = ['ENDPOINT', 'STATUS', 'OUTLIER CHECK', 'LB WEIGHT', 'CLUSTER'];

export interface EndpointRow {
  endpoint: string;
  cluster: string;
  healthFlags: string;
  weight: string;
  priority: string;
}

/** Envoy's /clusters text: `<cluster>::<addr>::<stat>::<value>` lines. */
export function parseClustersText(body: string): EndpointRow[] {
  const by = new Map<string, EndpointRow>();
  for (const line of body.split('\n')) {
    const parts = line.split('::');
    if (parts.length !== 4) continue;
    const [cluster, addr, stat, value] = parts as [string, string, string, string];
    if (addr === 'default_priority' || addr === 'high_priority') continue;
    const key = `${cluster}\u0000${addr}`;
    let e = by.get(key);
    if (!e) by.set(key, (e = { endpoint: addr, cluster, healthFlags: 'healthy', weight: '1', priority: '0' }));
    if (stat === 'health_flags') e.healthFlags = value;
    else if (stat === 'weight') e.weight = value;
    else if (stat === 'priority') e.priority = value;
  }
  return [...by.values()];
}

export function endpointRows(eps: EndpointRow[], flt: Filters): { rows: string[][]; kept: EndpointRow[] } {
  const rows: string[][] = [];
  const kept: EndpointRow[] = [];
  for (const e of [...eps].sort((a, b) => a.cluster.localeCompare(b.cluster) || a.endpoint.localeCompare(b.endpoint))) {
    const healthy = e.healthFlags === 'healthy' || e.healthFlags === '/degraded_eds_health';
    const outlier = e.healthFlags.includes('failed_outlier_check') ? 'FAILED' : 'OK';
    const i = e.endpoint.lastIndexOf(':');
    if (flt.cluster && e.cluster !== flt.cluster) continue;
    if (flt.address && e.endpoint.slice(0, i).replace(/^\[|\]$/g, '') !== flt.address) continue;
    if (flt.port !== undefined && e.endpoint.slice(i + 1) !== String(flt.port)) continue;
    if (flt.status && (flt.status === 'healthy') !== healthy) continue;
    rows.push([e.endpoint, healthy ? 'HEALTHY' : 'UNHEALTHY', outlier, e.weight, e.cluster]);
    kept.push(e);
  }
  return { rows, kept };
}

export const SECRET_HEADERS = ['RESOURCE NAME', 'TYPE', 'STATUS', 'VALID CERT', 'SPIFFE ID', 'SERIAL NUMBER', 'ISSUER', 'NOT BEFORE', 'NOT AFTER', 'EXPIRES IN'];
