/**
 * The `meshlet` command line: the command table, `--help`/`--version`, and the exit code. Each
 * command lives in proxy/cli/ and is loaded only when run. The strategies (load balancers, HTTP
 * filters) are registered explicitly in proxy/registry.ts; nothing registers itself on import.
 */
function inIstioPod(argv: readonly string[]): boolean {
  const env = process.env;
  const bootstrapOrHelp = argv.some((a) => /^(-c|--bootstrap|-h|--help)(=|$)/.test(a));
  return !bootstrapOrHelp && env.PROXY_CONFIG !== undefined && !!env.POD_NAME && !!env.POD_NAMESPACE && !!env.INSTANCE_IP;
}

const COMMANDS: Record<string, { summary: string; usage: string; run: (argv: string[]) => Promise<number> }> = {
  proxy: {
    summary: 'run a sidecar proxy from an Envoy v3 bootstrap file',
    usage: 'meshlet proxy --bootstrap FILE [--concurrency N] [--log-level LEVEL]',
    // Without --bootstrap, in a pod Istio's injector set up (its PROXY_CONFIG and the pod's
    // identity), meshlet does pilot-agent's job: `meshlet agent` with these flags for the proxy.
    run: async (argv) =>
      inIstioPod(argv) ? (await import('./cli/agent')).runAgent(['--', ...argv]) : (await import('./cli/proxy')).runProxy(argv),
  },
  agent: {
    summary: "do pilot-agent's job in an Istio pod: bootstrap from the pod's environment, ADS to istiod with its token",
    usage: 'meshlet agent [--print] [--token FILE] [--root-cert FILE] [-- proxy flags]',
    run: async (argv) => (await import('./cli/agent')).runAgent(argv),
  },
  'control-plane': {
    summary: 'run the embedded xDS v3 control plane for a mesh described in one YAML file',
    usage: 'meshlet control-plane --mesh FILE [--port 15010]',
    run: async (argv) => (await import('./cli/control-plane')).runControlPlane(argv),
  },
  iptables: {
    summary: 'print (--dry-run), install or remove (--cleanup) the pod traffic capture rules',
    usage: 'meshlet iptables [--dry-run] [--cleanup] [--proxy-uid 1337] [--include-outbound-cidrs *] ...',
    run: async (argv) => (await import('./cli/iptables')).runIptables(argv),
  },
  inject: {
    summary: 'add the meshlet sidecar and init container to Kubernetes YAML (like istioctl kube-inject)',
    usage: 'meshlet inject -f FILE|- [-o FILE] [--image IMAGE] [--control-plane HOST:PORT] ...',
    run: async (argv) => (await import('./cli/inject')).runInject(argv),
  },
  wait: {
    summary: 'block until the proxy is ready (/ready answers 200), for holding the app until then',
    usage: 'meshlet wait [--admin http://127.0.0.1:15000] [--timeout 60]',
    run: async (argv) => (await import('./cli/wait')).runWait(argv),
  },
  'proxy-config': {
    summary: "show a running proxy's clusters, listeners, routes, endpoints, secrets, log levels; explain a request",
    usage: 'meshlet proxy-config <clusters|listeners|routes|endpoints|secrets|bootstrap|log|all|explain> [--admin URL|--pod NAME] [-o short|json|yaml]',
    run: async (argv) => (await import('./cli/proxy-config')).runProxyConfig(argv),
  },
  'proxy-status': {
    summary: 'per connected proxy, what the control plane sent and what was ACKed or NACKed (CSDS)',
    usage: 'meshlet proxy-status [--xds 127.0.0.1:15010] [-o short|json|yaml] [NODE_ID]',
    run: async (argv) => (await import('./cli/proxy-status')).runProxyStatus(argv),
  },
  demo: {
    summary: 'start a whole mesh on loopback, drive traffic through it and print what happened',
    usage: 'meshlet demo [--duration SECONDS]',
    run: async (argv) => (await import('./cli/demo')).runDemo(argv),
  },
};

function usage(): string {
  const lines = ['meshlet — a small service-mesh sidecar proxy (Envoy v3 xDS, mTLS, Istio conventions)', '', 'Usage: meshlet <command> [options]', '', 'Commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(15)} ${c.summary}`);
  lines.push('', 'Run `meshlet <command> --help` for the options of one command.');
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${usage()}\n`);
    process.exitCode = cmd ? 0 : 1;
    return;
  }
  if (cmd === '--version') {
    process.stdout.write(`${(await import('../common/version')).VERSION}\n`);
    return;
  }
  const c = COMMANDS[cmd];
  if (!c) {
    process.stderr.write(`meshlet: unknown command "${cmd}"\n\n${usage()}\n`);
    process.exitCode = 1;
    return;
  }
  try {
    const code = await c.run(rest);
    process.exitCode = code;
    // Long-running commands may leave timers or sockets behind on shutdown; stdout gets a moment
    // to flush, then the process ends with the command's code.
    setTimeout(() => process.exit(code), 500).unref();
  } catch (err) {
    process.stderr.write(`meshlet ${cmd}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
