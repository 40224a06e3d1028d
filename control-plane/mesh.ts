/**
 * The mesh file: one YAML document describing a whole mesh on loopback (or any reachable IPs) —
 * trust domain, services and their ports, workloads with their app addresses and sidecar ports,
 * traffic rules (version splits, retries, timeouts) and authorization rules.
 *
 * Owns the schema and its validation (style rule 1): `parseMesh` walks the raw YAML with the shared
 * Reader, collects every problem with its path, cross-checks references (a workload's service, a
 * split's version, a rule's target, address collisions, an app address per target port), and
 * returns a frozen `Mesh` or the issues.
 * Leans strict: any error rejects the whole file, and the server keeps serving the previous mesh.
 *
 * Example (see control-plane/examples/bookinfo.yaml for a full one):
 *
 *   trust_domain: cluster.local
 *   mtls: STRICT            # or PERMISSIVE: inbound ports also accept plaintext (per workload too)
 *   capture: none           # or iptables: Istio's 15001/15006 virtual listeners on 0.0.0.0 (per
 *                           #   workload too, with outbound_port: 15001), for `meshlet iptables` pods
 *   outbound_traffic_policy: ALLOW_ANY   # or REGISTRY_ONLY: unknown destinations (15001 / explicit proxy)
 *   (workload) explicit_proxy_port: 15001   # without capture: HTTP_PROXY=http://<outbound_ip>:15001
 *   services:
 *     - { name: reviews, namespace: default, ports: [{ name: http, port: 9080, protocol: http }] }
 *   workloads:
 *     - { name: reviews-v1, namespace: default, service_account: reviews, service: reviews,
 *         version: v1, address: "127.0.0.11:9080", inbound_port: 15006, admin_port: 15000 }
 *   traffic:
 *     - { service: reviews, splits: [{ version: v1, weight: 90 }, { version: v2, weight: 10 }],
 *         timeout: 2s, retries: { attempts: 2, per_try_timeout: 0.5s, retry_on: "5xx,reset" } }
 *   authorization:
 *     - { service: reviews, action: ALLOW, from: [{ service_account: productpage }] }
 */
import { isIPv4 } from 'node:net';
import { parseYaml } from '../common/yaml';
import { formatSpiffeId, isValidSegment, isValidTrustDomain, parseSpiffeId } from '../certs/identity';
import { Issues, Reader } from '../common/reader';
import { ConfigError, type FieldIssue } from '../common/errors';
import {
  type AuthzRule,
  type AuthzSource,
  type HostPort,
  type Mesh,
  type MeshService,
  type MeshWorkload,
  CAPTURE_MODES,
  MTLS_MODES,
  OUTBOUND_TRAFFIC_POLICIES,
  type PortProtocol,
  PROTOCOLS,
  type RetryRule,
  type ServicePort,
  type TrafficRule,
} from './mesh-model';

export * from './mesh-model';

export type MeshParseResult =
  | { readonly ok: true; readonly mesh: Mesh; readonly warnings: readonly FieldIssue[] }
  | { readonly ok: false; readonly errors: readonly FieldIssue[]; readonly warnings: readonly FieldIssue[] };

const DEFAULT_RETRY_ON = 'connect-failure,refused-stream,unavailable,cancelled,5xx';

function freeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) freeze(x);
  }
  return v;
}

function name(r: Reader, key: string, def?: string): string {
  const v = def === undefined ? r.requiredStr(key) : r.str(key, def);
  if (v !== '' && !isValidSegment(v)) r.error(key, `"${v}" is not a valid name (letters, digits, ".", "_", "-")`);
  return v;
}

function parseHostPort(v: unknown, path: string, issues: Issues): HostPort | undefined {
  if (typeof v !== 'string') {
    issues.error(path, 'expected "IP:port", e.g. "127.0.0.11:9080"');
    return undefined;
  }
  const i = v.lastIndexOf(':');
  const host = v.slice(0, i);
  const port = Number(v.slice(i + 1));
  if (i < 0 || !isIPv4(host) || !Number.isInteger(port) || port < 1 || port > 65535) {
    issues.error(path, `expected "IPv4:port" with a port 1-65535, got ${JSON.stringify(v)}`);
    return undefined;
  }
  return { host, port };
}

/**
 * Each target port of the workload's service needs an app address with that port: the generators
 * deliver a port to the address whose port is its target_port and otherwise to the first address,
 * which for a service with several target ports sends one port's traffic to another port's app.
 * Only a single address for a service with a single target port may differ (a warning: it is used).
 */
function checkAppAddresses(
  w: Reader,
  wName: string,
  key: string,
  svc: MeshService,
  addresses: readonly HostPort[],
): void {
  const targets = [...new Set(svc.ports.map((p) => p.targetPort))];
  if (targets.length > 1 || addresses.length > 1) {
    for (const p of svc.ports) {
      if (addresses.some((a) => a.port === p.targetPort)) continue;
      w.error(
        key,
        `workload ${wName} has no address for port ${p.port} of service ${svc.name} (target_port ${p.targetPort}); ` +
          `list one "IP:port" per target port in addresses (have ${addresses.map((a) => `${a.host}:${a.port}`).join(', ')})`,
      );
    }
  } else if (addresses.length === 1 && addresses[0]!.port !== targets[0]) {
    const a = addresses[0]!;
    w.warnAt(
      key,
      `port ${svc.ports[0]!.port} of service ${svc.name} has target_port ${targets[0]} but workload ${wName}'s app is ` +
        `${a.host}:${a.port}; traffic goes to ${a.host}:${a.port} (set target_port: ${a.port} to silence this)`,
    );
  }
  if (targets.length === 1 && addresses.length === 1) return;
  for (const [i, a] of addresses.entries()) {
    if (targets.includes(a.port)) continue;
    const at = key === 'address' ? key : `${key}[${i}]`;
    w.warnAt(at, `${a.host}:${a.port} is no target_port of service ${svc.name}; nothing is sent to it`);
  }
}

/** Parse and validate mesh YAML text. Never throws. */
export function parseMesh(text: string): MeshParseResult {
  const issues = new Issues();
  // Bounded (size, alias expansion) and never throwing: a bad edit, a YAML bomb included, is
  // reported and the running control plane keeps its previous mesh (issue 18.4).
  const parsed = parseYaml(text);
  if (!parsed.ok) return { ok: false, errors: parsed.errors, warnings: [] };
  const mesh = validateMesh(parsed.value, issues);
  if (!issues.ok || !mesh) return { ok: false, errors: issues.errors, warnings: issues.warnings };
  return { ok: true, mesh: freeze(mesh), warnings: issues.warnings };
}

/** Parse, throwing ConfigError listing every problem (CLI start-up). */
export function parseMeshOrThrow(text: string, source = 'mesh file'): { mesh: Mesh; warnings: readonly FieldIssue[] } {
  const r = parseMesh(text);
  if (!r.ok) throw new ConfigError(`${source} is invalid`, r.errors);
  return { mesh: r.mesh, warnings: r.warnings };
}

function validateMesh(raw: unknown, issues: Issues): Mesh | undefined {
  const root = Reader.of(raw ?? {}, '', issues);
  if (!root) return undefined;
  const trustDomain = root.str('trust_domain', 'cluster.local');
  if (!isValidTrustDomain(trustDomain))
    root.error('trust_domain', `"${trustDomain}" is not a valid SPIFFE trust domain`);
  const clusterDomain = root.str('cluster_domain', 'cluster.local');
  const ns0 = root.str('default_namespace', 'default');
  const meshMtls = root.enumOf('mtls', MTLS_MODES, 'STRICT');
  const meshCapture = root.enumOf('capture', CAPTURE_MODES, 'none');
  const outboundTrafficPolicy = root.enumOf('outbound_traffic_policy', OUTBOUND_TRAFFIC_POLICIES, 'ALLOW_ANY');

  // ── services
  const services: MeshService[] = [];
  const serviceKey = new Map<string, MeshService>();
  for (const s of root.arr('services')) {
    const sName = name(s, 'name');
    const ns = name(s, 'namespace', ns0);
    const ports: ServicePort[] = [];
    const seen = new Set<number>();
    for (const p of s.arr('ports')) {
      const port = p.int('port', 0, 1, 65535);
      if (!p.has('port')) p.error('port', 'is required');
      const protocol = p.enumOf('protocol', PROTOCOLS, 'http');
      const targetPort = p.int('target_port', port, 1, 65535);
      const pName = p.str('name', protocol);
      if (seen.has(port)) p.error('port', `port ${port} is listed twice for service ${sName}`);
      seen.add(port);
      ports.push({ name: pName, port, protocol, targetPort });
      p.done();
    }
    if (ports.length === 0) s.error('ports', 'at least one port is required');
    const svc: MeshService = { name: sName, namespace: ns, host: `${sName}.${ns}.svc.${clusterDomain}`, ports };
    const key = `${ns}/${sName}`;
    if (serviceKey.has(key)) s.error('name', `service ${sName} in namespace ${ns} is defined twice`);
    serviceKey.set(key, svc);
    services.push(svc);
    s.done();
  }

  if (services.length === 0 && !root.has('services'))
    root.error('services', 'is required (an empty mesh file is rejected)');
  // ── workloads
  const workloads: MeshWorkload[] = [];
  const workloadKey = new Set<string>();
  const bound = new Map<string, string>(); // "ip:port" → what binds it
  const bind = (r: Reader, key: string, hp: string, what: string) => {
    const prev = bound.get(hp);
    if (prev) r.error(key, `${hp} is already used by ${prev}`);
    else bound.set(hp, what);
  };
  const wReaders: Reader[] = root.arr('workloads');
  for (const w of wReaders) {
    const wName = name(w, 'name');
    const ns = name(w, 'namespace', ns0);
    const sa = name(w, 'service_account', 'default');
    const service = name(w, 'service');
    const version = w.str('version', 'v1');
    const addresses: HostPort[] = [];
    const single = w.raw('address');
    const many = w.list('addresses');
    if (single !== undefined && many.length > 0) w.error('addresses', 'set either address or addresses, not both');
    const rawAddrs = single !== undefined ? [single] : many;
    rawAddrs.forEach((a, i) => {
      const hp = parseHostPort(a, single !== undefined ? w.sub('address') : `${w.sub('addresses')}[${i}]`, issues);
      if (hp) addresses.push(hp);
    });
    if (rawAddrs.length === 0) w.error('address', 'is required (the app\'s "IP:port")');
    const ip = addresses[0]?.host ?? '127.0.0.1';
    const inboundPort = w.int('inbound_port', 15006, 1, 65535);
    const adminPort = w.int('admin_port', 15000, 1, 65535);
    const outboundIp = w.str('outbound_ip', ip);
    const mtls = w.enumOf('mtls', MTLS_MODES, meshMtls);
    const capture = w.enumOf('capture', CAPTURE_MODES, meshCapture);
    const outboundPort = capture === 'iptables' ? w.int('outbound_port', 15001, 1, 65535) : undefined;
    const explicitProxyPort = w.has('explicit_proxy_port') ? w.int('explicit_proxy_port', 15001, 1, 65535) : undefined;
    if (explicitProxyPort !== undefined && capture === 'iptables')
      w.error('explicit_proxy_port', "is for workloads without capture (a captured pod's 15001 is virtualOutbound)");
    if (capture !== 'iptables' && w.has('outbound_port')) {
      w.error('outbound_port', 'is only used with capture: iptables');
      w.raw('outbound_port');
    }
    if (!isIPv4(outboundIp)) w.error('outbound_ip', `expected an IPv4 address, got "${outboundIp}"`);
    const key = `${ns}/${wName}`;
    if (workloadKey.has(key)) w.error('name', `workload ${wName} in namespace ${ns} is defined twice`);
    workloadKey.add(key);
    const svc = serviceKey.get(`${ns}/${service}`);
    if (service && !svc) w.error('service', `unknown service "${service}" in namespace ${ns}`);
    for (const [i, a] of addresses.entries()) bind(w, `addresses[${i}]`, `${a.host}:${a.port}`, `app of ${wName}`);
    bind(w, 'inbound_port', `${ip}:${inboundPort}`, `sidecar inbound of ${wName}`);
    bind(w, 'admin_port', `${ip}:${adminPort}`, `sidecar admin of ${wName}`);
    if (explicitProxyPort !== undefined && capture !== 'iptables')
      bind(w, 'explicit_proxy_port', `${outboundIp}:${explicitProxyPort}`, `sidecar explicit proxy of ${wName}`);
    // A captured workload's 15001/15006 bind 0.0.0.0 in its own network namespace: no collision check.
    // Every address parsed (a malformed one is already an error): each target port needs its app.
    if (svc && addresses.length > 0 && addresses.length === rawAddrs.length)
      checkAppAddresses(w, wName, single !== undefined ? 'address' : 'addresses', svc, addresses);
    let spiffeId = '';
    if (isValidTrustDomain(trustDomain) && isValidSegment(ns) && isValidSegment(sa))
      spiffeId = formatSpiffeId(trustDomain, ns, sa);
    workloads.push({
      name: wName,
      namespace: ns,
      serviceAccount: sa,
      service,
      version,
      addresses,
      ip,
      inboundPort,
      adminPort,
      outboundIp,
      spiffeId,
      mtls,
      ...(capture === 'iptables' ? { capture, outboundPort } : {}),
      ...(explicitProxyPort !== undefined && capture !== 'iptables' ? { explicitProxyPort } : {}),
    });
    w.done();
  }
  if (wReaders.length === 0 && !root.has('workloads'))
    root.error('workloads', 'is required (an empty mesh file is rejected)');
  // Outbound listeners bind <outbound_ip>:<service port> for every service port in the mesh.
  const outboundIps = new Map<string, string>();
  // Captured workloads have no bound per-service listeners (they are virtual, behind 15001).
  for (const w of workloads) if (w.capture !== 'iptables' && !outboundIps.has(w.outboundIp)) outboundIps.set(w.outboundIp, w.name);
  for (const [ip, who] of outboundIps) {
    for (const s of services) {
      for (const p of s.ports) {
        const prev = bound.get(`${ip}:${p.port}`);
        if (prev)
          issues.error(
            'workloads',
            `outbound listener ${ip}:${p.port} (service ${s.name}, sidecar of ${who}) collides with ${prev}; give the workload another outbound_ip`,
          );
      }
    }
  }
  // tcp ports cannot be shared: a tcp_proxy listener has no host to route on.
  const byPort = new Map<number, { svc: MeshService; protocol: PortProtocol }[]>();
  for (const s of services)
    for (const p of s.ports) byPort.set(p.port, [...(byPort.get(p.port) ?? []), { svc: s, protocol: p.protocol }]);
  for (const [port, users] of byPort) {
    if (users.length > 1 && users.some((u) => u.protocol === 'tcp')) {
      issues.error(
        'services',
        `port ${port} is a tcp port shared by ${users.map((u) => u.svc.name).join(', ')}; tcp service ports must be unique`,
      );
    } else if (users.length > 1 && new Set(users.map((u) => (u.protocol === 'http' ? 'http' : 'h2'))).size > 1) {
      issues.error(
        'services',
        `port ${port} is used with different HTTP protocols by ${users.map((u) => u.svc.name).join(', ')}`,
      );
    }
  }
  for (const s of services) {
    if (!workloads.some((w) => w.service === s.name && w.namespace === s.namespace)) {
      issues.warn(`services`, `service ${s.name}.${s.namespace} has no workloads`);
    }
  }

  // ── traffic rules
  const traffic: TrafficRule[] = [];
  const trafficSeen = new Set<string>();
  for (const t of root.arr('traffic')) {
    const service = name(t, 'service');
    const ns = name(t, 'namespace', ns0);
    const svc = serviceKey.get(`${ns}/${service}`);
    if (service && !svc) t.error('service', `unknown service "${service}" in namespace ${ns}`);
    if (trafficSeen.has(`${ns}/${service}`))
      t.error('service', `a traffic rule for ${service}.${ns} is already defined`);
    trafficSeen.add(`${ns}/${service}`);
    const versions = new Set(
      workloads.filter((w) => w.service === service && w.namespace === ns).map((w) => w.version),
    );
    const splits: { version: string; weight: number }[] = [];
    for (const sp of t.arr('splits')) {
      const version = sp.requiredStr('version');
      const weight = sp.int('weight', 0, 0, 1_000_000);
      if (!sp.has('weight')) sp.error('weight', 'is required');
      if (svc && version && !versions.has(version)) {
        sp.error(
          'version',
          `no workload of ${service} has version "${version}" (known: ${[...versions].join(', ') || 'none'})`,
        );
      }
      if (splits.some((x) => x.version === version)) sp.error('version', `version "${version}" is listed twice`);
      splits.push({ version, weight });
      sp.done();
    }
    if (splits.length > 0 && splits.every((s) => s.weight === 0)) t.error('splits', 'weights must not all be 0');
    let retries: RetryRule | undefined;
    const rr = t.obj('retries');
    if (rr) {
      const retryOn = rr.str('retry_on', DEFAULT_RETRY_ON);
      retries = {
        attempts: rr.int('attempts', 2, 0, 100),
        perTryTimeoutMs: rr.durationMs('per_try_timeout', 0),
        retryOn,
      };
      rr.done();
    }
    const timeoutMs = t.durationMs('timeout');
    if (svc && svc.ports.every((p) => p.protocol === 'tcp') && (rr || timeoutMs !== undefined)) {
      issues.warn(
        t.sub(rr ? 'retries' : 'timeout'),
        `service ${service} has only tcp ports: retries and timeout do not apply (splits do)`,
      );
    }
    traffic.push({ service, namespace: ns, splits, retries, timeoutMs });
    t.done();
  }

  // ── authorization rules
  const authorization: AuthzRule[] = [];
  for (const [i, a] of root.arr('authorization').entries()) {
    const service = name(a, 'service');
    const ns = name(a, 'namespace', ns0);
    const svc = serviceKey.get(`${ns}/${service}`);
    if (service && !svc) a.error('service', `unknown service "${service}" in namespace ${ns}`);
    const ruleName = a.str('name', `${service}-${i}`);
    const action = a.enumOf('action', ['ALLOW', 'DENY'] as const, 'ALLOW');
    const from: AuthzSource[] = [];
    for (const f of a.arr('from')) {
      const key = f.oneof(['service_account', 'principal', 'namespace', 'any'] as const);
      if (key === 'service_account') {
        const sa = name(f, 'service_account');
        const sns = f.has('namespace') ? name(f, 'namespace') : ns;
        const id =
          isValidTrustDomain(trustDomain) && isValidSegment(sns) && isValidSegment(sa)
            ? formatSpiffeId(trustDomain, sns, sa)
            : '';
        from.push({ kind: 'service_account', namespace: sns, serviceAccount: sa, spiffeId: id });
      } else if (key === 'principal') {
        const p = f.requiredStr('principal');
        const parsed = parseSpiffeId(p.includes('://') ? p : `spiffe://${p}`);
        if ('error' in parsed) f.error('principal', parsed.error);
        else from.push({ kind: 'principal', spiffeId: parsed.uri });
      } else if (key === 'namespace') {
        from.push({ kind: 'namespace', namespace: name(f, 'namespace') });
      } else if (key === 'any') {
        if (f.bool('any', false) !== true) f.error('any', 'only `any: true` is meaningful');
        from.push({ kind: 'any' });
      } else {
        issues.error(f.path, 'set one of service_account, principal, namespace or any');
      }
      f.done();
    }
    if (from.length === 0 && !a.has('from')) a.error('from', 'is required (use [{ any: true }] to match every caller)');
    const paths = a.strList('paths');
    for (const [j, p] of paths.entries())
      if (!p.startsWith('/')) issues.error(`${a.sub('paths')}[${j}]`, `path prefix must start with "/", got "${p}"`);
    if (paths.length > 0 && svc?.ports.every((p) => p.protocol === 'tcp')) {
      a.error('paths', `service ${service} has only tcp ports; paths cannot be matched`);
    }
    authorization.push({ name: ruleName, service, namespace: ns, action, from, paths });
    a.done();
  }
  root.done();
  return { trustDomain, clusterDomain, mtls: meshMtls, outboundTrafficPolicy, services, workloads, traffic, authorization };
}
