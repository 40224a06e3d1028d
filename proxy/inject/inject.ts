/**
 * Sidecar injection for Kubernetes manifests (what `istioctl kube-inject` does, for meshlet): for
 * every pod template in a multi-document YAML stream (Pod, Deployment, StatefulSet, DaemonSet,
 * ReplicaSet, ReplicationController, Job, CronJob, and `List` items) it adds
 *  - the `meshlet-init` init container running `meshlet iptables` as root with NET_ADMIN/NET_RAW,
 *    its flags taken from Istio's `traffic.sidecar.istio.io/*` annotations;
 *  - the `meshlet-proxy` sidecar as UID/GID 1337: a native sidecar (an init container with
 *    `restartPolicy: Always`, the default) or a regular first container that holds the app with
 *    `meshlet wait`; probes on 15021 `/healthz/ready`, 15090 Prometheus;
 *  - the bootstrap volume (a ConfigMap, generated per workload unless one is named) and optionally
 *    a certificate Secret volume;
 *  - the `sidecar.meshlet.io/status` annotation and Prometheus scrape annotations.
 *
 * Leans conservative: a template that already carries the status annotation, opts out with
 * `sidecar.meshlet.io/inject: "false"` (or Istio's), or uses the host network is left exactly as
 * it was, so injecting twice changes nothing; every other document is passed through untouched.
 * Problems a user should know about are returned as warnings, never thrown, except unparsable YAML.
 */
import { type Document, stringify } from 'yaml';
import { ConfigError } from '../../common/errors';
import { parseYamlStream } from '../../common/yaml';
import { MESH_PORTS, sidecarBootstrapYaml, splitHostPort } from './bootstrap-template';
import { REWRITE_PROBES_ANNOTATION, rewriteAppProbes } from './probes';

export const STATUS_ANNOTATION = 'sidecar.meshlet.io/status';
export const INJECT_ANNOTATION = 'sidecar.meshlet.io/inject';
export const PROXY_CONTAINER = 'meshlet-proxy';
export const INIT_CONTAINER = 'meshlet-init';
export const BOOTSTRAP_VOLUME = 'meshlet-bootstrap';
export const CERTS_VOLUME = 'meshlet-certs';
export const BOOTSTRAP_DIR = '/etc/meshlet';
export const CERTS_DIR = '/etc/certs';
/** The authenticated path: the projected service-account token and the mesh root (Istio's paths and audience). */
export const TOKEN_VOLUME = 'istio-token';
export const TOKEN_DIR = '/var/run/secrets/tokens';
export const TOKEN_FILE = `${TOKEN_DIR}/istio-token`;
export const TOKEN_AUDIENCE = 'istio-ca';
export const ROOT_VOLUME = 'meshlet-root';
export const ROOT_DIR = '/var/run/secrets/meshlet/root';
export const ROOT_CERT_FILE = `${ROOT_DIR}/root-cert.pem`;

/** Istio's interception annotations → `meshlet iptables` flags. */
export const TRAFFIC_ANNOTATIONS = {
  'traffic.sidecar.istio.io/includeOutboundIPRanges': '--include-outbound-cidrs',
  'traffic.sidecar.istio.io/excludeOutboundIPRanges': '--exclude-outbound-cidrs',
  'traffic.sidecar.istio.io/includeInboundPorts': '--include-inbound-ports',
  'traffic.sidecar.istio.io/excludeInboundPorts': '--exclude-inbound-ports',
  'traffic.sidecar.istio.io/includeOutboundPorts': '--include-outbound-ports',
  'traffic.sidecar.istio.io/excludeOutboundPorts': '--exclude-outbound-ports',
} as const;

/** Ports never captured inbound, whatever the annotations say (Istio's list). */
const ALWAYS_EXCLUDED_INBOUND = [MESH_PORTS.prometheus, MESH_PORTS.health, MESH_PORTS.agent];

export interface InjectOptions {
  /** Sidecar image (the Dockerfile's runtime target). */
  readonly image: string;
  /** Init image: the Dockerfile's `init` target (has iptables). */
  readonly initImage: string;
  /** `host:port` of the control plane's ADS port, written into generated bootstraps. */
  readonly controlPlane: string;
  /** UID and GID of the proxy (Istio: 1337); excluded from capture. */
  readonly proxyUid: number;
  /** Native sidecar (init container with restartPolicy Always, Kubernetes ≥ 1.29). Default true. */
  readonly nativeSidecar: boolean;
  /** Use this existing ConfigMap as every workload's bootstrap instead of generating one. */
  readonly bootstrapConfigMap?: string;
  /** Mount this Secret at /etc/certs (for bootstraps that read certificates from files). */
  readonly certSecret?: string;
  /** Namespace for documents that do not name one. Default `default`. */
  readonly defaultNamespace: string;
  /** Mesh-wide interception defaults; a workload's Istio annotations override each one. */
  readonly excludeOutboundCidrs?: string;
  readonly excludeOutboundPorts?: string;
  readonly excludeInboundPorts?: string;
  /** `meshlet iptables --native-nftables` (one nft table) instead of iptables rules. */
  readonly nativeNftables?: boolean;
  /** Drain time passed to the proxy. Default 5 s. */
  readonly drainTimeS: number;
  /**
   * The authenticated path (the embedded control plane's default): generated bootstraps speak
   * ADS and CSR over the control plane's TLS port `address` with the pod's projected
   * service-account token (audience istio-ca), verifying the control plane against the mesh root
   * from ConfigMap `rootConfigMap` (key root-cert.pem); the key is generated in the pod.
   */
  readonly secure?: { readonly address: string; readonly rootConfigMap: string };
  /** Written into the status annotation. */
  readonly version: string;
}

export interface InjectResult {
  readonly yaml: string;
  /** `Kind/namespace/name` of every workload injected. */
  readonly injected: readonly string[];
  /** `Kind/namespace/name: why` of every workload left alone. */
  readonly skipped: readonly string[];
  readonly warnings: readonly string[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const objAt = (o: Obj, key: string): Obj => {
  if (!isObj(o[key])) o[key] = {};
  return o[key] as Obj;
};
const listAt = (o: Obj, key: string): Obj[] => {
  if (!Array.isArray(o[key])) o[key] = [];
  return o[key] as Obj[];
};

/** Where a kind keeps its pod template (path of keys), or undefined for non-workloads. */
function templatePath(kind: string): readonly string[] | undefined {
  switch (kind) {
    case 'Pod':
      return [];
    case 'Deployment':
    case 'StatefulSet':
    case 'DaemonSet':
    case 'ReplicaSet':
    case 'ReplicationController':
    case 'Job':
      return ['spec', 'template'];
    case 'CronJob':
      return ['spec', 'jobTemplate', 'spec', 'template'];
    default:
      return undefined;
  }
}

function getPath(o: Obj, path: readonly string[]): Obj | undefined {
  let cur: unknown = o;
  for (const k of path) cur = isObj(cur) ? cur[k] : undefined;
  return isObj(cur) ? cur : undefined;
}

const falsy = (v: unknown) => v === false || (typeof v === 'string' && /^(false|no|off|disabled)$/i.test(v));

/** The init container's `meshlet iptables` arguments for one pod's annotations. */
export function iptablesArgs(annotations: Obj, o: InjectOptions): string[] {
  const uid = String(o.proxyUid);
  const ann = (k: keyof typeof TRAFFIC_ANNOTATIONS): string | undefined =>
    typeof annotations[k] === 'string' ? (annotations[k] as string).trim() : undefined;
  const excludeIn = [
    ...new Set(
      [...(ann('traffic.sidecar.istio.io/excludeInboundPorts') ?? o.excludeInboundPorts ?? '').split(','), ...ALWAYS_EXCLUDED_INBOUND.map(String)]
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  ].join(',');
  const args = [
    'iptables',
    '--proxy-port', String(MESH_PORTS.outbound),
    '--inbound-capture-port', String(MESH_PORTS.inbound),
    '--proxy-uid', uid,
    '--proxy-gid', uid,
    '--include-outbound-cidrs', ann('traffic.sidecar.istio.io/includeOutboundIPRanges') ?? '*',
    '--exclude-outbound-cidrs', ann('traffic.sidecar.istio.io/excludeOutboundIPRanges') ?? o.excludeOutboundCidrs ?? '',
    '--include-inbound-ports', ann('traffic.sidecar.istio.io/includeInboundPorts') ?? '*',
    '--exclude-inbound-ports', excludeIn,
  ];
  const incOutPorts = ann('traffic.sidecar.istio.io/includeOutboundPorts');
  if (incOutPorts) args.push('--include-outbound-ports', incOutPorts);
  const excOutPorts = ann('traffic.sidecar.istio.io/excludeOutboundPorts') ?? o.excludeOutboundPorts;
  if (excOutPorts) args.push('--exclude-outbound-ports', excOutPorts);
  if (o.nativeNftables) args.push('--native-nftables');
  return args;
}

function initContainer(annotations: Obj, o: InjectOptions): Obj {
  return {
    name: INIT_CONTAINER,
    image: o.initImage,
    command: ['/usr/local/bin/node', '/app/bin/meshlet.js'],
    args: iptablesArgs(annotations, o),
    securityContext: {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      // iptables takes its lock under /run.
      readOnlyRootFilesystem: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    },
    resources: { requests: { cpu: '10m', memory: '32Mi' } },
  };
}

function proxyContainer(o: InjectOptions, certs: boolean): Obj {
  const secure = o.secure !== undefined && o.bootstrapConfigMap === undefined;
  const probe = { httpGet: { path: '/healthz/ready', port: MESH_PORTS.health } };
  const c: Obj = {
    name: PROXY_CONTAINER,
    image: o.image,
    args: [
      '--bootstrap', `${BOOTSTRAP_DIR}/bootstrap.yaml`,
      '--stats-port', String(MESH_PORTS.prometheus),
      '--health-port', String(MESH_PORTS.health),
      '--drain-time-s', String(o.drainTimeS),
    ],
    ports: [
      { name: 'http-envoy-prom', containerPort: MESH_PORTS.prometheus, protocol: 'TCP' },
      { name: 'health', containerPort: MESH_PORTS.health, protocol: 'TCP' },
    ],
    // Until the first configuration arrives the app must not start (native sidecars: the next
    // containers wait for this probe); then readiness follows the proxy's own state.
    startupProbe: { ...probe, periodSeconds: 1, timeoutSeconds: 3, failureThreshold: 600 },
    readinessProbe: { ...probe, periodSeconds: 15, timeoutSeconds: 3, failureThreshold: 4 },
    securityContext: {
      runAsUser: o.proxyUid,
      runAsGroup: o.proxyUid,
      runAsNonRoot: true,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    },
    resources: { requests: { cpu: '100m', memory: '128Mi' } },
    volumeMounts: [
      { name: BOOTSTRAP_VOLUME, mountPath: BOOTSTRAP_DIR, readOnly: true },
      ...(certs ? [{ name: CERTS_VOLUME, mountPath: CERTS_DIR, readOnly: true }] : []),
      ...(secure
        ? [
            { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true },
            { name: ROOT_VOLUME, mountPath: ROOT_DIR, readOnly: true },
          ]
        : []),
    ],
  };
  if (o.nativeSidecar) c.restartPolicy = 'Always';
  else
    c.lifecycle = {
      // Hold the app containers until the proxy is ready (Istio's holdApplicationUntilProxyStarts).
      postStart: { exec: { command: ['/nodejs/bin/node', '/app/bin/meshlet.js', 'wait', '--timeout', '60'] } },
    };
  return c;
}

/** The ConfigMap document holding a generated bootstrap. */
export function bootstrapConfigMap(name: string, namespace: string, bootstrap: string): Obj {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'meshlet-inject' } },
    data: { 'bootstrap.yaml': bootstrap },
  };
}

interface DocOut {
  /** Untouched document (printed as parsed) or a replacement object. */
  readonly doc?: Document;
  readonly obj?: unknown;
}

class Injector {
  readonly injected: string[] = [];
  readonly skipped: string[] = [];
  readonly warnings: string[] = [];
  /** `namespace/name` of ConfigMaps present in the input or already generated. */
  readonly configMaps = new Set<string>();
  readonly newConfigMaps: Obj[] = [];

  constructor(private readonly o: InjectOptions) {}

  /** Injects one object in place; returns true when something changed. */
  visit(obj: unknown, inheritedNs?: string): boolean {
    if (!isObj(obj)) return false;
    const kind = typeof obj.kind === 'string' ? obj.kind : '';
    if (kind === 'List' && Array.isArray(obj.items)) {
      let changed = false;
      for (const it of obj.items) changed = this.visit(it, inheritedNs) || changed;
      return changed;
    }
    const path = templatePath(kind);
    if (!path) return false;
    const meta = isObj(obj.metadata) ? obj.metadata : {};
    const name = typeof meta.name === 'string' ? meta.name : '';
    const ns = typeof meta.namespace === 'string' ? meta.namespace : (inheritedNs ?? this.o.defaultNamespace);
    const id = `${kind}/${ns}/${name || '(unnamed)'}`;
    const tpl = getPath(obj, path);
    const spec = tpl && isObj(tpl.spec) ? tpl.spec : undefined;
    if (!tpl || !spec || !Array.isArray(spec.containers)) {
      this.skipped.push(`${id}: no pod template with containers`);
      return false;
    }
    const tmeta = isObj(tpl.metadata) ? tpl.metadata : {};
    const ann = isObj(tmeta.annotations) ? tmeta.annotations : {};
    const labels = isObj(tmeta.labels) ? tmeta.labels : {};
    if (ann[STATUS_ANNOTATION] !== undefined) {
      this.skipped.push(`${id}: already injected`);
      return false;
    }
    for (const key of [INJECT_ANNOTATION, 'sidecar.istio.io/inject']) {
      if (falsy(ann[key]) || falsy(labels[key])) {
        this.skipped.push(`${id}: ${key} is "false"`);
        return false;
      }
    }
    if (spec.hostNetwork === true) {
      this.skipped.push(`${id}: hostNetwork pods are not injected (the rules would capture the node's traffic)`);
      return false;
    }
    const containers = spec.containers as Obj[];
    const taken = [...containers, ...(Array.isArray(spec.initContainers) ? (spec.initContainers as Obj[]) : [])];
    const clash = taken.find((c) => c.name === PROXY_CONTAINER || c.name === INIT_CONTAINER);
    if (clash) {
      this.skipped.push(`${id}: a container is already named ${String(clash.name)}`);
      return false;
    }
    if (!name) {
      this.skipped.push(`${id}: a workload needs metadata.name (it names the mesh workload and its bootstrap)`);
      return false;
    }
    // Bootstrap: a named ConfigMap, or one generated for node id <name>.<namespace>.
    let cmName = this.o.bootstrapConfigMap;
    if (!cmName) {
      cmName = `meshlet-bootstrap-${name}`.slice(0, 253);
      const key = `${ns}/${cmName}`;
      if (!this.configMaps.has(key)) {
        this.configMaps.add(key);
        const cluster = typeof labels.app === 'string' ? labels.app : name;
        const telemetryLabels: Record<string, string> = {};
        for (const k of ['app', 'version', 'service.istio.io/canonical-name', 'service.istio.io/canonical-revision'])
          if (typeof labels[k] === 'string') telemetryLabels[k] = labels[k] as string;
        const text = sidecarBootstrapYaml({
          nodeId: `${name}.${ns}`,
          cluster,
          namespace: ns,
          workloadName: name,
          labels: telemetryLabels,
          controlPlane: this.o.controlPlane,
          ...(this.o.secure ? { secure: { address: this.o.secure.address, tokenFile: TOKEN_FILE, rootCertFile: ROOT_CERT_FILE } } : {}),
        });
        this.newConfigMaps.push(bootstrapConfigMap(cmName, ns, text));
      }
    }
    const certs = this.o.certSecret !== undefined;
    const init = initContainer(ann, this.o);
    const proxy = proxyContainer(this.o, certs);
    const inits = listAt(spec, 'initContainers');
    if (this.o.nativeSidecar) inits.unshift(init, proxy);
    else {
      inits.unshift(init);
      containers.unshift(proxy);
      if (kind === 'Job' || kind === 'CronJob')
        this.warnings.push(`${id}: without a native sidecar the Job never completes unless the app POSTs /quitquitquit to 127.0.0.1:15000`);
    }
    const volumes = listAt(spec, 'volumes');
    volumes.push({ name: BOOTSTRAP_VOLUME, configMap: { name: cmName } });
    if (certs) volumes.push({ name: CERTS_VOLUME, secret: { secretName: this.o.certSecret } });
    const secure = this.o.secure !== undefined && this.o.bootstrapConfigMap === undefined;
    if (secure) {
      // Istio's istio-token volume: a short-lived token the kubelet rotates, for the control plane only.
      volumes.push({
        name: TOKEN_VOLUME,
        projected: { sources: [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: 43200, path: 'istio-token' } }] },
      });
      volumes.push({ name: ROOT_VOLUME, configMap: { name: this.o.secure!.rootConfigMap } });
    }

    const appContainers = containers.filter((c) => c.name !== PROXY_CONTAINER);
    if (falsy(ann[REWRITE_PROBES_ANNOTATION])) {
      for (const c of appContainers) {
        for (const p of ['livenessProbe', 'readinessProbe', 'startupProbe'] as const) {
          const pr = c[p];
          if (isObj(pr) && isObj(pr.httpGet) && pr.httpGet.port !== undefined) {
            this.warnings.push(
              `${id}: container ${String(c.name)} ${p} httpGet on port ${String(pr.httpGet.port)} is captured and reaches the inbound mTLS listener, where kubelet's plain HTTP fails (${REWRITE_PROBES_ANNOTATION} is "false"); exclude that port with traffic.sidecar.istio.io/excludeInboundPorts, probe a separate port, or use a tcpSocket/exec probe`,
            );
          }
        }
      }
    } else {
      // Istio's probe rewriting: the kubelet asks the agent port, the sidecar probes the app.
      const { probers, warnings } = rewriteAppProbes(appContainers, MESH_PORTS.agent);
      for (const w of warnings) this.warnings.push(`${id}: ${w}`);
      if (Object.keys(probers).length > 0) {
        (proxy.args as string[]).push('--status-port', String(MESH_PORTS.agent));
        proxy.env = [{ name: 'ISTIO_KUBE_APP_PROBERS', value: JSON.stringify(probers) }];
      }
    }
    const newMeta = objAt(tpl, 'metadata');
    const annotations = objAt(newMeta, 'annotations');
    annotations[STATUS_ANNOTATION] = JSON.stringify({
      version: this.o.version,
      initContainers: this.o.nativeSidecar ? [INIT_CONTAINER, PROXY_CONTAINER] : [INIT_CONTAINER],
      containers: this.o.nativeSidecar ? [] : [PROXY_CONTAINER],
      volumes: [BOOTSTRAP_VOLUME, ...(certs ? [CERTS_VOLUME] : []), ...(secure ? [TOKEN_VOLUME, ROOT_VOLUME] : [])],
      bootstrap: cmName,
    });
    annotations['prometheus.io/scrape'] ??= 'true';
    annotations['prometheus.io/port'] ??= String(MESH_PORTS.prometheus);
    annotations['prometheus.io/path'] ??= '/stats/prometheus';
    if (appContainers[0] && typeof appContainers[0].name === 'string')
      annotations['kubectl.kubernetes.io/default-container'] ??= appContainers[0].name;
    this.injected.push(id);
    return true;
  }
}

/** Checks options that do not depend on the manifests; throws ConfigError listing each problem. */
export function validateInjectOptions(o: InjectOptions): void {
  const issues: { path: string; message: string }[] = [];
  try {
    splitHostPort(o.controlPlane);
  } catch (e) {
    issues.push({ path: '--control-plane', message: (e as Error).message });
  }
  if (!Number.isInteger(o.proxyUid) || o.proxyUid < 1 || o.proxyUid > 2 ** 31 - 1)
    issues.push({ path: '--proxy-uid', message: 'must be a non-zero numeric UID (Istio: 1337)' });
  if (!o.image) issues.push({ path: '--image', message: 'is required' });
  if (!Number.isFinite(o.drainTimeS) || o.drainTimeS < 0) issues.push({ path: '--drain-time-s', message: 'must be a non-negative number' });
  if (o.secure) {
    try {
      splitHostPort(o.secure.address);
    } catch (e) {
      issues.push({ path: '--control-plane-tls', message: (e as Error).message });
    }
    if (!o.secure.rootConfigMap) issues.push({ path: '--root-configmap', message: 'is required with --control-plane-tls' });
    if (o.bootstrapConfigMap !== undefined)
      issues.push({ path: '--control-plane-tls', message: 'applies to generated bootstraps; with --bootstrap-configmap the bootstrap is yours' });
  }
  if (issues.length) throw new ConfigError('meshlet inject options', issues);
}

/**
 * Injects every workload in a YAML stream. Untouched documents keep their text (comments
 * included); injected ones are re-serialised, preceded by their generated bootstrap ConfigMap.
 * Throws ConfigError when the input is not valid YAML.
 */
export function injectYaml(input: string, o: InjectOptions): InjectResult {
  validateInjectOptions(o);
  // The one bounded parser (common/yaml.ts): size cap, linear duplicate-key check, alias
  // expansion bounded per document; every problem is a ConfigError naming its document and line.
  const parsed = parseYamlStream(input);
  if (!parsed.ok) throw new ConfigError('meshlet inject: input is not valid YAML', parsed.errors);
  const docs = parsed.docs.map((d) => d.doc);
  const inj = new Injector(o);
  const values = parsed.docs.map((d) => d.value);
  for (const v of values) {
    for (const item of isObj(v) && v.kind === 'List' && Array.isArray(v.items) ? v.items : [v]) {
      if (isObj(item) && item.kind === 'ConfigMap' && isObj(item.metadata) && typeof item.metadata.name === 'string') {
        const ns = typeof item.metadata.namespace === 'string' ? item.metadata.namespace : o.defaultNamespace;
        inj.configMaps.add(`${ns}/${item.metadata.name}`);
      }
    }
  }
  const out: DocOut[] = [];
  docs.forEach((d, i) => {
    if (d.contents === null) {
      if (d.toString().replace(/^---\s*$/m, '').trim() !== '') out.push({ doc: d });
      return;
    }
    const v = values[i];
    const before = inj.newConfigMaps.length;
    if (inj.visit(v)) {
      for (const cm of inj.newConfigMaps.slice(before)) out.push({ obj: cm });
      out.push({ obj: v });
    } else out.push({ doc: d });
  });
  const text = out
    .map((x) => {
      const s = x.doc ? x.doc.toString() : stringify(x.obj, { lineWidth: 0, aliasDuplicateObjects: false });
      return s.replace(/^---\n/, '').replace(/\n*$/, '\n');
    })
    .join('---\n');
  return { yaml: text, injected: inj.injected, skipped: inj.skipped, warnings: inj.warnings };
}
