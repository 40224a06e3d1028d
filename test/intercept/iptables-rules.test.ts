/**
 * Rule generation for `meshlet iptables` (pure, no root needed): Istio's chain names and order,
 * the defaults (15001/15006, UID/GID 1337, 127.0.0.6 never recaptured), every include/exclude
 * option, IPv6 mirroring, option validation with every error reported, backend detection, and
 * the exact --dry-run output of the CLI.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { runIptables } from '../../proxy/cli/iptables';
import { backendFromVersion, type Binaries, dryRunInstall, formatCommand } from '../../proxy/intercept/apply';
import { nftCleanupScript, nftInstallScript } from '../../proxy/intercept/nft';
import { cleanupRules, installRules, parseInterceptOptions, planInstall } from '../../proxy/intercept/rules';
import { ConfigError } from '../../common/errors';

const BIN: Binaries = { backend: 'nft', v4: 'iptables', v6: 'ip6tables', save4: 'iptables-save', save6: 'ip6tables-save' };
const lines = (rules: string[][]): string[] => rules.map((r) => r.join(' '));

afterEach(() => vi.restoreAllMocks());

describe('installRules', () => {
  it('defaults: Istio chains in Istio order, outbound → 15001, inbound → 15006, 1337 excluded', () => {
    expect(lines(installRules(parseInterceptOptions({}), 4))).toEqual([
      '-t nat -N ISTIO_INBOUND',
      '-t nat -N ISTIO_REDIRECT',
      '-t nat -N ISTIO_IN_REDIRECT',
      '-t nat -N ISTIO_OUTPUT',
      '-t nat -A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN',
      '-t nat -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001',
      '-t nat -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006',
      '-t nat -A PREROUTING -p tcp -j ISTIO_INBOUND',
      '-t nat -A ISTIO_INBOUND -p tcp --dport 22 -j RETURN',
      '-t nat -A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN',
      '-t nat -A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN',
      '-t nat -A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN',
      '-t nat -A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT',
      '-t nat -A OUTPUT -p tcp -j ISTIO_OUTPUT',
      '-t nat -A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN',
      '-t nat -A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT',
      '-t nat -A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN',
      '-t nat -A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN',
      '-t nat -A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT',
      '-t nat -A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN',
      '-t nat -A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN',
      '-t nat -A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN',
      '-t nat -A ISTIO_OUTPUT -j ISTIO_REDIRECT',
    ]);
  });

  it('IPv6 mirrors the rules with ::6 and ::1', () => {
    const v6 = lines(installRules(parseInterceptOptions({}), 6));
    expect(v6).toContain('-t nat -A ISTIO_OUTPUT -o lo -s ::6/128 -j RETURN');
    expect(v6).toContain('-t nat -A ISTIO_OUTPUT -d ::1/128 -j RETURN');
    expect(v6).toContain('-t nat -A ISTIO_OUTPUT -o lo ! -d ::1/128 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT');
    expect(v6.some((l) => l.includes('127.0.0.'))).toBe(false);
    const plan = planInstall(parseInterceptOptions({}));
    expect(plan.install.filter((c) => c.family === 6).length).toBe(v6.length);
    expect(planInstall(parseInterceptOptions({ ipv6: false })).install.every((c) => c.family === 4)).toBe(true);
  });

  it('outbound CIDRs and ports: excludes return before the capture, includes split by family', () => {
    const o = parseInterceptOptions({
      includeOutboundCidrs: '10.0.0.0/8, fd00::/8,192.168.1.5',
      excludeOutboundCidrs: '10.96.0.0/12,fd00:1::/64',
      excludeOutboundPorts: '5432,6379',
      includeOutboundPorts: '9999',
    });
    const v4 = lines(installRules(o, 4));
    const out = v4.filter((l) => l.includes('-A ISTIO_OUTPUT'));
    expect(out.slice(0, 2)).toEqual([
      '-t nat -A ISTIO_OUTPUT -p tcp --dport 5432 -j RETURN',
      '-t nat -A ISTIO_OUTPUT -p tcp --dport 6379 -j RETURN',
    ]);
    expect(out.slice(-4)).toEqual([
      '-t nat -A ISTIO_OUTPUT -d 10.96.0.0/12 -j RETURN',
      '-t nat -A ISTIO_OUTPUT -p tcp --dport 9999 -j ISTIO_REDIRECT',
      '-t nat -A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT',
      '-t nat -A ISTIO_OUTPUT -d 192.168.1.5/32 -j ISTIO_REDIRECT',
    ]);
    expect(v4).not.toContain('-t nat -A ISTIO_OUTPUT -j ISTIO_REDIRECT');
    const v6 = lines(installRules(o, 6)).filter((l) => l.includes('-A ISTIO_OUTPUT'));
    expect(v6.slice(-3)).toEqual([
      '-t nat -A ISTIO_OUTPUT -d fd00:1::/64 -j RETURN',
      '-t nat -A ISTIO_OUTPUT -p tcp --dport 9999 -j ISTIO_REDIRECT',
      '-t nat -A ISTIO_OUTPUT -d fd00::/8 -j ISTIO_REDIRECT',
    ]);
  });

  it('inbound ports: a list captures only those ports; empty turns inbound capture off', () => {
    const only = lines(installRules(parseInterceptOptions({ includeInboundPorts: '8080,9090' }), 4));
    expect(only.filter((l) => l.includes('-A ISTIO_INBOUND'))).toEqual([
      '-t nat -A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN',
      '-t nat -A ISTIO_INBOUND -p tcp --dport 8080 -j ISTIO_IN_REDIRECT',
      '-t nat -A ISTIO_INBOUND -p tcp --dport 9090 -j ISTIO_IN_REDIRECT',
    ]);
    const off = lines(installRules(parseInterceptOptions({ includeInboundPorts: '' }), 4));
    expect(off).not.toContain('-t nat -A PREROUTING -p tcp -j ISTIO_INBOUND');
    expect(off.some((l) => l.includes('-o lo ! -d'))).toBe(false);
    const excl = lines(installRules(parseInterceptOptions({ excludeInboundPorts: '15020,3306' }), 4));
    expect(excl).toContain('-t nat -A ISTIO_INBOUND -p tcp --dport 3306 -j RETURN');
    expect(excl).not.toContain('-t nat -A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN');
  });

  it('custom ports and several proxy UIDs', () => {
    const o = parseInterceptOptions({ proxyPort: '16001', inboundCapturePort: '16006', proxyUid: '1337,1338', proxyGid: '' });
    const v4 = lines(installRules(o, 4));
    expect(v4).toContain('-t nat -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 16001');
    expect(v4).toContain('-t nat -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006');
    expect(v4).toContain('-t nat -A ISTIO_OUTPUT -m owner --uid-owner 1338 -j RETURN');
    expect(v4.some((l) => l.includes('--gid-owner'))).toBe(false);
  });

  it('cleanup removes the jumps first, then flushes and deletes each chain', () => {
    expect(lines(cleanupRules())).toEqual([
      '-t nat -D PREROUTING -p tcp -j ISTIO_INBOUND',
      '-t nat -D OUTPUT -p tcp -j ISTIO_OUTPUT',
      '-t nat -F ISTIO_OUTPUT',
      '-t nat -X ISTIO_OUTPUT',
      '-t nat -F ISTIO_INBOUND',
      '-t nat -X ISTIO_INBOUND',
      '-t nat -F ISTIO_REDIRECT',
      '-t nat -X ISTIO_REDIRECT',
      '-t nat -F ISTIO_IN_REDIRECT',
      '-t nat -X ISTIO_IN_REDIRECT',
    ]);
  });
});

describe('parseInterceptOptions', () => {
  it('reports every bad option with its flag', () => {
    let err: unknown;
    try {
      parseInterceptOptions({
        proxyPort: '70000',
        proxyUid: 'istio',
        excludeOutboundCidrs: '10.0.0.0/33,not-a-cidr',
        excludeInboundPorts: 'x',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues.map((i) => i.path)).toEqual([
      '--proxy-port',
      '--proxy-uid',
      '--exclude-inbound-ports',
      '--exclude-outbound-cidrs',
      '--exclude-outbound-cidrs',
    ]);
  });

  it('refuses to exclude no proxy identity at all (the proxy would capture itself)', () => {
    expect(() => parseInterceptOptions({ proxyUid: '', proxyGid: '' })).toThrow(/at least one proxy UID or GID/);
  });
});

describe('backend and formatting', () => {
  it('detects the backend from iptables --version', () => {
    expect(backendFromVersion('iptables v1.8.9 (nf_tables)\n')).toBe('nft');
    expect(backendFromVersion('iptables v1.8.7 (legacy)\n')).toBe('legacy');
    expect(backendFromVersion('iptables v1.6.1\n')).toBe('legacy');
  });

  it('formats commands exactly as they run, per family binary', () => {
    const plan = dryRunInstall(BIN, parseInterceptOptions({}));
    expect(plan.cleanup[0]).toBe('iptables -t nat -D PREROUTING -p tcp -j ISTIO_INBOUND');
    expect(plan.install).toContain('iptables -t nat -A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT');
    expect(plan.install).toContain('ip6tables -t nat -A ISTIO_OUTPUT -o lo -s ::6/128 -j RETURN');
    expect(formatCommand({ ...BIN, v4: 'iptables-legacy' }, { family: 4, args: ['-t', 'nat', '-N', 'X'] })).toBe('iptables-legacy -t nat -N X');
  });
});

describe('meshlet iptables --dry-run', () => {
  async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
      out += String(c);
      return true;
    });
    vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
      err += String(c);
      return true;
    });
    const code = await runIptables(argv);
    vi.restoreAllMocks();
    return { code, out, err };
  }

  it('prints the exact commands for a forced backend and changes nothing', async () => {
    const r = await cli(['--dry-run', '--backend', 'legacy', '--no-ipv6', '-x', '10.96.0.0/12']);
    expect(r.code).toBe(0);
    const printed = r.out.split('\n').filter((l) => l !== '');
    expect(printed[0]).toBe('# backend: legacy');
    expect(printed).toContain('iptables-legacy -t nat -A ISTIO_OUTPUT -d 10.96.0.0/12 -j RETURN');
    expect(printed).toContain('iptables-legacy -t nat -A OUTPUT -p tcp -j ISTIO_OUTPUT');
    expect(printed.some((l) => l.startsWith('ip6tables'))).toBe(false);
    const install = printed.slice(printed.indexOf('# install') + 1);
    expect(install).toEqual(
      installRules(parseInterceptOptions({ ipv6: false, excludeOutboundCidrs: '10.96.0.0/12' }), 4).map(
        (a) => `iptables-legacy ${a.join(' ')}`,
      ),
    );
  });

  it('--cleanup --dry-run prints the removal for both families', async () => {
    const r = await cli(['--cleanup', '--dry-run', '--backend', 'nft']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('iptables-nft -t nat -X ISTIO_OUTPUT');
    expect(r.out).toContain('ip6tables-nft -t nat -D OUTPUT -p tcp -j ISTIO_OUTPUT');
  });

  it('bad options exit 1 with every problem listed', async () => {
    const r = await cli(['--dry-run', '--backend', 'nft', '-p', '0', '-i', '10.0.0.0/40']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('--proxy-port');
    expect(r.err).toContain('--include-outbound-cidrs');
    const b = await cli(['--dry-run', '--backend', 'iptables']);
    expect(b.code).toBe(1);
    expect(b.err).toContain('--backend must be auto, legacy or nft');
  });
});

describe('native nftables script', () => {
  it('mirrors the iptables rules in one atomic inet table script', () => {
    const s = nftInstallScript(parseInterceptOptions({ includeOutboundCidrs: '10.0.0.0/8,fd00::/8', includeInboundPorts: '8080,9090' }));
    const lines = s.trim().split('\n');
    expect(lines.slice(0, 3)).toEqual(['add table inet istio-proxy-nat', 'delete table inet istio-proxy-nat', 'add table inet istio-proxy-nat']);
    expect(lines).toContain('add rule inet istio-proxy-nat istio-inbound tcp dport { 8080, 9090 } jump istio-in-redirect');
    expect(lines).toContain('add rule inet istio-proxy-nat istio-output ip daddr 10.0.0.0/8 jump istio-redirect');
    expect(lines).toContain('add rule inet istio-proxy-nat istio-output ip6 daddr fd00::/8 jump istio-redirect');
    expect(lines).not.toContain('add rule inet istio-proxy-nat istio-output jump istio-redirect');
    // The 127.0.0.6 return comes before any UID rule, as in the iptables chain.
    const ret = lines.indexOf('add rule inet istio-proxy-nat istio-output oifname "lo" ip saddr 127.0.0.6 return');
    const uid = lines.findIndex((l) => l.includes('skuid'));
    expect(ret).toBeGreaterThan(0);
    expect(ret).toBeLessThan(uid);
  });

  it('without IPv6 only IPv4 is captured; without inbound ports there is no prerouting jump', () => {
    const s = nftInstallScript(parseInterceptOptions({ ipv6: false, includeInboundPorts: '' }));
    expect(s).toContain('add rule inet istio-proxy-nat istio-output meta nfproto ipv4 jump istio-redirect');
    expect(s).not.toContain('ip6 ');
    expect(s).not.toContain('prerouting meta');
    expect(s).not.toContain('jump istio-in-redirect');
    expect(nftCleanupScript()).toBe('add table inet istio-proxy-nat\ndelete table inet istio-proxy-nat\n');
  });
});
