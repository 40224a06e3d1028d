/**
 * deploy/ stays consistent with the code it configures: every manifest parses; the control plane's
 * mesh file is valid and names each workload at the pod IP its Deployment pins; the checked-in
 * app-injected.yaml is exactly `meshlet inject` of app.yaml; every sidecar follows the port, UID
 * and probe conventions; the control plane's flags are ones `meshlet control-plane` accepts; the
 * istiod bootstrap decodes once rendered and is the copy embedded in its ConfigMap.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseMesh } from '../../control-plane/mesh';
import { runControlPlane } from '../../proxy/cli/control-plane';
import { DEFAULT_CONTROL_PLANE } from '../../proxy/cli/inject';
import { decodeBootstrap, parseBootstrapText } from '../../proxy/config/bootstrap';
import { injectYaml } from '../../proxy/inject/inject';
import { createRegistries } from '../../proxy/registry';
import { VERSION } from '../../common/version';

const ROOT = join(__dirname, '../..');
/** The control plane's TLS port as the injected pods reach it (the Service's name and port). */
const SECURE_ADDRESS = 'meshlet-control-plane.meshlet-system.svc:15012';
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed manifests are walked freely in assertions
type Obj = Record<string, any>;
const docs = (p: string): Obj[] =>
  parseAllDocuments(read(p)).map((d) => {
    expect(d.errors, p).toEqual([]);
    return d.toJS() as Obj;
  });
const decode = (text: string) => decodeBootstrap(parseBootstrapText(text, 'bootstrap.yaml'), { httpFilters: createRegistries().httpFilters });

describe('deploy/kubernetes', () => {
  const cp = docs('deploy/kubernetes/control-plane.yaml');
  const app = docs('deploy/kubernetes/app-injected.yaml');
  const meshText = cp.find((d) => d.kind === 'ConfigMap')!.data['mesh.yaml'];

  it('kustomization lists files that exist; namespaces are labelled for the NetworkPolicy', () => {
    const k = docs('deploy/kubernetes/kustomization.yaml')[0]!;
    for (const f of k.resources) expect(() => read(`deploy/kubernetes/${f}`)).not.toThrow();
    const ns = docs('deploy/kubernetes/namespace.yaml');
    expect(ns.find((n) => n.metadata.name === 'shop')!.metadata.labels['meshlet.io/mesh']).toBe('enabled');
    const np = cp.find((d) => d.kind === 'NetworkPolicy')!;
    expect(np.spec.ingress[0].from[0].namespaceSelector.matchLabels).toEqual({ 'meshlet.io/mesh': 'enabled' });
  });

  it('app-injected.yaml is exactly what meshlet inject makes of app.yaml', () => {
    const r = injectYaml(read('deploy/kubernetes/app.yaml'), {
      image: `meshlet:${VERSION}`,
      initImage: `meshlet-init:${VERSION}`,
      controlPlane: DEFAULT_CONTROL_PLANE,
      proxyUid: 1337,
      nativeSidecar: true,
      defaultNamespace: 'default',
      drainTimeS: 5,
      version: VERSION,
      secure: { address: SECURE_ADDRESS, rootConfigMap: 'meshlet-root-cert' },
    });
    expect(r.warnings).toEqual([]);
    expect(
      read('deploy/kubernetes/app-injected.yaml'),
      'regenerate: meshlet inject -f deploy/kubernetes/app.yaml -o deploy/kubernetes/app-injected.yaml --control-plane-tls meshlet-control-plane.meshlet-system.svc:15012 --root-configmap meshlet-root-cert',
    ).toBe(r.yaml);
  });

  it('the mesh file is valid and each workload sits at the pod IP its Deployment pins, with its node id', () => {
    const r = parseMesh(meshText);
    expect(r.ok ? [] : r.errors).toEqual([]);
    if (!r.ok) return;
    expect(r.warnings).toEqual([]);
    const deployments = app.filter((d) => d.kind === 'Deployment');
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual(r.mesh.workloads.map((w) => w.name).sort());
    for (const w of r.mesh.workloads) {
      const d = deployments.find((x) => x.metadata.name === w.name)!;
      const tpl = d.spec.template;
      expect(d.metadata.namespace).toBe(w.namespace);
      expect(tpl.spec.serviceAccountName).toBe(w.serviceAccount);
      expect(JSON.parse(tpl.metadata.annotations['cni.projectcalico.org/ipAddrs'])).toEqual([w.ip]);
      expect(w.capture).toBe('iptables');
      const appPort = tpl.spec.containers[0].ports?.[0]?.containerPort;
      if (appPort !== undefined) expect(w.addresses[0]!.port).toBe(appPort);
      // The generated bootstrap's node id selects this workload.
      const cm = app.find((x) => x.kind === 'ConfigMap' && x.metadata.name === `meshlet-bootstrap-${w.name}`)!;
      const b = decode(cm.data['bootstrap.yaml']);
      expect(b.warnings).toEqual([]);
      expect(b.bootstrap.node.id).toBe(`${w.name}.${w.namespace}`);
      // Kubernetes Services agree with the mesh's ports.
      const svc = r.mesh.services.find((s) => s.name === w.service)!;
      const k8s = app.find((x) => x.kind === 'Service' && x.metadata.name === svc.name)!;
      expect(k8s.spec.ports.map((p: Obj) => [p.port, p.targetPort])).toEqual(svc.ports.map((p) => [p.port, p.targetPort]));
    }
  });

  it('every sidecar follows the conventions: native, UID 1337, 15021 probes, 15090 scrape annotations', () => {
    for (const d of app.filter((x) => x.kind === 'Deployment')) {
      const spec = d.spec.template.spec;
      const proxy = spec.initContainers.find((c: Obj) => c.name === 'meshlet-proxy');
      expect(proxy.restartPolicy).toBe('Always');
      expect(proxy.securityContext.runAsUser).toBe(1337);
      expect(proxy.readinessProbe.httpGet).toEqual({ path: '/healthz/ready', port: 15021 });
      const ann = d.spec.template.metadata.annotations;
      expect([ann['prometheus.io/scrape'], ann['prometheus.io/port']]).toEqual(['true', '15090']);
      // App probes go to the agent port (kubelet's plain HTTP would meet the inbound mTLS
      // listener); the sidecar runs the originals from ISTIO_KUBE_APP_PROBERS.
      for (const c of spec.containers)
        if (c.readinessProbe) expect(c.readinessProbe.httpGet).toMatchObject({ path: `/app-health/${c.name}/readyz`, port: 15020 });
      const probers = proxy.env?.find((e: Obj) => e.name === 'ISTIO_KUBE_APP_PROBERS');
      if (spec.containers.some((c: Obj) => c.readinessProbe)) expect(Object.keys(JSON.parse(probers.value))).not.toEqual([]);
    }
  });

  it('the control plane Deployment passes flags meshlet control-plane accepts, on a valid mesh', async () => {
    const dep = cp.find((d) => d.kind === 'Deployment')!;
    const c = dep.spec.template.spec.containers[0];
    expect(c.command.slice(-1)).toEqual(['control-plane']);
    const arg = (f: string) => (c.args.includes(f) ? c.args[c.args.indexOf(f) + 1] : undefined);
    expect(arg('--tls-port')).toBe('15012');
    expect(arg('--host')).toBe('0.0.0.0');
    // The authenticated path: no insecure flag, tokens checked against the API server's JWKS.
    expect(c.args.filter((a: string) => a.startsWith('--insecure'))).toEqual([]);
    expect(arg('--jwks-uri')).toBe('https://kubernetes.default.svc/openid/v1/jwks');
    expect(arg('--token-issuer')).toMatch(/^https:\/\//);
    // The CA comes from the Secret the kustomization generates, mounted at --ca-dir.
    const mount = c.volumeMounts.find((m: Obj) => m.mountPath === arg('--ca-dir'));
    const vol = dep.spec.template.spec.volumes.find((v: Obj) => v.name === mount.name);
    const k = docs('deploy/kubernetes/kustomization.yaml')[0]!;
    const caSecret = k.secretGenerator.find((g: Obj) => g.name === vol.secret.secretName);
    expect(caSecret.files.map((f: string) => f.split('/').pop()).sort()).toEqual(['ca-cert.pem', 'ca-key.pem', 'root-cert.pem']);
    const rootCm = k.configMapGenerator.find((g: Obj) => g.name === 'meshlet-root-cert');
    expect(rootCm.namespace).toBe('shop');
    // The Service and the NetworkPolicy expose the TLS port only; the pods dial it by that name.
    const svc = cp.find((d) => d.kind === 'Service')!;
    expect(svc.spec.ports.map((p: Obj) => p.port)).toEqual([15012]);
    expect(`${svc.metadata.name}.${svc.metadata.namespace}.svc:${svc.spec.ports[0].port}`).toBe(SECURE_ADDRESS);
    const np = cp.find((d) => d.kind === 'NetworkPolicy')!;
    expect(np.spec.ingress[0].ports).toEqual([{ port: 15012, protocol: 'TCP' }]);
    // Run the real command with the same flags (mesh path swapped for a copy) and --validate.
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-deploy-'));
    const file = join(dir, 'mesh.yaml');
    writeFileSync(file, meshText);
    let out = '';
    const w = vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
      out += String(s);
      return true;
    });
    try {
      const args = (c.args as string[]).map((a) => (a === '/etc/meshlet/mesh/mesh.yaml' ? file : a));
      // No API server here: the JWKS is not fetched by --validate.
      expect(await runControlPlane([...args, '--validate'])).toBe(0);
    } finally {
      w.mockRestore();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(out).toContain('valid (2 services, 2 workloads)');
  });
});

describe('deploy/istio', () => {
  const template = read('deploy/istio/bootstrap.yaml');

  it('the bootstrap decodes once the pod identity is filled in, with Istio node id and istiod TLS', () => {
    const rendered = template
      .replaceAll('${POD_NAME}', 'web-5f7c9-abcde')
      .replaceAll('${POD_NAMESPACE}', 'shop')
      .replaceAll('${INSTANCE_IP}', '10.244.1.7')
      .replaceAll('${SERVICE_ACCOUNT}', 'web');
    expect(rendered).not.toContain('${');
    const { bootstrap, warnings } = decode(rendered);
    expect(warnings).toEqual([]);
    expect(bootstrap.node.id).toBe('sidecar~10.244.1.7~web-5f7c9-abcde.shop~shop.svc.cluster.local');
    const svc = bootstrap.dynamicResources!.adsConfig!.grpcServices[0]!;
    expect(svc).toMatchObject({ kind: 'google_grpc', targetUri: 'istiod.istio-system.svc:15012' });
    expect(JSON.stringify(svc)).toContain('/var/run/secrets/istio/root-cert.pem');
    expect(bootstrap.staticResources.secrets.map((s) => s.name)).toEqual(['default', 'ROOTCA']);
  });

  it('sidecar.yaml embeds the same bootstrap and mounts what it reads', () => {
    const ds = docs('deploy/istio/sidecar.yaml');
    expect(ds.find((d) => d.kind === 'ConfigMap')!.data['bootstrap.yaml']).toBe(template);
    const spec = ds.find((d) => d.kind === 'Deployment')!.spec.template.spec;
    expect(spec.initContainers.map((c: Obj) => c.name)).toEqual(['meshlet-render', 'meshlet-init', 'meshlet-proxy']);
    const proxy = spec.initContainers[2];
    const mounts = proxy.volumeMounts.map((m: Obj) => m.mountPath);
    for (const path of ['/var/run/secrets/istio/root-cert.pem', '/etc/certs/cert-chain.pem', '/etc/certs/key.pem', '/etc/meshlet/bootstrap.yaml']) {
      expect(template.includes(path) || proxy.args.includes(path)).toBe(true);
      expect(mounts.some((m: string) => path.startsWith(`${m}/`)), path).toBe(true);
    }
    expect(spec.volumes.find((v: Obj) => v.name === 'istiod-ca-cert').configMap.name).toBe('istio-ca-root-cert');
  });
});
