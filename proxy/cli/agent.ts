/**
 * `meshlet agent`: pilot-agent's job inside an Istio pod. Builds the bootstrap from the
 * environment Istio's injector sets (POD_NAME, POD_NAMESPACE, INSTANCE_IP, SERVICE_ACCOUNT,
 * ISTIO_META_*, ISTIO_METAJSON_*, PROXY_CONFIG, CA_ADDR) and the files it mounts (the projected
 * token, the mesh root, the downward-API labels), writes it, and runs `meshlet proxy` on it with
 * Istio's 15090 and 15021 ports; serves the agent port (15020: readiness, the app probes of
 * ISTIO_KUBE_APP_PROBERS, merged metrics). `--print` writes the bootstrap to stdout and exits.
 */
import { readFile, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentBootstrap, ISTIO_PATHS } from '../agent/bootstrap';
import { parseBootstrapText } from '../config/bootstrap';
import { ConfigError, formatIssues } from '../../common/errors';
import { parseCommandArgs } from './args';

const USAGE = `meshlet agent [--print] [--output FILE] [--token FILE] [--root-cert FILE] [-- proxy flags]

  Reads Istio's pod environment (POD_NAME, POD_NAMESPACE, INSTANCE_IP, SERVICE_ACCOUNT,
  ISTIO_META_*, ISTIO_METAJSON_*, PROXY_CONFIG, CA_ADDR) and runs meshlet proxy with the
  bootstrap pilot-agent would give Envoy, ADS going to istiod with the pod's token.

      --print           write the bootstrap (JSON) to stdout and exit
      --output FILE     where to write the bootstrap (default: a temporary file)
      --token FILE      the projected service-account token (default ${ISTIO_PATHS.token})
      --root-cert FILE  the mesh root certificate (default ${ISTIO_PATHS.rootCert})
      --status-port N   the agent port: /healthz/ready, /app-health/…, merged /stats/prometheus
                        (default PROXY_CONFIG statusPort, else 15020; "off" to disable)
  Anything after -- goes to meshlet proxy (default: --stats-port 15090 --health-port 15021).`;

async function optionalFile(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

export async function runAgent(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  const own = dash >= 0 ? argv.slice(0, dash) : argv;
  const proxyArgs = dash >= 0 ? argv.slice(dash + 1) : ['--stats-port', '15090', '--health-port', '15021'];
  const args = parseCommandArgs(own, USAGE, {
    print: { type: 'boolean' },
    output: { type: 'string' },
    token: { type: 'string' },
    'root-cert': { type: 'string' },
    'status-port': { type: 'string' },
  });
  if (!args) return 0;
  const env = process.env;
  let proxyConfig: unknown;
  try {
    // PROXY_CONFIG is the ProxyConfig as YAML or JSON; CA_ADDR overrides its discoveryAddress.
    proxyConfig = env.PROXY_CONFIG ? parseBootstrapText(env.PROXY_CONFIG, 'PROXY_CONFIG.yaml') : {};
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`meshlet agent: invalid PROXY_CONFIG\n${formatIssues(err.issues)}\n`);
      return 1;
    }
    throw err;
  }
  if (env.CA_ADDR && proxyConfig && typeof proxyConfig === 'object')
    proxyConfig = { ...(proxyConfig as Record<string, unknown>), discoveryAddress: env.CA_ADDR };
  const built = agentBootstrap({
    env,
    proxyConfig,
    podLabelsFile: await optionalFile(ISTIO_PATHS.podLabels),
    podAnnotationsFile: await optionalFile(ISTIO_PATHS.podAnnotations),
    ...(typeof args.token === 'string' ? { tokenFile: args.token } : {}),
    ...(typeof args['root-cert'] === 'string' ? { rootCertFile: args['root-cert'] } : {}),
  });
  const text = `${JSON.stringify(built.bootstrap, null, 2)}\n`;
  if (args.print) {
    process.stdout.write(text);
    return 0;
  }
  const file = typeof args.output === 'string' ? args.output : join(await mkdtemp(join(tmpdir(), 'meshlet-agent-')), 'envoy-rev.json');
  await writeFile(file, text);
  const pc = (built.bootstrap.node as { metadata: { PROXY_CONFIG: { statusPort?: unknown } } }).metadata.PROXY_CONFIG;
  const statusFlag = typeof args['status-port'] === 'string' ? args['status-port'] : String(typeof pc.statusPort === 'number' ? pc.statusPort : 15020);
  const { runProxy } = await import('./proxy');
  // meshlet proxy serves the agent port once its admin port is bound.
  return runProxy(['--bootstrap', file, '--status-port', statusFlag, ...proxyArgs]);
}
