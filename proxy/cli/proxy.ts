/**
 * `meshlet proxy --bootstrap FILE`: load and validate an Envoy v3 bootstrap (every bad field
 * reported, exit 1 before binding anything), print unsupported fields as warnings, start the
 * server, and shut down gracefully on SIGTERM/SIGINT in sidecar order (inbound stops accepting
 * and drains; outbound keeps serving the app until the drain time passes, or until no connection
 * is left with --exit-on-zero-active-connections; exit 0; a second signal exits at once).
 * Optionally serves Istio's 15090 Prometheus and 15021 readiness ports.
 */
import cluster from 'node:cluster';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { csrProviderConfigFromMetadata } from '../../certs/csr-provider';
import { decodeBootstrap, type LoadedBootstrap, parseBootstrapText } from '../config/bootstrap';
import { ConfigError, type FieldIssue, formatIssues } from '../../common/errors';
import { parseCommandArgs } from './args';
import { loadOriginalDst } from '../intercept/original-dst';
import { createRegistries } from '../registry';
import { announceWorkerAdmin, isShutdownMessage, runPrimary, workerBootstrap } from '../runtime/workers';
import { RelayedXdsClient } from '../runtime/xds-relay';
import { configureLogging, logger } from '../../common/logger';

const USAGE = `meshlet proxy --bootstrap FILE [--log-level LEVEL] [--concurrency N] [--drain-time-s N] [--drain-strategy gradual|immediate] [--stats-port 15090] [--health-port 15021] [--csds-port N]

  -c, --bootstrap FILE     Envoy v3 Bootstrap in YAML or JSON (the same file Envoy takes with -c);
                           without it, in a pod Istio injected (PROXY_CONFIG, POD_NAME,
                           POD_NAMESPACE, INSTANCE_IP set), runs as meshlet agent
  -l, --log-level LEVEL    trace|debug|info|warn|error (default info)
      --concurrency N      worker processes sharing the listeners, like Envoy's --concurrency
                           (default 1: one process). With N > 1 a primary process holds the one
                           xDS stream and the admin/stats/health ports; each worker proxies
      --drain-time-s N     seconds to drain on shutdown (SIGTERM): listeners keep accepting
                           while connections are told to close (Connection: close, GOAWAY);
                           outbound keeps serving the app meanwhile (default 5)
      --drain-strategy S   gradual (Envoy's default: ever more responses close their connection
                           as the drain time passes) or immediate (every response closes)
      --exit-on-zero-active-connections
                           stop draining as soon as no connection is left (Istio's
                           EXIT_ON_ZERO_ACTIVE_CONNECTIONS; the env variable is read too)
      --stats-port N|off   serve /stats/prometheus on N (Istio: 15090; default off)
      --health-port N|off  serve /healthz/ready on N (Istio: 15021; default off)
      --status-port N|off  serve Istio's agent port on N (15020): /healthz/ready, the app probes
                           of ISTIO_KUBE_APP_PROBERS under /app-health/, /stats/prometheus merged
                           with the app's (ISTIO_PROMETHEUS_ANNOTATIONS) (default off; not with
                           --concurrency > 1)
      --csds-port N|off    answer Envoy's CSDS (ClientStatusDiscoveryService) on 127.0.0.1:N with
                           what this proxy runs, for \`meshlet proxy-status --xds\` (default off)
      --validate           check the bootstrap and exit (like envoy --mode validate)`;

/** A port flag: undefined/"off" = disabled, else 0–65535. Throws a usage message. */
function portFlag(name: string, v: string | boolean | undefined): number | undefined {
  if (v === undefined || v === 'off') return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`--${name} must be a port number or "off"`);
  return n;
}

function warningsText(warnings: readonly FieldIssue[]): string {
  const n = warnings.length;
  return `${n} warning${n === 1 ? '' : 's'}:\n${formatIssues(warnings)}`;
}

export async function runProxy(argv: string[]): Promise<number> {
  const args = parseCommandArgs(argv, USAGE, {
    bootstrap: { type: 'string', short: 'c' },
    'log-level': { type: 'string', short: 'l' },
    'drain-time-s': { type: 'string' },
    'drain-strategy': { type: 'string' },
    concurrency: { type: 'string' },
    'exit-on-zero-active-connections': { type: 'boolean' },
    'stats-port': { type: 'string' },
    'health-port': { type: 'string' },
    'status-port': { type: 'string' },
    'csds-port': { type: 'string' },
    validate: { type: 'boolean' },
  });
  if (!args) return 0;
  if (typeof args['log-level'] === 'string') configureLogging({ level: args['log-level'] });
  const file = args.bootstrap;
  if (typeof file !== 'string') {
    process.stderr.write(`meshlet proxy: --bootstrap FILE is required (or run it in an Istio pod: see meshlet agent)\n\nUsage: ${USAGE}\n`);
    return 1;
  }
  const drainS = args['drain-time-s'] === undefined ? 5 : Number(args['drain-time-s']);
  if (!Number.isFinite(drainS) || drainS < 0) {
    process.stderr.write(`meshlet proxy: --drain-time-s must be a non-negative number\n`);
    return 1;
  }
  const drainStrategy = args['drain-strategy'] ?? 'gradual';
  if (drainStrategy !== 'gradual' && drainStrategy !== 'immediate') {
    process.stderr.write(`meshlet proxy: --drain-strategy must be gradual or immediate\n`);
    return 1;
  }
  let statsPort: number | undefined;
  let healthPort: number | undefined;
  let csdsPort: number | undefined;
  let statusPort: number | undefined;
  try {
    csdsPort = portFlag('csds-port', args['csds-port']);
    statsPort = portFlag('stats-port', args['stats-port']);
    healthPort = portFlag('health-port', args['health-port']);
    statusPort = portFlag('status-port', args['status-port']);
  } catch (err) {
    process.stderr.write(`meshlet proxy: ${(err as Error).message}\n`);
    return 1;
  }
  const concurrency = args.concurrency === undefined ? 1 : Number(args.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1024) {
    process.stderr.write(`meshlet proxy: --concurrency must be an integer from 1 to 1024\n`);
    return 1;
  }
  if (concurrency > 1 && csdsPort !== undefined) {
    process.stderr.write(`meshlet proxy: --csds-port is not supported with --concurrency > 1 yet\n`);
    return 1;
  }
  if (concurrency > 1 && statusPort !== undefined) {
    // The agent port is served next to a single process only: refuse rather than start without it
    // (a pod whose 15020 never answers is never Ready, with nothing said).
    process.stderr.write(`meshlet proxy: --status-port is not supported with --concurrency > 1 yet\n`);
    return 1;
  }
  // A --concurrency worker: node:cluster re-ran this command; the primary owns admin and xDS.
  const isWorker = concurrency > 1 && cluster.isWorker;
  const exitOnZero =
    args['exit-on-zero-active-connections'] === true || /^(1|true)$/i.test(process.env.EXIT_ON_ZERO_ACTIVE_CONNECTIONS ?? '');
  const registries = createRegistries();
  let loaded: LoadedBootstrap;
  let raw: unknown;
  try {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      process.stderr.write(`meshlet proxy: cannot read bootstrap ${file}: ${(e as Error).message}\n`);
      return 1;
    }
    raw = parseBootstrapText(text, file);
    loaded = decodeBootstrap(raw, { httpFilters: registries.httpFilters, baseDir: dirname(file) }, `bootstrap ${file}`);
    csrProviderConfigFromMetadata(loaded.bootstrap.node.metadata); // meshlet's own node.metadata block
  } catch (err) {
    if (err instanceof ConfigError) {
      // Errors and warnings both: a warning often explains an error (a field meshlet ignored).
      const n = err.issues.length;
      let text = `meshlet proxy: invalid bootstrap ${file}: ${n} error${n === 1 ? '' : 's'}\n${formatIssues(err.issues)}\n`;
      if (err.warnings.length > 0) text += `${warningsText(err.warnings)}\n`;
      process.stderr.write(text);
      return 1;
    }
    throw err;
  }
  const log = logger('main');
  if (args.validate) {
    // Synchronous plain text, warnings first: the verdict is the last line (the logger is
    // asynchronous and would interleave with it).
    if (loaded.warnings.length > 0) process.stderr.write(`${warningsText(loaded.warnings)}\n`);
    process.stdout.write(`configuration '${file}' OK\n`);
    return 0;
  }
  for (const w of loaded.warnings) log.warn({ field: w.path }, `bootstrap: ${w.path}: ${w.message}`);
  if (concurrency > 1 && !isWorker) {
    return runPrimary({
      concurrency,
      bootstrap: loaded.bootstrap,
      decodeContext: { httpFilters: registries.httpFilters, baseDir: dirname(file) },
      statsPort,
      healthPort,
    });
  }
  // Transparent interception needs SO_ORIGINAL_DST (native addon); without it, explicit mode.
  const od = loadOriginalDst();
  if (od.ok) log.debug({ addon: od.path }, 'original destination: SO_ORIGINAL_DST available');
  else log.warn({ reason: od.reason }, `original destination unavailable (${od.reason}): running in explicit mode; intercepted connections cannot be routed by their original destination`);
  // Loaded here, not at the top: a --concurrency primary never proxies and stays without it.
  const { MeshletServer } = await import('../server');
  const server = new MeshletServer({
    bootstrap: isWorker ? workerBootstrap(loaded.bootstrap) : loaded.bootstrap,
    rawBootstrap: raw,
    registries,
    drainTimeoutMs: drainS * 1000,
    drainStrategy,
    exitOnZeroActiveConnections: exitOnZero,
    telemetry: isWorker ? {} : { statsPort, healthPort },
    ...(od.ok ? { originalDst: od.resolver } : {}),
    ...(isWorker
      ? {
          adminExclusive: true,
          xdsClientFactory: RelayedXdsClient.factory(process, (m) => process.send?.(m)),
        }
      : {}),
  });
  try {
    await server.start();
  } catch (err) {
    // A worker's IPC channel keeps it alive: make sure the failure ends it (the primary exits 1).
    if (isWorker) setTimeout(() => process.exit(1), 200);
    throw err;
  }
  if (isWorker) announceWorkerAdmin(server.admin.port);
  if (statusPort !== undefined && !isWorker) {
    const { parseAppProbers } = await import('../agent/app-probers');
    const { parsePrometheusAnnotations, StatusServer } = await import('../agent/status-server');
    const env = process.env;
    const status = new StatusServer({
      port: statusPort,
      adminPort: server.admin.port,
      metrics: (write) => server.telemetry.metrics.prometheusStream(write),
      probers: parseAppProbers(env.ISTIO_KUBE_APP_PROBERS),
      ...(env.ISTIO_PROMETHEUS_ANNOTATIONS ? { appMetrics: parsePrometheusAnnotations(env.ISTIO_PROMETHEUS_ANNOTATIONS) } : {}),
    });
    await status.start();
    process.once('exit', () => void status.close());
    log.info({ port: status.port }, 'serving the agent port (/healthz/ready, /app-health/, /stats/prometheus)');
  }
  if (csdsPort !== undefined && !isWorker) {
    const { proxyClientConfig, serveCsds } = await import('../dynamic/csds');
    const csds = await serveCsds('127.0.0.1', csdsPort, () => proxyClientConfig(server.bootstrap.node, server.dynamic?.client.snapshot()));
    log.info({ address: `127.0.0.1:${csds.port}` }, 'serving CSDS');
  }
  return await new Promise<number>((resolve) => {
    let signalled = false;
    const stop = (sig: string): void => {
      if (signalled) {
        log.warn({ signal: sig }, 'second signal: exiting now');
        process.exit(1);
      }
      signalled = true;
      log.info({ signal: sig, drainMs: drainS * 1000 }, 'shutting down: draining listeners');
      void server.shutdown().then(() => {
        log.info('shutdown complete');
        resolve(0);
      });
    };
    let primaryAsked = false;
    const onSignal = (sig: string): void => {
      if (primaryAsked) {
        primaryAsked = false; // the process-group copy of the signal the primary relayed
        return;
      }
      stop(sig);
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
    if (isWorker) {
      // The primary asks for the drain over IPC (a process-group SIGTERM may arrive too: the
      // first of the two starts the drain, the other is not a "second signal").
      process.on('message', (m: unknown) => {
        if (isShutdownMessage(m) && !signalled) {
          primaryAsked = true;
          stop('primary');
        }
      });
      process.on('disconnect', () => {
        if (!signalled) stop('primary gone');
      });
    }
    process.once('meshlet:exit' as never, () => resolve(0));
  });
}
