/**
 * `meshlet proxy-config explain URL`: asks the running proxy's GET /explain (which runs the
 * proxy's own matchers) and prints the decision path as indented text, or the JSON as is.
 */
import type { ExplainResult } from '../admin/explain';

const OK = '✔';
const NO = '✘';

function paintFn(colour: boolean): (s: string, c: 'g' | 'r' | 'b' | 'd') => string {
  const codes = { g: 32, r: 31, b: 1, d: 2 };
  return (s, c) => (colour ? `\x1b[${codes[c]}m${s}\x1b[0m` : s);
}

export function renderExplain(e: ExplainResult, colour: boolean): string {
  const p = paintFn(colour);
  const out: string[] = [];
  const r = e.request;
  out.push(`${p('Request', 'b')}   ${r.method} ${r.scheme}://${r.authority}${r.path}  from ${r.source}`);
  for (const [k, v] of r.headers) out.push(`          ${k}: ${v}`);
  if (e.listener) out.push(`${p('Listener', 'b')}  ${e.listener.name} (${e.listener.address}, ${e.listener.direction}): ${e.listener.why}`);
  if (e.filterChain) {
    out.push(`${p('Chain', 'b')}     ${e.filterChain.name}${e.filterChain.default ? ' (default_filter_chain: no chain matched)' : ''}`);
    if (e.filterChain.candidates.length > 1) {
      for (const c of e.filterChain.candidates) out.push(`          ${c.chosen ? p(OK, 'g') : p(NO, 'r')} ${c.name}${c.reason ? p(`  ${c.reason}`, 'd') : ''}`);
    }
  }
  for (const n of e.networkFilters) out.push(`${p('Network', 'b')}   ${n.name} [${n.kind}]${n.note ? `  ${n.note}` : ''}`);
  if (e.hcm) out.push(`${p('HCM', 'b')}       ${e.hcm.statPrefix}, route config ${e.hcm.routeConfig} (${e.hcm.source})`);
  if (e.httpFilters.length) {
    out.push(`${p('Filters', 'b')}   ${e.httpFilters.map((h) => `${h.name}${h.disabled ? ' (disabled)' : ''}`).join(' → ')}`);
    for (const h of e.httpFilters) if (h.note) out.push(`          ${h.name}: ${h.note}`);
  }
  if (e.virtualHost) out.push(`${p('VHost', 'b')}     ${e.virtualHost.name}: ${e.virtualHost.why}`);
  for (const t of e.routes) {
    const label = `#${t.index}${t.name ? ` ${t.name}` : ''} [${t.match}]`;
    out.push(t.matched ? `${p('Route', 'b')}     ${p(OK, 'g')} ${label}` : `          ${p(NO, 'r')} ${label}${p(`  ${t.failed}`, 'd')}`);
  }
  if (e.route && e.route.action !== 'route') out.push(`${p('Action', 'b')}    ${e.route.action} ${JSON.stringify(e.route.detail)}`);
  for (const c of e.clusters) out.push(`${p('Cluster', 'b')}   ${c.name}${c.percent !== undefined ? ` (weight ${c.weight}, ${c.percent}%)` : ''}`);
  for (const u of e.upstream) {
    if (!u.found) {
      out.push(`          ${p(NO, 'r')} cluster ${u.cluster} does not exist`);
      continue;
    }
    out.push(`          ${u.cluster}: ${u.type}, ${u.lbPolicy}, ${u.endpoints.length} endpoint(s)`);
    for (const ep of u.endpoints) {
      const ok = ep.health === 'healthy';
      out.push(`            ${ok ? p(OK, 'g') : p(NO, 'r')} ${ep.address}  ${ep.health}  weight ${ep.weight}  priority ${ep.priority}${ep.locality ? `  ${ep.locality}` : ''}`);
    }
    if (u.tls) {
      out.push(`            TLS: sni ${u.tls.sni ?? '-'}, alpn ${u.tls.alpn.join(',') || '-'}, certificate ${u.tls.certificates.join(',') || '-'}, trust ${u.tls.trust.join(',') || '-'}`);
      out.push(`            expected SAN: ${u.tls.expectedSans.join(' or ') || 'any (not checked)'}`);
    } else out.push('            TLS: none (plaintext)');
  }
  for (const v of e.rbac) {
    const verdict = v.allowed ? p('ALLOW', 'g') : p('DENY', 'r');
    out.push(`${p('RBAC', 'b')}      ${v.filter}: ${verdict} (${v.action}${v.policy ? `, policy ${v.policy}` : ', no policy matched'}${v.perRoute ? ', per-route config' : ''})${v.shadow ? `; shadow ${v.shadow.allowed ? 'ALLOW' : 'DENY'}${v.shadow.policy ? ` (${v.shadow.policy})` : ''}` : ''}`);
  }
  out.push(`${p('Verdict', 'b')}   ${e.verdict}`);
  return `${out.join('\n')}\n`;
}
