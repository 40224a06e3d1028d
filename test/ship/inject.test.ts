/**
 * `meshlet inject` on the sample manifests in test/ship/fixtures, checked field by field: the
 * sidecar appears once (native: an init container with restartPolicy Always, after meshlet-init),
 * the init container's iptables flags (Istio annotations mapped, accepted by the real
 * `meshlet iptables --dry-run`), Istio's ports, UID 1337, probes on 15021, the status and
 * Prometheus annotations, a generated bootstrap the real decoder accepts, idempotence on
 * re-injection, and documents that are not workloads (or opted out) left untouched.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { initImageFor, runInject } from '../../proxy/cli/inject';
import { runIptables } from '../../proxy/cli/iptables';
import { decodeBootstrap, parseBootstrapText } from '../../proxy/config/bootstrap';
import { ConfigError } from '../../common/errors';
import { type InjectOptions, injectYaml, STATUS_ANNOTATION } from '../../proxy/inject/inject';
import { createRegistries } from '../../proxy/registry';

const FIX = join(__dirname, 'fixtures');
const fixture = (n: string) => readFileSync(join(FIX, n), 'utf8');

const OPTS: InjectOptions = {
  image: 'registry.example/meshlet:1.2.3',
  initImage: 'registry.example/meshlet-init:1.2.3',
  controlPlane: 'meshlet-control-plane.meshlet-system.svc.cluster.local:15010',
  proxyUid: 1337,
  nativeSidecar: true,
  defaultNamespace: 'default',
  drainTimeS: 5,
  version: 'test',
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed manifests are walked freely in assertions
type Obj = Record<string, any>;
const docs = (text: string): Obj[] => parseAllDocuments(text).map((d) => d.toJS() as Obj);
const find = (ds: Obj[], kind: string, name: string) => ds.find((d) => d.kind === kind && d.metadata?.name === name)!;
const flag = (args: string[], f: string) => args[args.indexOf(f) + 1];

/** Runs `meshlet iptables --dry-run` with the given args; returns its exit code and output. */
async function iptablesDryRun(args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const w = vi.spyOn(process.stdout, 'write').mockImplementation((c) => {
    out += String(c);
    return true;
  });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c) => {
    out += String(c);
    return true;
  });
  try {
    return { code: await runIptables([...args, '--dry-run']), out };
  } finally {
    w.mockRestore();
    e.mockRestore();
  }
}

describe('meshlet inject: workloads', () => {
  const result = injectYaml(fixture('app.yaml'), OPTS);
  const out = docs(result.yaml);
  const tpl = (kind: string, name: string) => {
    const d = find(out, kind, name);
    return kind === 'Pod' ? d : d.spec.template;
  };

  it('reports what it injected', () => {
    expect(result.injected).toEqual(['Deployment/shop/backend-v1', 'StatefulSet/shop/cache', 'Job/shop/migrate']);
    expect(result.skipped).toEqual([]);
  });

  it('adds meshlet-init then the native meshlet-proxy sidecar, once, before existing init containers', () => {
    for (const [kind, name] of [['Deployment', 'backend-v1'], ['StatefulSet', 'cache'], ['Job', 'migrate']] as const) {
      const spec = tpl(kind, name).spec;
      const names = spec.initContainers.map((c: Obj) => c.name);
      expect(names.slice(0, 2)).toEqual(['meshlet-init', 'meshlet-proxy']);
      expect(names.filter((n: string) => n === 'meshlet-proxy')).toHaveLength(1);
      expect(spec.containers.map((c: Obj) => c.name)).not.toContain('meshlet-proxy');
      expect(spec.initContainers[1].restartPolicy).toBe('Always');
      expect(spec.initContainers[0].restartPolicy).toBeUndefined();
    }
    expect(tpl('StatefulSet', 'cache').spec.initContainers.map((c: Obj) => c.name)).toEqual(['meshlet-init', 'meshlet-proxy', 'fix-perms']);
    expect(tpl('StatefulSet', 'cache').spec.volumes.map((v: Obj) => v.name)).toEqual(['data', 'meshlet-bootstrap']);
  });

  it('the sidecar runs as 1337 with probes on 15021 /healthz/ready and ports 15090/15021', () => {
    const proxy = tpl('Deployment', 'backend-v1').spec.initContainers[1];
    expect(proxy.image).toBe(OPTS.image);
    expect(proxy.securityContext).toMatchObject({
      runAsUser: 1337,
      runAsGroup: 1337,
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(proxy.securityContext.capabilities.add).toBeUndefined();
    for (const p of [proxy.readinessProbe, proxy.startupProbe]) expect(p.httpGet).toEqual({ path: '/healthz/ready', port: 15021 });
    expect(proxy.ports.map((p: Obj) => p.containerPort).sort()).toEqual([15021, 15090]);
    expect(proxy.args).toEqual([
      '--bootstrap', '/etc/meshlet/bootstrap.yaml', '--stats-port', '15090', '--health-port', '15021', '--drain-time-s', '5',
      // The app's readiness probe moved to the agent port (see the probe rewriting test).
      '--status-port', '15020',
    ]);
    expect(proxy.volumeMounts).toEqual([{ name: 'meshlet-bootstrap', mountPath: '/etc/meshlet', readOnly: true }]);
  });

  it('the init container runs meshlet iptables as root with NET_ADMIN/NET_RAW and Istio annotations as flags', async () => {
    const init = tpl('Deployment', 'backend-v1').spec.initContainers[0];
    expect(init.image).toBe(OPTS.initImage);
    expect(init.command).toEqual(['/usr/local/bin/node', '/app/bin/meshlet.js']);
    expect(init.securityContext).toMatchObject({ runAsUser: 0, runAsNonRoot: false, privileged: false });
    expect(init.securityContext.capabilities).toEqual({ add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] });
    const args: string[] = init.args;
    expect(args[0]).toBe('iptables');
    expect(flag(args, '--proxy-port')).toBe('15001');
    expect(flag(args, '--inbound-capture-port')).toBe('15006');
    expect(flag(args, '--proxy-uid')).toBe('1337');
    expect(flag(args, '--proxy-gid')).toBe('1337');
    expect(flag(args, '--exclude-outbound-ports')).toBe('5432');
    expect(flag(args, '--exclude-outbound-cidrs')).toBe('169.254.169.254/32');
    expect(flag(args, '--exclude-inbound-ports')).toBe('15090,15021,15020');
    // The real command accepts exactly these flags, and the plan carries them.
    const r = await iptablesDryRun(args.slice(1));
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/ISTIO_OUTPUT .*--dport 5432 -j RETURN|--dport 5432.*RETURN/);
    expect(r.out).toContain('169.254.169.254/32');
    expect(r.out).toMatch(/--uid-owner 1337/);
    expect(r.out).toMatch(/--to-ports? 15001/);
    expect(r.out).toMatch(/--to-ports? 15006/);
    // Without annotations: defaults, no outbound exclusions.
    const plain: string[] = tpl('StatefulSet', 'cache').spec.initContainers[0].args;
    expect(plain).not.toContain('--exclude-outbound-ports');
    expect(flag(plain, '--exclude-outbound-cidrs')).toBe('');
    expect((await iptablesDryRun(plain.slice(1))).code).toBe(0);
    // --native-nftables passes through, and the real command plans one nft table with the same exclusions.
    const nft = injectYaml(fixture('app.yaml'), { ...OPTS, nativeNftables: true });
    const nftArgs: string[] = find(docs(nft.yaml), 'Deployment', 'backend-v1').spec.template.spec.initContainers[0].args;
    expect(nftArgs.at(-1)).toBe('--native-nftables');
    const planned = await iptablesDryRun(nftArgs.slice(1));
    expect(planned.code, planned.out).toBe(0);
    expect(planned.out).toContain('add table inet istio-proxy-nat');
    expect(planned.out).toContain('5432');
  });

  it('annotates the template (status, Prometheus scrape, default container) and keeps user annotations', () => {
    const ann = tpl('Deployment', 'backend-v1').metadata.annotations;
    expect(JSON.parse(ann[STATUS_ANNOTATION])).toEqual({
      version: 'test',
      initContainers: ['meshlet-init', 'meshlet-proxy'],
      containers: [],
      volumes: ['meshlet-bootstrap'],
      bootstrap: 'meshlet-bootstrap-backend-v1',
    });
    expect(ann['prometheus.io/scrape']).toBe('true');
    expect(ann['prometheus.io/port']).toBe('15090');
    expect(ann['prometheus.io/path']).toBe('/stats/prometheus');
    expect(ann['kubectl.kubernetes.io/default-container']).toBe('app');
    expect(ann['traffic.sidecar.istio.io/excludeOutboundPorts']).toBe('5432');
    // The Job's template had no metadata at all.
    expect(tpl('Job', 'migrate').metadata.annotations[STATUS_ANNOTATION]).toBeDefined();
    expect(find(out, 'Deployment', 'backend-v1').metadata.annotations).toBeUndefined();
  });

  it('generates one bootstrap ConfigMap per workload that the real bootstrap decoder accepts', () => {
    const cms = out.filter((d) => d.kind === 'ConfigMap' && d.metadata.name.startsWith('meshlet-bootstrap-'));
    expect(cms.map((c) => `${c.metadata.namespace}/${c.metadata.name}`)).toEqual([
      'shop/meshlet-bootstrap-backend-v1',
      'shop/meshlet-bootstrap-cache',
      'shop/meshlet-bootstrap-migrate',
    ]);
    const cm = find(out, 'ConfigMap', 'meshlet-bootstrap-backend-v1');
    expect(tpl('Deployment', 'backend-v1').spec.volumes).toEqual([{ name: 'meshlet-bootstrap', configMap: { name: 'meshlet-bootstrap-backend-v1' } }]);
    const { bootstrap, warnings } = decodeBootstrap(parseBootstrapText(cm.data['bootstrap.yaml'], 'bootstrap.yaml'), {
      httpFilters: createRegistries().httpFilters,
    });
    expect(warnings).toEqual([]);
    expect(bootstrap.node.id).toBe('backend-v1.shop');
    expect(bootstrap.node.cluster).toBe('backend');
    // Telemetry reads Istio's node metadata for the local workload's labels.
    expect(bootstrap.node.metadata).toEqual({ NAMESPACE: 'shop', WORKLOAD_NAME: 'backend-v1', CLUSTER_ID: 'Kubernetes', LABELS: { app: 'backend', version: 'v1' } });
    expect(bootstrap.admin?.address).toMatchObject({ host: '127.0.0.1', port: 15000 });
    // Listeners (virtualOutbound 15001, virtualInbound 15006) come from the control plane.
    expect(bootstrap.staticResources.listeners).toEqual([]);
    const xds = bootstrap.staticResources.clusters.find((c) => c.name === 'xds-grpc')!;
    expect(xds.type).toBe('STRICT_DNS');
    expect(JSON.stringify(xds)).toContain('meshlet-control-plane.meshlet-system.svc.cluster.local');
  });

  it('leaves documents that are not workloads untouched, comments included', () => {
    expect(result.yaml.startsWith('# Sample manifests for `meshlet inject`')).toBe(true);
    expect(result.yaml).toContain('greeting: hello # a comment that must survive');
    const input = docs(fixture('app.yaml'));
    for (const [kind, name] of [['Namespace', 'shop'], ['Service', 'backend'], ['ConfigMap', 'settings']] as const)
      expect(find(out, kind, name)).toEqual(find(input, kind, name));
    // The app containers are unchanged but for the probe moved to the agent port.
    const before = find(input, 'Deployment', 'backend-v1').spec.template.spec.containers;
    expect(tpl('Deployment', 'backend-v1').spec.containers).toEqual([
      { ...before[0], readinessProbe: { httpGet: { path: '/app-health/app/readyz', port: 15020, scheme: 'HTTP' } } },
    ]);
  });

  it("moves the app's probes to the agent port as Istio's injector does, with the originals in ISTIO_KUBE_APP_PROBERS", () => {
    expect(result.warnings).toEqual([]);
    const proxy = tpl('Deployment', 'backend-v1').spec.initContainers[1];
    expect(proxy.env).toEqual([
      { name: 'ISTIO_KUBE_APP_PROBERS', value: JSON.stringify({ '/app-health/app/readyz': { httpGet: { path: '/', port: 8080 } } }) },
    ]);
    // tcpSocket and grpc probes (named ports resolved) move too; exec probes stay; the opt-out keeps them and warns.
    const pod = (probes: Obj, annotations: Obj = {}) =>
      `apiVersion: v1\nkind: Pod\nmetadata: { name: p, namespace: shop, annotations: ${JSON.stringify(annotations)} }\nspec:\n  containers:\n  - ${JSON.stringify({ name: 'web', image: 'x', ports: [{ name: 'http', containerPort: 8080 }], ...probes })}\n`;
    const r = injectYaml(
      pod({
        livenessProbe: { tcpSocket: { port: 'http' }, periodSeconds: 7 },
        startupProbe: { grpc: { port: 9090 }, timeoutSeconds: 2 },
        readinessProbe: { exec: { command: ['true'] } },
      }),
      OPTS,
    );
    const web = docs(r.yaml).find((d) => d.kind === 'Pod')!.spec.containers.find((c: Obj) => c.name === 'web');
    expect(web.livenessProbe).toEqual({ periodSeconds: 7, httpGet: { path: '/app-health/web/livez', port: 15020, scheme: 'HTTP' } });
    expect(web.startupProbe).toEqual({ timeoutSeconds: 2, httpGet: { path: '/app-health/web/startupz', port: 15020, scheme: 'HTTP' } });
    expect(web.readinessProbe).toEqual({ exec: { command: ['true'] } });
    const sidecar = docs(r.yaml).find((d) => d.kind === 'Pod')!.spec.initContainers.find((c: Obj) => c.name === 'meshlet-proxy');
    expect(JSON.parse(sidecar.env[0].value)).toEqual({
      '/app-health/web/livez': { tcpSocket: { port: 8080 } },
      '/app-health/web/startupz': { grpc: { port: 9090 }, timeoutSeconds: 2 },
    });
    const off = injectYaml(pod({ readinessProbe: { httpGet: { path: '/', port: 8080 } } }, { 'sidecar.istio.io/rewriteAppHTTPProbers': 'false' }), OPTS);
    expect(off.warnings[0]).toMatch(/Pod\/shop\/p: container web readinessProbe httpGet on port 8080 is captured/);
  });

  it('is idempotent: injecting its own output changes nothing', () => {
    const again = injectYaml(result.yaml, OPTS);
    expect(again.yaml).toBe(result.yaml);
    expect(again.injected).toEqual([]);
    expect(again.skipped).toEqual([
      'Deployment/shop/backend-v1: already injected',
      'StatefulSet/shop/cache: already injected',
      'Job/shop/migrate: already injected',
    ]);
  });
});

describe('meshlet inject: the authenticated path (--control-plane-tls)', () => {
  const secure = { address: 'meshlet-control-plane.meshlet-system.svc:15012', rootConfigMap: 'meshlet-root-cert' };
  const out = docs(injectYaml(fixture('app.yaml'), { ...OPTS, secure }).yaml);
  const spec = find(out, 'Deployment', 'backend-v1').spec.template.spec;

  it('mounts a projected service-account token (audience istio-ca) and the mesh root into the sidecar only', () => {
    expect(spec.volumes).toContainEqual({
      name: 'istio-token',
      projected: { sources: [{ serviceAccountToken: { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' } }] },
    });
    expect(spec.volumes).toContainEqual({ name: 'meshlet-root', configMap: { name: 'meshlet-root-cert' } });
    const proxy = spec.initContainers[1];
    expect(proxy.volumeMounts).toEqual([
      { name: 'meshlet-bootstrap', mountPath: '/etc/meshlet', readOnly: true },
      { name: 'istio-token', mountPath: '/var/run/secrets/tokens', readOnly: true },
      { name: 'meshlet-root', mountPath: '/var/run/secrets/meshlet/root', readOnly: true },
    ]);
    for (const c of spec.containers) expect(JSON.stringify(c.volumeMounts ?? [])).not.toContain('istio-token');
  });

  it('writes a bootstrap with ADS over TLS carrying the token and the CSR provider (key made in the pod), no plaintext xds cluster', () => {
    const cm = find(out, 'ConfigMap', 'meshlet-bootstrap-backend-v1');
    const { bootstrap, warnings } = decodeBootstrap(parseBootstrapText(cm.data['bootstrap.yaml'], 'bootstrap.yaml'), {
      httpFilters: createRegistries().httpFilters,
    });
    expect(warnings).toEqual([]);
    expect(bootstrap.staticResources.clusters.map((c) => c.name)).not.toContain('xds-grpc');
    expect(bootstrap.node.metadata?.MESHLET_CERT_PROVIDER).toMatchObject({
      kind: 'istio_csr',
      ca_address: secure.address,
      token_file: '/var/run/secrets/tokens/istio-token',
      root_cert_file: '/var/run/secrets/meshlet/root/root-cert.pem',
    });
    const text = cm.data['bootstrap.yaml'] as string;
    expect(text).toMatch(/target_uri: "?meshlet-control-plane\.meshlet-system\.svc:15012"?/);
    expect(text).toMatch(/ssl_credentials: \{ root_certs: \{ filename: \/var\/run\/secrets\/meshlet\/root\/root-cert.pem \} \}/);
    expect(text).toContain('secret_data: { filename: /var/run/secrets/tokens/istio-token }');
  });

  it('rejects a bad TLS address and a user bootstrap with it', () => {
    expect(() => injectYaml('', { ...OPTS, secure: { ...secure, address: 'nope' } })).toThrow(ConfigError);
    expect(() => injectYaml('', { ...OPTS, secure, bootstrapConfigMap: 'mine' })).toThrow(/--control-plane-tls/);
  });
});

describe('meshlet inject: opt-outs, lists, options', () => {
  it('skips hostNetwork and opted-out workloads, leaving them exactly as they were', () => {
    const input = fixture('skip.yaml');
    const r = injectYaml(input, OPTS);
    expect(r.injected).toEqual([]);
    expect(r.skipped.map((s) => s.split(':')[0])).toEqual(['DaemonSet/kube-system/node-agent', 'Deployment/shop/legacy', 'Pod/shop/debug']);
    expect(docs(r.yaml)).toEqual(docs(input));
  });

  it('injects Pods and CronJobs inside a List; a regular sidecar container when native sidecars are off', () => {
    const r = injectYaml(fixture('pod-list.yaml'), { ...OPTS, nativeSidecar: false });
    expect(r.injected).toEqual(['Pod/default/client', 'CronJob/jobs/report']);
    const list = docs(r.yaml).find((d) => d.kind === 'List')!;
    const pod = list.items[0];
    expect(pod.spec.containers.map((c: Obj) => c.name)).toEqual(['meshlet-proxy', 'curl']);
    expect(pod.spec.initContainers.map((c: Obj) => c.name)).toEqual(['meshlet-init']);
    const proxy = pod.spec.containers[0];
    expect(proxy.restartPolicy).toBeUndefined();
    expect(proxy.lifecycle.postStart.exec.command).toEqual(['/nodejs/bin/node', '/app/bin/meshlet.js', 'wait', '--timeout', '60']);
    expect(JSON.parse(pod.metadata.annotations[STATUS_ANNOTATION]).containers).toEqual(['meshlet-proxy']);
    const cron = list.items[1].spec.jobTemplate.spec.template.spec;
    expect(cron.containers.map((c: Obj) => c.name)).toEqual(['meshlet-proxy', 'report']);
    expect(r.warnings.some((w) => w.startsWith('CronJob/jobs/report: without a native sidecar'))).toBe(true);
    expect(docs(r.yaml).filter((d) => d.kind === 'ConfigMap').map((d) => `${d.metadata.namespace}/${d.metadata.name}`)).toEqual([
      'default/meshlet-bootstrap-client',
      'jobs/meshlet-bootstrap-report',
    ]);
  });

  it('uses a named bootstrap ConfigMap, a cert Secret, another UID and mesh-wide exclusions', () => {
    const r = injectYaml(fixture('app.yaml'), {
      ...OPTS,
      bootstrapConfigMap: 'istiod-bootstrap',
      certSecret: 'workload-certs',
      proxyUid: 2000,
      excludeOutboundCidrs: '10.0.0.0/8',
      excludeInboundPorts: '9999',
    });
    const ds = docs(r.yaml);
    expect(ds.filter((d) => d.kind === 'ConfigMap').map((d) => d.metadata.name)).toEqual(['settings']);
    const spec = find(ds, 'StatefulSet', 'cache').spec.template.spec;
    expect(spec.volumes.slice(1)).toEqual([
      { name: 'meshlet-bootstrap', configMap: { name: 'istiod-bootstrap' } },
      { name: 'meshlet-certs', secret: { secretName: 'workload-certs' } },
    ]);
    const [init, proxy] = spec.initContainers;
    expect(proxy.securityContext).toMatchObject({ runAsUser: 2000, runAsGroup: 2000 });
    expect(proxy.volumeMounts[1]).toEqual({ name: 'meshlet-certs', mountPath: '/etc/certs', readOnly: true });
    expect(flag(init.args, '--proxy-uid')).toBe('2000');
    expect(flag(init.args, '--exclude-outbound-cidrs')).toBe('10.0.0.0/8');
    expect(flag(init.args, '--exclude-inbound-ports')).toBe('9999,15090,15021,15020');
    // A workload's own annotation wins over the mesh-wide default.
    const backendInit = find(ds, 'Deployment', 'backend-v1').spec.template.spec.initContainers[0];
    expect(flag(backendInit.args, '--exclude-outbound-cidrs')).toBe('169.254.169.254/32');
  });

  it('rejects bad options and bad YAML with every problem listed', () => {
    let err: unknown;
    try {
      injectYaml(fixture('app.yaml'), { ...OPTS, controlPlane: 'no-port', proxyUid: 0 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues.map((i) => i.path)).toEqual(['--control-plane', '--proxy-uid']);
    expect(() => injectYaml('kind: Pod\nmetadata: [unclosed\n', OPTS)).toThrow(ConfigError);
  });

  it('parses through the bounded YAML parser: an alias bomb, duplicate keys and oversize input are ConfigErrors', () => {
    const issues = (text: string): readonly { path: string; message: string }[] => {
      try {
        injectYaml(text, OPTS);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as ConfigError).issues;
      }
      throw new Error('no error');
    };
    // Billion laughs: 10 levels of 10 aliases (10^10 expansions) in the second document.
    let bomb = 'a0: &a0 [x]\n';
    for (let i = 1; i <= 10; i++) bomb += `a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]\n`;
    const b = issues(`kind: ConfigMap\nmetadata: { name: ok }\n---\n${bomb}`);
    expect(b[0]!.path).toBe('document 2');
    expect(b[0]!.message).toMatch(/alias/i);
    const d = issues('kind: Pod\nmetadata: { name: p }\n---\nkind: Pod\nmetadata: { name: q }\nkind: Service\n');
    expect(d).toEqual([{ path: 'document 2, line 6', message: 'invalid YAML: map keys must be unique ("kind" repeats)' }]);
    expect(issues(`# ${'x'.repeat(17 * 1024 * 1024)}\n`)[0]!.message).toMatch(/over the .*-byte limit/);
  });
});

describe('meshlet inject: the command', () => {
  it('derives the init image from the sidecar image', () => {
    expect(initImageFor('meshlet:0.1.0')).toBe('meshlet-init:0.1.0');
    expect(initImageFor('registry.example:5000/team/meshlet:1.2')).toBe('registry.example:5000/team/meshlet-init:1.2');
    expect(initImageFor('ghcr.io/x/meshlet@sha256:abc')).toBe('ghcr.io/x/meshlet-init@sha256:abc');
    expect(initImageFor('meshlet')).toBe('meshlet-init');
  });

  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('the installed bin reads stdin (-f -) and writes applyable YAML to stdout', () => {
    const bin = join(__dirname, '../../bin/meshlet.js');
    const r = spawnSync(process.execPath, [bin, 'inject', '-f', '-', '--image', 'reg.example/meshlet:9'], {
      input: fixture('app.yaml'),
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('meshlet inject: injected StatefulSet/shop/cache');
    const out = docs(r.stdout);
    const spec = find(out, 'StatefulSet', 'cache').spec.template.spec;
    expect(spec.initContainers.slice(0, 2).map((c: Obj) => c.image)).toEqual(['reg.example/meshlet-init:9', 'reg.example/meshlet:9']);
  });

  it('reads -f, writes -o, reports to stderr, and the output re-injects to itself', async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshlet-inject-'));
    const o1 = join(dir, 'out1.yaml');
    const o2 = join(dir, 'out2.yaml');
    let err = '';
    const e = vi.spyOn(process.stderr, 'write').mockImplementation((c) => {
      err += String(c);
      return true;
    });
    try {
      expect(await runInject(['-f', join(FIX, 'app.yaml'), '-o', o1, '--image', 'm:1', '--control-plane', '10.96.0.20:15010'])).toBe(0);
      expect(await runInject(['-f', o1, '-o', o2, '--image', 'm:1', '--control-plane', '10.96.0.20:15010'])).toBe(0);
      expect(await runInject(['-f', join(FIX, 'app.yaml'), '--proxy-uid', 'root'])).toBe(1);
      expect(await runInject(['--image', 'x'])).toBe(1);
    } finally {
      e.mockRestore();
    }
    expect(err).toContain('meshlet inject: injected Deployment/shop/backend-v1');
    expect(err).toContain('left unchanged Deployment/shop/backend-v1: already injected');
    expect(err).toContain('--proxy-uid: must be a non-zero numeric UID');
    expect(err).toContain('-f FILE (or -f - for stdin) is required');
    const first = readFileSync(o1, 'utf8');
    expect(readFileSync(o2, 'utf8')).toBe(first);
    // --image m:1 without --init-image → m-init:1
    const backend = find(docs(first), 'Deployment', 'backend-v1').spec.template.spec;
    expect(backend.initContainers.map((c: Obj) => c.image)).toEqual(['m-init:1', 'm:1']);
    const cm = find(docs(first), 'ConfigMap', 'meshlet-bootstrap-backend-v1');
    expect(cm.data['bootstrap.yaml']).toMatch(/type: STATIC\n/);
    expect(cm.data['bootstrap.yaml']).toMatch(/address: "?10\.96\.0\.20"?, port_value: 15010/);
    expect(injectYaml('', OPTS).yaml).toBe('');
  });
});
