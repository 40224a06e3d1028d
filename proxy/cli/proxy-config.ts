/**
 * `meshlet proxy-config <clusters|listeners|routes|endpoints|secrets|bootstrap|log|all|explain>`:
 * istioctl's proxy-config against a running proxy's admin port (meshlet or Envoy; `secrets` and
 * `explain` need meshlet's /secrets and /explain). Tables by default (`-o short`), or the
 * resources themselves with `-o json|yaml`.
 */
import { parseArgs } from 'node:util';
import { stringify as toYaml } from 'yaml';
import type { ExplainResult } from '../admin/explain';
import type { CertFacts } from '../admin/inspect-endpoints';
import { adminJson, adminRequest, openAdminTarget } from './admin-client';
import { renderExplain } from './proxy-config-explain';
import {
  allRouteConfigs,
  CLUSTER_HEADERS,
  clusterRows,
  ENDPOINT_HEADERS,
  endpointRows,
  type Filters,
  LISTENER_HEADERS,
  listenerRows,
  parseClustersText,
  ROUTE_HEADERS,
  routeRows,
  SECRET_HEADERS,
  sections,
} from './proxy-config-views';
import { humanDuration, renderTable, stdoutTableOptions } from './table';

const KINDS = ['clusters', 'listeners', 'routes', 'endpoints', 'secrets', 'bootstrap', 'log', 'all', 'explain'] as const;
type Kind = (typeof KINDS)[number];
const ALIASES: Record<string, Kind> = { cluster: 'clusters', c: 'clusters', listener: 'listeners', l: 'listeners', route: 'routes', r: 'routes', endpoint: 'endpoints', ep: 'endpoints', secret: 'secrets', s: 'secrets', b: 'bootstrap' };

export const PROXY_CONFIG_USAGE = `meshlet proxy-config <clusters|listeners|routes|endpoints|secrets|bootstrap|log|all> [flags]
meshlet proxy-config explain URL [-X METHOD] [-H 'name: value']... [--source IP[:PORT]] [--principal SPIFFE_ID] [--listener NAME]

      --admin URL            the proxy's admin address (default http://127.0.0.1:15000)
      --pod NAME[.NS]        reach a pod's admin port through kubectl port-forward
  -n, --namespace NS         namespace for --pod
  -o, --output short|json|yaml   table (default) or the resources themselves
      --fqdn NAME            clusters: service FQDN (or its short name)
      --port N               clusters, listeners, endpoints: port
      --subset NAME          clusters: subset
      --direction inbound|outbound   clusters: traffic direction
      --address IP           listeners, endpoints: address
      --cluster NAME         endpoints: cluster name
      --status healthy|unhealthy     endpoints: health
      --name NAME            clusters, listeners, routes (route config), secrets: exact name
      --level LEVEL          log: set every logger (or comp:level,comp2:level)`;

function filtersFrom(v: Record<string, string | boolean | string[] | undefined>): Filters | string {
  const flt: Filters = {};
  if (typeof v.fqdn === 'string') flt.fqdn = v.fqdn;
  if (typeof v.port === 'string') {
    const n = Number(v.port);
    if (!Number.isInteger(n) || n < 0 || n > 65535) return `--port ${v.port} is not a port`;
    flt.port = n;
  }
  if (typeof v.subset === 'string') flt.subset = v.subset;
  if (typeof v.direction === 'string') {
    if (v.direction !== 'inbound' && v.direction !== 'outbound') return '--direction must be inbound or outbound';
    flt.direction = v.direction;
  }
  if (typeof v.cluster === 'string') flt.cluster = v.cluster;
  if (typeof v.address === 'string') flt.address = v.address;
  if (typeof v.status === 'string') {
    if (v.status !== 'healthy' && v.status !== 'unhealthy') return '--status must be healthy or unhealthy';
    flt.status = v.status;
  }
  if (typeof v.name === 'string') flt.name = v.name;
  return flt;
}

function emit(value: unknown, output: string): string {
  return output === 'yaml' ? toYaml(value) : `${JSON.stringify(value, null, 2)}\n`;
}

function secretRow(s: CertFacts): string[] {
  return [
    s.secret,
    s.type,
    s.status,
    s.valid === undefined ? (s.status === 'ACTIVE' && s.type === 'CA' ? 'true' : '-') : String(s.valid && (s.secondsToExpiry ?? 0) > 0),
    s.spiffeId ?? '-',
    s.serialNumber ?? '-',
    s.issuer ?? '-',
    s.notBefore ?? '-',
    s.notAfter ?? '-',
    s.secondsToExpiry === undefined ? '-' : humanDuration(s.secondsToExpiry),
  ];
}

async function show(kind: Exclude<Kind, 'log' | 'explain'>, base: string, flt: Filters, output: string): Promise<string> {
  const table = stdoutTableOptions();
  if (kind === 'endpoints') {
    const { rows, kept } = endpointRows(parseClustersText(await adminRequest(base, '/clusters')), flt);
    return output === 'short' ? renderTable(ENDPOINT_HEADERS, rows, table) : emit(kept, output);
  }
  if (kind === 'secrets') {
    const all = (await adminJson<{ secrets: CertFacts[] }>(base, '/secrets')).secrets.filter((s) => !flt.name || s.secret === flt.name);
    return output === 'short' ? renderTable(SECRET_HEADERS, all.map(secretRow), table) : emit(all, output);
  }
  const dump = sections(await adminJson(base, '/config_dump'));
  switch (kind) {
    case 'bootstrap':
      return emit({ bootstrap: dump.bootstrap ?? {} }, output === 'short' ? 'json' : output);
    case 'clusters': {
      const { rows, kept } = clusterRows(dump.clusters, flt);
      return output === 'short' ? renderTable(CLUSTER_HEADERS, rows, table) : emit(kept, output);
    }
    case 'listeners': {
      const { rows, kept } = listenerRows(dump.listeners, flt);
      return output === 'short' ? renderTable(LISTENER_HEADERS, rows, table) : emit(kept, output);
    }
    case 'routes': {
      const { rows, kept } = routeRows(allRouteConfigs(dump), flt);
      return output === 'short' ? renderTable(ROUTE_HEADERS, rows, table) : emit(kept, output);
    }
    case 'all': {
      if (output !== 'short') return emit(await adminJson(base, '/config_dump?include_eds'), output);
      const parts: string[] = [];
      for (const k of ['clusters', 'listeners', 'routes', 'endpoints', 'secrets'] as const) {
        try {
          parts.push(await show(k, base, flt, output));
        } catch (err) {
          parts.push(`${k}: ${(err as Error).message}\n`);
        }
      }
      return parts.join('\n');
    }
  }
}

export async function runProxyConfig(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        admin: { type: 'string' },
        pod: { type: 'string' },
        namespace: { type: 'string', short: 'n' },
        output: { type: 'string', short: 'o', default: 'short' },
        fqdn: { type: 'string' },
        port: { type: 'string' },
        subset: { type: 'string' },
        direction: { type: 'string' },
        cluster: { type: 'string' },
        address: { type: 'string' },
        status: { type: 'string' },
        name: { type: 'string' },
        level: { type: 'string' },
        method: { type: 'string', short: 'X' },
        header: { type: 'string', short: 'H', multiple: true },
        source: { type: 'string' },
        principal: { type: 'string' },
        listener: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`meshlet proxy-config: ${(err as Error).message}\n\nUsage: ${PROXY_CONFIG_USAGE}\n`);
    return 1;
  }
  const v = parsed.values;
  if (v.help) {
    process.stdout.write(`Usage: ${PROXY_CONFIG_USAGE}\n`);
    return 0;
  }
  const [rawKind, ...rest] = parsed.positionals;
  const kind = (rawKind && (ALIASES[rawKind] ?? (KINDS as readonly string[]).find((k) => k === rawKind))) as Kind | undefined;
  if (!kind) {
    process.stderr.write(`meshlet proxy-config: ${rawKind ? `unknown kind "${rawKind}"` : 'what to show is missing'}\n\nUsage: ${PROXY_CONFIG_USAGE}\n`);
    return 1;
  }
  const output = String(v.output);
  if (!['short', 'json', 'yaml'].includes(output)) {
    process.stderr.write(`meshlet proxy-config: -o must be short, json or yaml\n`);
    return 1;
  }
  const flt = filtersFrom(v);
  if (typeof flt === 'string') {
    process.stderr.write(`meshlet proxy-config: ${flt}\n`);
    return 1;
  }
  if (kind === 'explain' && rest.length !== 1) {
    process.stderr.write(`meshlet proxy-config explain: one URL is needed, e.g. http://reviews:9080/api?x=1\n`);
    return 1;
  }
  if (kind !== 'explain' && rest.length > 0) {
    process.stderr.write(`meshlet proxy-config: unexpected argument "${rest[0]}" (use --admin URL or --pod NAME)\n`);
    return 1;
  }
  const target = await openAdminTarget({ admin: v.admin, pod: v.pod, namespace: v.namespace });
  try {
    if (kind === 'log') {
      const q = new URLSearchParams();
      for (const part of (v.level ?? '').split(',').filter(Boolean)) {
        const i = part.indexOf(':');
        if (i < 0) q.append('level', part);
        else q.append(part.slice(0, i), part.slice(i + 1));
      }
      const qs = q.toString();
      process.stdout.write(await adminRequest(target.base, `/logging${qs ? `?${qs}` : ''}`, { method: 'POST' }));
      return 0;
    }
    if (kind === 'explain') {
      const q = new URLSearchParams({ url: rest[0]!, method: v.method ?? 'GET' });
      for (const h of v.header ?? []) q.append('header', h);
      if (v.source) q.set('source', v.source);
      if (v.principal) q.set('principal', v.principal);
      if (v.listener) q.set('listener', v.listener);
      const e = await adminJson<ExplainResult>(target.base, `/explain?${q}`);
      process.stdout.write(output === 'short' ? renderExplain(e, stdoutTableOptions().colour === true) : emit(e, output));
      return 0;
    }
    process.stdout.write(await show(kind, target.base, flt, output));
    return 0;
  } catch (err) {
    process.stderr.write(`meshlet proxy-config ${kind}: ${(err as Error).message}\n`);
    return 1;
  } finally {
    target.close();
  }
}
