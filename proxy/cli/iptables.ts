/**
 * `meshlet iptables`: print (--dry-run), install, or remove (--cleanup) the pod's traffic capture
 * rules, with istio-iptables' flag names and defaults. Runs in the current network namespace
 * (run it as an init container, or under `ip netns exec`); needs NET_ADMIN except for --dry-run.
 */
import { cleanup, dryRunCleanup, dryRunInstall, install, resolveBinaries, type Backend } from '../intercept/apply';
import { nftCleanupScript, nftInstallScript, runNft } from '../intercept/nft';
import { DEFAULTS, type InterceptOptions, parseInterceptOptions } from '../intercept/rules';
import { ConfigError, formatIssues, MeshletError } from '../../common/errors';
import { parseCommandArgs } from './args';

const USAGE = `meshlet iptables [--dry-run] [--cleanup] [options]

  Captures a pod's TCP traffic the way istio-init does: outbound to the proxy port, inbound to the
  inbound capture port, the proxy's own UID/GID excluded, inbound traffic delivered from 127.0.0.6
  never recaptured. Running it twice leaves one copy; --cleanup removes exactly what it added.

  -p, --proxy-port PORT                outbound capture port (default ${DEFAULTS.proxyPort})
  -z, --inbound-capture-port PORT      inbound capture port (default ${DEFAULTS.inboundCapturePort})
  -u, --proxy-uid UIDS                 UIDs never captured, comma list (default ${DEFAULTS.proxyUid})
  -g, --proxy-gid GIDS                 GIDs never captured, comma list (default ${DEFAULTS.proxyGid})
  -b, --include-inbound-ports PORTS    '*' (default) = all, '' = no inbound capture, else a list
  -d, --exclude-inbound-ports PORTS    with '*': ports not captured (default ${DEFAULTS.excludeInboundPorts}; 22 always)
  -q, --include-outbound-ports PORTS   ports captured whatever the destination
  -o, --exclude-outbound-ports PORTS   ports never captured outbound
  -i, --include-outbound-cidrs CIDRS   '*' (default) = all, else IPv4/IPv6 CIDRs to capture
  -x, --exclude-outbound-cidrs CIDRS   CIDRs never captured
      --no-ipv6                        only iptables (no ip6tables rules)
      --backend auto|legacy|nft        iptables backend (default auto: \`iptables --version\`)
      --native-nftables                native nftables rules instead (table inet istio-proxy-nat, via nft -f)
  -n, --dry-run                        print the commands instead of running them
      --cleanup                        remove the rules`;

export async function runIptables(argv: string[]): Promise<number> {
  let args: Record<string, string | boolean | undefined> | undefined;
  try {
    args = parseCommandArgs(argv, USAGE, {
      'proxy-port': { type: 'string', short: 'p' },
      'inbound-capture-port': { type: 'string', short: 'z' },
      'proxy-uid': { type: 'string', short: 'u' },
      'proxy-gid': { type: 'string', short: 'g' },
      'include-inbound-ports': { type: 'string', short: 'b' },
      'exclude-inbound-ports': { type: 'string', short: 'd' },
      'include-outbound-ports': { type: 'string', short: 'q' },
      'exclude-outbound-ports': { type: 'string', short: 'o' },
      'include-outbound-cidrs': { type: 'string', short: 'i' },
      'exclude-outbound-cidrs': { type: 'string', short: 'x' },
      'no-ipv6': { type: 'boolean' },
      backend: { type: 'string' },
      'native-nftables': { type: 'boolean' },
      'dry-run': { type: 'boolean', short: 'n' },
      cleanup: { type: 'boolean' },
    });
  } catch (e) {
    process.stderr.write(`meshlet iptables: ${(e as Error).message}\n\nUsage: ${USAGE}\n`);
    return 1;
  }
  if (!args) return 0;
  const s = (k: string): string | undefined => (typeof args[k] === 'string' ? (args[k] as string) : undefined);
  const backend = s('backend') ?? 'auto';
  if (backend !== 'auto' && backend !== 'legacy' && backend !== 'nft') {
    process.stderr.write(`meshlet iptables: --backend must be auto, legacy or nft (got ${JSON.stringify(backend)})\n`);
    return 1;
  }
  const ipv6 = args['no-ipv6'] !== true;
  try {
    const opts = parseInterceptOptions({
      proxyPort: s('proxy-port'),
      inboundCapturePort: s('inbound-capture-port'),
      proxyUid: s('proxy-uid'),
      proxyGid: s('proxy-gid'),
      includeInboundPorts: s('include-inbound-ports'),
      excludeInboundPorts: s('exclude-inbound-ports'),
      includeOutboundPorts: s('include-outbound-ports'),
      excludeOutboundPorts: s('exclude-outbound-ports'),
      includeOutboundCidrs: s('include-outbound-cidrs'),
      excludeOutboundCidrs: s('exclude-outbound-cidrs'),
      ipv6,
    });
    const dry = args['dry-run'] === true;
    if (args['native-nftables'] === true) return await nativeNftables(opts, dry, args.cleanup === true);
    // A dry run must not need iptables at all: with auto it names the plain binaries.
    const bin =
      dry && backend === 'auto'
        ? await resolveBinaries('auto').catch(() => ({
            backend: 'legacy' as Backend,
            v4: 'iptables',
            v6: 'ip6tables',
            save4: 'iptables-save',
            save6: 'ip6tables-save',
          }))
        : await resolveBinaries(backend);
    if (args.cleanup) {
      if (dry) {
        process.stdout.write(`# backend: ${bin.backend}\n${dryRunCleanup(bin, ipv6).join('\n')}\n`);
        return 0;
      }
      const r = await cleanup(bin, ipv6);
      process.stdout.write(`meshlet iptables: removed the capture rules (${r.backend} backend, ${r.ran.length} commands)\n`);
      return 0;
    }
    if (dry) {
      const plan = dryRunInstall(bin, opts);
      process.stdout.write(
        `# backend: ${bin.backend}\n# remove an earlier copy (failures ignored)\n${plan.cleanup.join('\n')}\n# install\n${plan.install.join('\n')}\n`,
      );
      return 0;
    }
    const r = await install(bin, opts);
    process.stdout.write(`meshlet iptables: capture installed (${r.backend} backend)\n${r.ran.join('\n')}\n`);
    return 0;
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`meshlet iptables: invalid options\n${formatIssues(e.issues)}\n`);
      return 1;
    }
    if (e instanceof MeshletError) {
      process.stderr.write(`meshlet iptables: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

/** --native-nftables: one atomic `nft -f` script for install, the table's removal for cleanup. */
async function nativeNftables(opts: InterceptOptions, dry: boolean, remove: boolean): Promise<number> {
  const script = remove ? nftCleanupScript() : nftInstallScript(opts);
  if (dry) {
    process.stdout.write(`# nft -f - <<EOF\n${script}# EOF\n`);
    return 0;
  }
  await runNft(script);
  process.stdout.write(
    remove ? 'meshlet iptables: removed the capture (nftables table inet istio-proxy-nat)\n' : `meshlet iptables: capture installed (native nftables)\n${script}`,
  );
  return 0;
}
