/**
 * `meshlet control-plane --mesh FILE [options]`: validate the mesh file (every
 * problem reported with its path, exit 1 before binding anything), then serve it over ADS and keep
 * watching it; an invalid edit is logged and the previous mesh keeps being served. Shuts down on
 * SIGTERM/SIGINT.
 */
import { ConfigError, formatIssues } from '../../common/errors';
import { parseCommandArgs } from './args';
import { configureLogging } from '../../common/logger';

const USAGE = `meshlet control-plane --mesh FILE [options]

  -m, --mesh FILE          the mesh description (YAML; see control-plane/examples/bookinfo.yaml)
  -p, --port N             ADS gRPC port, plaintext (default 15010; 0 = any free port)
      --tls-port N|off     TLS port serving CreateCertificate and ADS, like istiod's 15012
                           (default 15012; 0 = any free port). --csr-port is an alias
      --host ADDR          listen address (default 127.0.0.1)
      --ca-dir DIR         keep the development CA here (ca-cert.pem, ca-key.pem, root-cert.pem);
                           created when absent. Default: $MESHLET_STATE_DIR/ca/<trust domain>
                           (MESHLET_STATE_DIR defaults to $XDG_STATE_HOME/meshlet, else
                           ~/.local/state/meshlet), so a restart keeps the root
      --ephemeral-ca       a fresh in-memory CA per run instead (a restart replaces the root)
      --cert-ttl-s N       workload certificate lifetime in seconds (default 3600), chosen by the CA
      --roll-root          start rolling the root in the CA directory and exit: a new root is added
                           to the trust bundle; the running control plane (it looks at the
                           directory every second) takes the roll to its end: the new root signs
                           once every workload ACKed the bundle, the old root is dropped once every
                           connected workload renewed (docs/operations.md, "Rolling the root")

  Authentication (every ADS stream and CSR must prove its service account):
      --jwks-file FILE     verify service-account tokens against this JWKS (re-read on change)
      --jwks-uri URL       … or fetch it, e.g. https://kubernetes.default.svc/openid/v1/jwks
      --jwks-ca-file FILE  roots for an https --jwks-uri
      --jwks-token-file F  bearer token for fetching --jwks-uri (the API server wants one)
      --token-issuer ISS   required "iss" (default https://kubernetes.default.svc.cluster.local)
      --token-audience A   accepted "aud", comma-separated (default istio-ca)
  Client certificates issued by this CA are accepted on the TLS port without a token.

  Local development only (both off by default; each logs a warning):
      --insecure-send-private-keys          send workload private keys over SDS
      --insecure-allow-unauthenticated-ads  accept ADS streams without credentials

      --validate           check the mesh file and exit
  -l, --log-level LEVEL    trace|debug|info|warn|error (default info)`;

/**
 * Where the CA is kept by default: a restart without --ca-dir must not replace the root (peers
 * holding different roots fail mTLS until all reconnect, issue 18.7).
 */
export function defaultCaDir(trustDomain: string, env: NodeJS.ProcessEnv = process.env): string {
  const { homedir } = require('node:os') as typeof import('node:os');
  const { join } = require('node:path') as typeof import('node:path');
  const state = env.MESHLET_STATE_DIR || join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'meshlet');
  return join(state, 'ca', trustDomain);
}

function portArg(v: unknown): number | undefined | 'bad' {
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : 'bad';
}

export async function runControlPlane(argv: string[]): Promise<number> {
  const args = parseCommandArgs(argv, USAGE, {
    mesh: { type: 'string', short: 'm' },
    port: { type: 'string', short: 'p' },
    host: { type: 'string' },
    'ca-dir': { type: 'string' },
    'cert-ttl-s': { type: 'string' },
    'csr-port': { type: 'string' },
    'ephemeral-ca': { type: 'boolean' },
    'roll-root': { type: 'boolean' },
    'tls-port': { type: 'string' },
    'jwks-file': { type: 'string' },
    'jwks-uri': { type: 'string' },
    'jwks-ca-file': { type: 'string' },
    'jwks-token-file': { type: 'string' },
    'token-issuer': { type: 'string' },
    'token-audience': { type: 'string' },
    'insecure-send-private-keys': { type: 'boolean' },
    'insecure-allow-unauthenticated-ads': { type: 'boolean' },
    validate: { type: 'boolean' },
    'log-level': { type: 'string', short: 'l' },
  });
  if (!args) return 0;
  if (typeof args['log-level'] === 'string') configureLogging({ level: args['log-level'] });
  const file = args.mesh;
  if (typeof file !== 'string') {
    process.stderr.write(`meshlet control-plane: --mesh FILE is required\n\nUsage: ${USAGE}\n`);
    return 1;
  }
  const port = args.port === undefined ? 15010 : Number(args.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write('meshlet control-plane: --port must be an integer 0-65535\n');
    return 1;
  }
  const ttlS = args['cert-ttl-s'] === undefined ? 3600 : Number(args['cert-ttl-s']);
  if (!Number.isFinite(ttlS) || ttlS < 2) {
    process.stderr.write('meshlet control-plane: --cert-ttl-s must be a number of seconds >= 2\n');
    return 1;
  }
  const tlsArg = args['tls-port'] ?? args['csr-port'];
  const csrPort = tlsArg === 'off' ? undefined : tlsArg === undefined ? 15012 : portArg(tlsArg);
  if (csrPort === 'bad') {
    process.stderr.write('meshlet control-plane: --tls-port must be an integer 0-65535 or "off"\n');
    return 1;
  }
  const jwksFile = typeof args['jwks-file'] === 'string' ? args['jwks-file'] : undefined;
  const jwksUri = typeof args['jwks-uri'] === 'string' ? args['jwks-uri'] : undefined;
  if (jwksFile && jwksUri) {
    process.stderr.write('meshlet control-plane: give --jwks-file or --jwks-uri, not both\n');
    return 1;
  }
  const str = (k: string): string | undefined => (typeof args[k] === 'string' ? (args[k] as string) : undefined);
  const tokenAuth =
    jwksFile || jwksUri
      ? {
          jwksFile,
          jwksUri,
          jwksCaFile: str('jwks-ca-file'),
          jwksTokenFile: str('jwks-token-file'),
          issuer: str('token-issuer') ?? 'https://kubernetes.default.svc.cluster.local',
          audiences: (str('token-audience') ?? 'istio-ca').split(',').map((a) => a.trim()).filter(Boolean),
        }
      : undefined;
  const { readFile } = await import('node:fs/promises');
  const { parseMeshOrThrow } = await import('../../control-plane/mesh');
  let caDir: string | undefined;
  try {
    const { mesh, warnings } = parseMeshOrThrow(await readFile(file, 'utf8'), file);
    if (typeof args['ca-dir'] === 'string') caDir = args['ca-dir'];
    else if (args['ephemeral-ca'] !== true) caDir = defaultCaDir(mesh.trustDomain);
    for (const w of warnings) process.stderr.write(`meshlet control-plane: warning: ${w.path}: ${w.message}\n`);
    if (args.validate) {
      process.stdout.write(`${file}: valid (${mesh.services.length} services, ${mesh.workloads.length} workloads)\n`);
      return 0;
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`meshlet control-plane: invalid mesh file ${file}\n${formatIssues(err.issues)}\n`);
      return 1;
    }
    throw err;
  }
  if (args['roll-root'] === true) return rollRoot(caDir, file);
  const { ControlPlaneServer } = await import('../../control-plane/server');
  const server = await ControlPlaneServer.start({
    meshFile: file,
    port,
    host: typeof args.host === 'string' ? args.host : undefined,
    caDir,
    certLifetimeMs: ttlS * 1000,
    csrPort,
    tokenAuth,
    insecureSendPrivateKeys: args['insecure-send-private-keys'] === true,
    insecureAllowUnauthenticatedAds: args['insecure-allow-unauthenticated-ads'] === true,
  });
  process.stdout.write(`meshlet control-plane: serving ${file} over ADS on ${server.address}\n`);
  const phase = server.ca.rollPhase;
  process.stdout.write(
    `meshlet control-plane: CA ${caDir ? `kept in ${caDir}` : 'in memory (--ephemeral-ca)'}${phase === 'none' ? '' : `; root roll in progress (phase ${phase})`}\n`,
  );
  if (server.csrPort !== undefined)
    process.stdout.write(`meshlet control-plane: CreateCertificate and ADS over TLS on port ${server.csrPort}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await server.close();
  return 0;
}

/** `--roll-root`: begin a root roll in the CA directory (the running control plane continues it). */
async function rollRoot(caDir: string | undefined, meshFile: string): Promise<number> {
  if (!caDir) {
    process.stderr.write('meshlet control-plane: --roll-root needs a CA directory (not --ephemeral-ca)\n');
    return 1;
  }
  const { readFile } = await import('node:fs/promises');
  const { parseMeshOrThrow } = await import('../../control-plane/mesh');
  const { DevCa } = await import('../../certs/dev-ca');
  const { mesh } = parseMeshOrThrow(await readFile(meshFile, 'utf8'), meshFile);
  const ca = await DevCa.create({ trustDomain: mesh.trustDomain, dir: caDir });
  try {
    await ca.beginRoll();
  } catch (err) {
    process.stderr.write(`meshlet control-plane: ${(err as Error).message}\n`);
    return 1;
  }
  process.stdout.write(
    `meshlet control-plane: new root added to the trust bundle in ${caDir} (phase trust); the running control plane takes the roll from here\n`,
  );
  return 0;
}
