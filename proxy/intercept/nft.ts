/**
 * Native nftables capture rules (`meshlet iptables --native-nftables`): the same capture as
 * rules.ts — same order, same exclusions, 127.0.0.6 / ::6 never recaptured — as one `inet` table
 * (both IP families) named like Istio's, `istio-proxy-nat`, with chains istio-inbound,
 * istio-redirect, istio-in-redirect and istio-output.
 *
 * Leans towards atomic and reversible: the install script re-creates the table in one `nft -f`
 * transaction (add + delete + define, so running twice leaves one copy and a failure changes
 * nothing), and cleanup deletes only that table, so the rest of the ruleset is left as it was.
 */
import { execFile } from 'node:child_process';
import { isIP } from 'node:net';
import { MeshletError } from '../../common/errors';
import { HBONE_PORT, INBOUND_PASSTHROUGH_SOURCE_V4, INBOUND_PASSTHROUGH_SOURCE_V6, type InterceptOptions } from './rules';

export const NFT_TABLE = 'istio-proxy-nat';
const C = { inbound: 'istio-inbound', redirect: 'istio-redirect', inRedirect: 'istio-in-redirect', output: 'istio-output' } as const;

const set = (xs: readonly (string | number)[]): string => (xs.length === 1 ? String(xs[0]) : `{ ${xs.join(', ')} }`);

/** The nft script that (re)creates the capture table atomically. */
export function nftInstallScript(o: InterceptOptions): string {
  const t = `inet ${NFT_TABLE}`;
  const inboundOn = o.includeInboundPorts === '*' || o.includeInboundPorts.length > 0;
  const v4 = (c: string): boolean => isIP(c.split('/')[0]!) === 4;
  const lines: string[] = [
    // add + delete: works whether or not an earlier copy exists, all in one transaction.
    `add table ${t}`,
    `delete table ${t}`,
    `add table ${t}`,
    `add chain ${t} prerouting { type nat hook prerouting priority dstnat; policy accept; }`,
    `add chain ${t} output { type nat hook output priority -100; policy accept; }`,
    ...Object.values(C).map((c) => `add chain ${t} ${c}`),
    `add rule ${t} ${C.inbound} tcp dport ${HBONE_PORT} return`,
    `add rule ${t} ${C.redirect} meta l4proto tcp redirect to :${o.proxyPort}`,
    `add rule ${t} ${C.inRedirect} meta l4proto tcp redirect to :${o.inboundCapturePort}`,
  ];
  if (inboundOn) {
    // Without IPv6 capture, inbound IPv6 is left alone (as the iptables mode without ip6tables).
    lines.push(`add rule ${t} prerouting ${o.ipv6 ? '' : 'meta nfproto ipv4 '}meta l4proto tcp jump ${C.inbound}`);
    if (o.includeInboundPorts === '*') {
      lines.push(`add rule ${t} ${C.inbound} tcp dport ${set([...new Set([22, ...o.excludeInboundPorts])])} return`);
      lines.push(`add rule ${t} ${C.inbound} meta l4proto tcp jump ${C.inRedirect}`);
    } else {
      lines.push(`add rule ${t} ${C.inbound} tcp dport ${set([...new Set(o.includeInboundPorts)])} jump ${C.inRedirect}`);
    }
  }
  lines.push(`add rule ${t} output meta l4proto tcp jump ${C.output}`);
  const out = (rule: string): void => {
    lines.push(`add rule ${t} ${C.output} ${rule}`);
  };
  if (o.excludeOutboundPorts.length > 0) out(`tcp dport ${set([...new Set(o.excludeOutboundPorts)])} return`);
  out(`oifname "lo" ip saddr ${INBOUND_PASSTHROUGH_SOURCE_V4} return`);
  if (o.ipv6) out(`oifname "lo" ip6 saddr ${INBOUND_PASSTHROUGH_SOURCE_V6} return`);
  for (const [key, ids] of [
    ['skuid', o.proxyUids],
    ['skgid', o.proxyGids],
  ] as const) {
    for (const id of ids) {
      if (inboundOn) {
        out(`oifname "lo" ip daddr != 127.0.0.1 meta ${key} ${id} jump ${C.inRedirect}`);
        if (o.ipv6) out(`oifname "lo" ip6 daddr != ::1 meta ${key} ${id} jump ${C.inRedirect}`);
      }
      out(`oifname "lo" meta ${key} != ${id} return`);
      out(`meta ${key} ${id} return`);
    }
  }
  out('ip daddr 127.0.0.1 return');
  if (o.ipv6) out('ip6 daddr ::1 return');
  const ex4 = o.excludeOutboundCidrs.filter(v4);
  const ex6 = o.excludeOutboundCidrs.filter((c) => !v4(c));
  if (ex4.length > 0) out(`ip daddr ${set(ex4)} return`);
  if (ex6.length > 0 && o.ipv6) out(`ip6 daddr ${set(ex6)} return`);
  if (o.includeOutboundPorts.length > 0) out(`tcp dport ${set([...new Set(o.includeOutboundPorts)])} jump ${C.redirect}`);
  if (o.includeOutboundCidrs === '*') {
    // Without IPv6 capture, IPv6 traffic is left alone (as the iptables mode without ip6tables).
    out(o.ipv6 ? `jump ${C.redirect}` : `meta nfproto ipv4 jump ${C.redirect}`);
  } else {
    const in4 = o.includeOutboundCidrs.filter(v4);
    const in6 = o.includeOutboundCidrs.filter((c) => !v4(c));
    if (in4.length > 0) out(`ip daddr ${set(in4)} jump ${C.redirect}`);
    if (in6.length > 0 && o.ipv6) out(`ip6 daddr ${set(in6)} jump ${C.redirect}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The nft script that removes the capture (the whole table, nothing else). */
export function nftCleanupScript(): string {
  // add first so the delete succeeds when nothing is installed (cleanup is idempotent).
  return `add table inet ${NFT_TABLE}\ndelete table inet ${NFT_TABLE}\n`;
}

/** Run an nft script atomically (`nft -f -`). */
export function runNft(script: string, nftBin = 'nft'): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = execFile(nftBin, ['-f', '-'], (err, _stdout, stderr) => {
      if (err) {
        reject(new MeshletError('MESHLET_ERR_CONFIG', `nft -f - failed: ${(stderr || err.message).trim()}; nothing was changed`, { cause: err }));
      } else resolve();
    });
    p.stdin?.end(script);
  });
}
