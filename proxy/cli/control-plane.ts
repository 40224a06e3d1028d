/**
 * `meshlet control-plane --mesh FILE [--port N] [--ca-dir DIR]`: validate the mesh file (every
 * problem reported with its path, exit 1 before binding anything), then serve it over ADS and keep
 * watching it; an invalid edit is logged and the previous mesh keeps being served. Shuts down on
 * SIGTERM/SIGINT.
 */
import { ConfigError, formatIssues } from '../../common/errors';
import { parseCommandArgs } from './args';
import { configureLogging } from '../../common/logger';

const USAGE = `meshlet control-plane --mesh FILE [--port N] [--host ADDR] [--ca-dir DIR] [--cert-ttl-s N] [--csr-port N] [--log-level LEVEL]

  -m, --mesh FILE          the mesh description (YAML; see control-plane/examples/bookinfo.yaml)
  -p, --port N             ADS gRPC port (default 15010, Istio's plaintext xDS port; 0 = any free port)
      --host ADDR          listen address (default 127.0.0.1; the ADS port is plaintext)
      --ca-dir DIR         keep the development CA here (ca-cert.pem, ca-key.pem, root-cert.pem);
                           created when absent. Default: a fresh in-memory CA per run
      --cert-ttl-s N       workload certificate lifetime in seconds (default 3600); they are
                           re-issued and pushed when half of it has passed
      --csr-port N         also serve certificate renewal by CSR (Istio CreateCertificate shape, mTLS:
                           a workload may renew only its own identity); off by default
      --validate           check the mesh file and exit
  -l, --log-level LEVEL    trace|debug|info|warn|error (default info)`;

export async function runControlPlane(argv: string[]): Promise<number> {
  const args = parseCommandArgs(argv, USAGE, {
    mesh: { type: 'string', short: 'm' },
    port: { type: 'string', short: 'p' },
    host: { type: 'string' },
    'ca-dir': { type: 'string' },
    'cert-ttl-s': { type: 'string' },
    'csr-port': { type: 'string' },
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
  const csrPort = args['csr-port'] === undefined ? undefined : Number(args['csr-port']);
  if (csrPort !== undefined && (!Number.isInteger(csrPort) || csrPort < 0 || csrPort > 65535)) {
    process.stderr.write('meshlet control-plane: --csr-port must be an integer 0-65535\n');
    return 1;
  }
  const { readFile } = await import('node:fs/promises');
  const { parseMeshOrThrow } = await import('../../control-plane/mesh');
  try {
    const { mesh, warnings } = parseMeshOrThrow(await readFile(file, 'utf8'), file);
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
  const { ControlPlaneServer } = await import('../../control-plane/server');
  const server = await ControlPlaneServer.start({
    meshFile: file,
    port,
    host: typeof args.host === 'string' ? args.host : undefined,
    caDir: typeof args['ca-dir'] === 'string' ? args['ca-dir'] : undefined,
    certLifetimeMs: ttlS * 1000,
    csrPort,
  });
  process.stdout.write(`meshlet control-plane: serving ${file} over ADS on ${server.address}\n`);
  if (server.csrPort !== undefined)
    process.stdout.write(`meshlet control-plane: CSR signing (mTLS) on port ${server.csrPort}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await server.close();
  return 0;
}
