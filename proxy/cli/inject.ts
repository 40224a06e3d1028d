/**
 * `meshlet inject -f FILE|-`: add the meshlet sidecar and interception init container to the
 * workloads of Kubernetes YAML, like `istioctl kube-inject`; writes the result to stdout or
 * --output. What is injected, skipped and worth a warning goes to stderr, so stdout stays
 * applyable: `meshlet inject -f app.yaml | kubectl apply -f -`.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { ConfigError, formatIssues } from '../../common/errors';
import { type InjectOptions, injectYaml } from '../inject/inject';
import { parseCommandArgs } from './args';
import { VERSION } from '../../common/version';

export const DEFAULT_CONTROL_PLANE = 'meshlet-control-plane.meshlet-system.svc.cluster.local:15010';

const USAGE = `meshlet inject -f FILE|- [-o FILE] [options]

  Adds to every Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and CronJob template:
  the meshlet-init container (meshlet iptables, root, NET_ADMIN/NET_RAW), the meshlet-proxy
  sidecar (UID 1337, probes on 15021 /healthz/ready, metrics on 15090), the bootstrap volume and
  the sidecar.meshlet.io/status annotation. Already injected workloads and every other document
  are left as they are. Istio's traffic.sidecar.istio.io/* annotations become iptables flags.

  -f, --filename FILE             manifests to read (multi-document YAML); "-" = stdin
  -o, --output FILE               write here instead of stdout
      --image IMAGE               sidecar image (default meshlet:${VERSION})
      --init-image IMAGE          init image with iptables (default: the --image repository
                                  with -init appended, e.g. meshlet-init:${VERSION})
      --control-plane HOST:PORT   ADS address written into generated bootstraps
                                  (default ${DEFAULT_CONTROL_PLANE})
      --control-plane-tls HOST:PORT
                                  the authenticated path: ADS and certificates (CSR, key made in
                                  the pod) over the control plane's TLS port with the pod's
                                  projected service-account token (audience istio-ca), e.g.
                                  meshlet-control-plane.meshlet-system.svc:15012
      --root-configmap NAME       ConfigMap (key root-cert.pem) with the mesh root the control
                                  plane's certificate is verified against (default
                                  meshlet-root-cert; with --control-plane-tls)
      --bootstrap-configmap NAME  use this ConfigMap (key bootstrap.yaml) for every workload instead
                                  of generating meshlet-bootstrap-<workload> with node.id <workload>.<ns>
      --cert-secret NAME          also mount this Secret at /etc/certs (file-based certificates)
      --proxy-uid UID             proxy UID and GID, excluded from capture (default 1337)
      --no-native-sidecar         a regular first container that holds the app until ready,
                                  instead of an init container with restartPolicy: Always
      --native-nftables           the init container writes one nftables table (nft) instead of
                                  iptables rules
      --namespace NS              namespace for documents that name none (default "default")
      --exclude-outbound-cidrs L  mesh-wide default for traffic.sidecar.istio.io/excludeOutboundIPRanges
      --exclude-outbound-ports L  mesh-wide default for traffic.sidecar.istio.io/excludeOutboundPorts
      --exclude-inbound-ports L   mesh-wide default for traffic.sidecar.istio.io/excludeInboundPorts
                                  (15090,15021,15020 are always excluded)
      --drain-time-s N            the proxy's drain time on shutdown (default 5)`;

/**
 * The init image that goes with a sidecar image: the same repository with `-init` appended to its
 * last path segment, same tag (`registry.example/meshlet:1.2` → `registry.example/meshlet-init:1.2`),
 * as the Dockerfile's `init` target is meant to be tagged.
 */
export function initImageFor(image: string): string {
  const slash = image.lastIndexOf('/');
  const at = image.indexOf('@', slash + 1);
  const colon = image.indexOf(':', slash + 1);
  const end = at >= 0 ? at : colon >= 0 ? colon : image.length;
  return `${image.slice(0, end)}-init${image.slice(end)}`;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function runInject(argv: string[]): Promise<number> {
  let args: Record<string, string | boolean | undefined> | undefined;
  try {
    args = parseCommandArgs(argv, USAGE, {
      filename: { type: 'string', short: 'f' },
      output: { type: 'string', short: 'o' },
      image: { type: 'string' },
      'init-image': { type: 'string' },
      'control-plane': { type: 'string' },
      'bootstrap-configmap': { type: 'string' },
      'cert-secret': { type: 'string' },
      'proxy-uid': { type: 'string' },
      'no-native-sidecar': { type: 'boolean' },
      'native-nftables': { type: 'boolean' },
      namespace: { type: 'string' },
      'exclude-outbound-cidrs': { type: 'string' },
      'exclude-outbound-ports': { type: 'string' },
      'exclude-inbound-ports': { type: 'string' },
      'drain-time-s': { type: 'string' },
      'control-plane-tls': { type: 'string' },
      'root-configmap': { type: 'string' },
    });
  } catch (e) {
    process.stderr.write(`meshlet inject: ${(e as Error).message}\n\nUsage: ${USAGE}\n`);
    return 1;
  }
  if (!args) return 0;
  const s = (k: string): string | undefined => (typeof args[k] === 'string' ? (args[k] as string) : undefined);
  const file = s('filename');
  if (file === undefined) {
    process.stderr.write(`meshlet inject: -f FILE (or -f - for stdin) is required\n\nUsage: ${USAGE}\n`);
    return 1;
  }
  if (s('root-configmap') !== undefined && s('control-plane-tls') === undefined) {
    process.stderr.write('meshlet inject: --root-configmap is used with --control-plane-tls only\n');
    return 1;
  }
  const opts: InjectOptions = {
    image: s('image') ?? `meshlet:${VERSION}`,
    initImage: s('init-image') ?? initImageFor(s('image') ?? `meshlet:${VERSION}`),
    controlPlane: s('control-plane') ?? DEFAULT_CONTROL_PLANE,
    proxyUid: s('proxy-uid') === undefined ? 1337 : /^\d+$/.test(s('proxy-uid')!) ? Number(s('proxy-uid')) : Number.NaN,
    nativeSidecar: args['no-native-sidecar'] !== true,
    nativeNftables: args['native-nftables'] === true,
    bootstrapConfigMap: s('bootstrap-configmap'),
    certSecret: s('cert-secret'),
    defaultNamespace: s('namespace') ?? 'default',
    excludeOutboundCidrs: s('exclude-outbound-cidrs'),
    excludeOutboundPorts: s('exclude-outbound-ports'),
    excludeInboundPorts: s('exclude-inbound-ports'),
    drainTimeS: s('drain-time-s') === undefined ? 5 : Number(s('drain-time-s')),
    version: VERSION,
    ...(s('control-plane-tls') !== undefined
      ? { secure: { address: s('control-plane-tls')!, rootConfigMap: s('root-configmap') ?? 'meshlet-root-cert' } }
      : {}),
  };
  let input: string;
  try {
    input = file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (e) {
    process.stderr.write(`meshlet inject: cannot read ${file}: ${(e as Error).message}\n`);
    return 1;
  }
  try {
    const r = injectYaml(input, opts);
    const out = s('output');
    if (out) await writeFile(out, r.yaml);
    else process.stdout.write(r.yaml);
    for (const x of r.injected) process.stderr.write(`meshlet inject: injected ${x}\n`);
    for (const x of r.skipped) process.stderr.write(`meshlet inject: left unchanged ${x}\n`);
    for (const w of r.warnings) process.stderr.write(`meshlet inject: warning: ${w}\n`);
    return 0;
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message.split('\n')[0]}\n${formatIssues(e.issues)}\n`);
      return 1;
    }
    throw e;
  }
}
