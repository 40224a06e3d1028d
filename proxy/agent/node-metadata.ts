/**
 * The Envoy node pilot-agent builds from a pod's environment, with Istio's names and encodings, so
 * istiod sees the same proxy whether Envoy or meshlet runs in `istio-proxy`:
 *
 * - `ISTIO_META_<KEY>=v` becomes metadata `<KEY>: "v"` (a string; `ISTIO_META_WORKLOAD*` is not
 *   copied this way), `ISTIO_METAJSON_<X>={…}` merges its object into the metadata;
 * - `POD_NAME` → `NAME`, `POD_NAMESPACE` → `NAMESPACE`, `SERVICE_ACCOUNT` → `SERVICE_ACCOUNT`,
 *   `ISTIO_META_OWNER` → `OWNER`, `ISTIO_META_WORKLOAD_NAME` → `WORKLOAD_NAME`,
 *   `ISTIO_METAJSON_LABELS` → `LABELS`, then the downward-API labels file on top;
 * - `INSTANCE_IPS` is the comma-joined instance addresses, `PROXY_CONFIG` the ProxyConfig in
 *   proto-JSON (camelCase, durations as "5s"), `ENVOY_STATUS_PORT`/`ENVOY_PROMETHEUS_PORT` numbers,
 *   `PILOT_SAN` the discovery host;
 * - node id `sidecar~<ip>~<pod>.<ns>~<ns>.svc.<domain>`, cluster the ProxyConfig's serviceCluster,
 *   else `<canonical name or app or workload>.<ns>`.
 *
 * Pure: the caller passes the environment and the file contents.
 */

export type Env = Readonly<Record<string, string | undefined>>;

export interface AgentNodeInputs {
  readonly env: Env;
  /** Contents of /etc/istio/pod/labels (downward API, `key="value"` lines), if mounted. */
  readonly podLabelsFile?: string;
  /** Contents of /etc/istio/pod/annotations, if mounted. */
  readonly podAnnotationsFile?: string;
  /** The ProxyConfig in proto-JSON form (already merged from PROXY_CONFIG and mesh defaults). */
  readonly proxyConfig: Readonly<Record<string, unknown>>;
  /** The instance addresses (INSTANCE_IP first). */
  readonly instanceIps: readonly string[];
}

export interface AgentNode {
  readonly id: string;
  readonly cluster: string;
  readonly metadata: Record<string, unknown>;
}

/** Parses a Kubernetes downward-API file (`key="Go-quoted value"` per line). */
export function parseDownwardApi(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i <= 0) continue;
    const raw = line.slice(i + 1).trim();
    let value = raw;
    if (raw.startsWith('"') && raw.endsWith('"') && raw.length >= 2) {
      try {
        value = JSON.parse(raw) as string;
      } catch {
        value = raw.slice(1, -1);
      }
    }
    out[line.slice(0, i)] = value;
  }
  return out;
}

function jsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The node pilot-agent would send for these inputs. */
export function agentNode(inputs: AgentNodeInputs): AgentNode {
  const env = inputs.env;
  const md: Record<string, unknown> = {};
  const names = Object.keys(env).sort();
  for (const name of names) {
    const v = env[name];
    if (v === undefined) continue;
    if (name.startsWith('ISTIO_META_') && !name.startsWith('ISTIO_META_WORKLOAD')) md[name.slice('ISTIO_META_'.length)] = v;
  }
  for (const name of names) {
    if (!name.startsWith('ISTIO_METAJSON_')) continue;
    const obj = jsonObject(env[name] ?? '');
    if (obj) Object.assign(md, obj);
  }
  let labels: Record<string, string> | undefined;
  const jsonLabels = env.ISTIO_METAJSON_LABELS ? jsonObject(env.ISTIO_METAJSON_LABELS) : undefined;
  if (jsonLabels && Object.keys(jsonLabels).length > 0) labels = { ...(jsonLabels as Record<string, string>) };
  if (env.POD_NAME) md.NAME = env.POD_NAME;
  if (env.POD_NAMESPACE) md.NAMESPACE = env.POD_NAMESPACE;
  if (env.ISTIO_META_OWNER) md.OWNER = env.ISTIO_META_OWNER;
  if (env.ISTIO_META_WORKLOAD_NAME) md.WORKLOAD_NAME = env.ISTIO_META_WORKLOAD_NAME;
  if (env.SERVICE_ACCOUNT) md.SERVICE_ACCOUNT = env.SERVICE_ACCOUNT;
  if (inputs.podLabelsFile !== undefined) labels = { ...labels, ...parseDownwardApi(inputs.podLabelsFile) };
  if (labels) md.LABELS = labels;
  if (inputs.podAnnotationsFile !== undefined) {
    const a = parseDownwardApi(inputs.podAnnotationsFile);
    if (Object.keys(a).length > 0) md.ANNOTATIONS = a;
  }
  if (inputs.instanceIps.length > 0) md.INSTANCE_IPS = inputs.instanceIps.join(',');
  md.PROXY_CONFIG = inputs.proxyConfig;
  md.ENVOY_STATUS_PORT = 15021;
  md.ENVOY_PROMETHEUS_PORT = 15090;
  const discovery = typeof inputs.proxyConfig.discoveryAddress === 'string' ? inputs.proxyConfig.discoveryAddress : '';
  const host = discovery.replace(/:\d+$/, '');
  if (host) md.PILOT_SAN = [host];
  if (env.OUTLIER_LOG_PATH) md.OUTLIER_LOG_PATH = env.OUTLIER_LOG_PATH;

  const ns = env.POD_NAMESPACE ?? 'default';
  const domain = `${ns}.svc.${env.ISTIO_META_DNS_DOMAIN ?? 'cluster.local'}`;
  const ip = inputs.instanceIps[0] ?? '127.0.0.1';
  const id = `sidecar~${ip}~${env.POD_NAME ?? 'meshlet'}.${ns}~${domain}`;
  const serviceCluster = typeof inputs.proxyConfig.serviceCluster === 'string' ? inputs.proxyConfig.serviceCluster : '';
  const app =
    labels?.['service.istio.io/canonical-name'] ?? labels?.['app.kubernetes.io/name'] ?? labels?.app ?? env.ISTIO_META_WORKLOAD_NAME ?? env.POD_NAME ?? 'istio-proxy';
  const cluster = serviceCluster || `${app}.${ns}`;
  return { id, cluster, metadata: md };
}

const SNAKE = /_([a-z])/g;

/**
 * A ProxyConfig as proto-JSON (what pilot-agent puts in PROXY_CONFIG): keys camelCase, durations
 * given as `{seconds, nanos}` written as "5s". Input may use either case (PROXY_CONFIG is YAML).
 */
export function proxyConfigJson(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(proxyConfigJson);
  if (v === null || typeof v !== 'object') return v;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length > 0 && keys.every((k) => k === 'seconds' || k === 'nanos')) {
    const s = Number(o.seconds ?? 0) + Number(o.nanos ?? 0) / 1e9;
    return `${s}s`;
  }
  const out: Record<string, unknown> = {};
  for (const k of keys.sort((a, b) => a.replace(SNAKE, (_m, c: string) => c.toUpperCase()).localeCompare(b.replace(SNAKE, (_m, c: string) => c.toUpperCase()))))
    out[k.replace(SNAKE, (_m, c: string) => c.toUpperCase())] = proxyConfigJson(o[k]);
  return out;
}
