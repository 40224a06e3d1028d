/**
 * The admin pages for a browser: the home page (every admin path with its method and help, as
 * Envoy's admin home; POST paths run only after a confirmation) and the live overview (polls
 * GET /overview as JSON every 2 s). Plain HTML, CSS and a small inline script: no external fetch
 * of any kind (the pages must work offline inside a pod), enforced by the Content-Security-Policy
 * the admin server sends with them.
 */
import type { IncomingMessage } from 'node:http';

/** CSP for the admin pages: same-origin fetches only, inline style/script, nothing external. */
export const PAGE_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'";

export function wantsHtml(req: IncomingMessage): boolean {
  return (req.headers.accept ?? '').includes('text/html');
}

export function wantsJson(req: IncomingMessage): boolean {
  const a = req.headers.accept ?? '';
  return a.includes('application/json') && !a.includes('text/html');
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `
:root{--bg:#f7f8fa;--fg:#1d2330;--muted:#5b6475;--line:#d9dee7;--ok:#16794a;--bad:#b3261e;--warn:#9a6700;--acc:#2456c7}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;gap:1.5rem;align-items:baseline;padding:.8rem 1.5rem;background:#1d2330;color:#fff}
header h1{font-size:1.1rem;margin:0}header a{color:#cdd6f4;text-decoration:none}header a.on{color:#fff;font-weight:600}
main{padding:1rem 1.5rem;max-width:1400px}h2{font-size:1rem;margin:1.4rem 0 .5rem}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line)}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#eef1f6;font-weight:600;font-size:.85rem;color:var(--muted)}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace}
.m{display:inline-block;min-width:3.2em;font:600 11px ui-monospace,monospace;padding:.1rem .3rem;border-radius:3px;text-align:center}
.GET{background:#e3ecff;color:var(--acc)}.POST{background:#fde7e4;color:var(--bad)}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.muted{color:var(--muted)}
button{font:inherit;padding:.15rem .6rem;border:1px solid var(--line);border-radius:4px;background:#fff;cursor:pointer}
input{font:12.5px ui-monospace,monospace;padding:.15rem .3rem;border:1px solid var(--line);border-radius:4px;width:12rem}
pre#out{background:#fff;border:1px solid var(--line);padding:.6rem;white-space:pre-wrap;min-height:2rem}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{background:#fff;border:1px solid var(--line);padding:.6rem .9rem;min-width:10rem}
.card b{display:block;font-size:1.2rem}`;

function page(title: string, active: 'home' | 'overview', body: string, script: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(title)}</title><link rel="icon" href="data:,"><style>${STYLE}</style></head>
<body><header><h1>meshlet admin</h1><nav><a href="/" class="${active === 'home' ? 'on' : ''}">Endpoints</a> &nbsp;
<a href="/overview" class="${active === 'overview' ? 'on' : ''}">Overview</a></nav></header>
<main>${body}</main><script>${script}</script></body></html>
`;
}

export interface HomeEntry {
  readonly path: string;
  readonly method: 'GET' | 'POST';
  readonly help: string;
}

/** Envoy-style admin home: every path; GET paths are links, POST paths ask before running. */
export function homeHtml(entries: readonly HomeEntry[]): string {
  const rows = entries
    .map((e) => {
      const action =
        e.method === 'GET'
          ? `<a href="${esc(e.path)}"><code>${esc(e.path)}</code></a>`
          : `<code>${esc(e.path)}</code>`;
      const run =
        e.method === 'POST'
          ? `<input data-q="${esc(e.path)}" placeholder="query, e.g. level=debug" aria-label="query for ${esc(e.path)}"> <button data-post="${esc(e.path)}">Run…</button>`
          : '';
      return `<tr><td><span class="m ${e.method}">${e.method}</span></td><td>${action}</td><td>${esc(e.help)}</td><td>${run}</td></tr>`;
    })
    .join('\n');
  const body = `<h2>Admin endpoints</h2>
<p class="muted">The same list as text: <code>curl localhost:15000/</code>; as JSON: <code>curl -H 'accept: application/json' localhost:15000/</code>. POST paths change the running proxy and ask for confirmation first.</p>
<table id="endpoints"><thead><tr><th>Method</th><th>Path</th><th>What it does</th><th></th></tr></thead><tbody>
${rows}
</tbody></table>
<h2>Last action</h2><pre id="out" class="muted">(none)</pre>`;
  const script = `
for (const b of document.querySelectorAll('button[data-post]')) {
  b.addEventListener('click', async () => {
    const path = b.dataset.post;
    const q = document.querySelector('input[data-q="' + path + '"]').value.trim();
    const url = q ? path + '?' + q : path;
    if (!confirm('POST ' + url + ' changes the running proxy. Continue?')) return;
    const out = document.getElementById('out');
    try {
      const r = await fetch(url, { method: 'POST' });
      out.textContent = 'POST ' + url + ' -> ' + r.status + '\\n' + (await r.text());
      out.className = r.ok ? 'ok' : 'bad';
    } catch (e) { out.textContent = String(e); out.className = 'bad'; }
  });
}`;
  return page('meshlet admin', 'home', body, script);
}

/** The live overview: the page is static; the numbers come from GET /overview (JSON). */
export function overviewHtml(): string {
  const body = `<div class="cards" id="cards"></div>
<h2>Listeners</h2><table id="listeners"><thead><tr><th>Name</th><th>Address</th><th>Direction</th><th>Filter chains</th><th>Active cx</th><th>Total cx</th></tr></thead><tbody></tbody></table>
<h2>Clusters</h2><table id="clusters"><thead><tr><th>Name</th><th>Type</th><th>Requests</th><th>Rate (rq/s)</th><th>5xx</th><th>Error rate</th><th>p99 (ms)</th><th>Endpoints (healthy/total)</th></tr></thead><tbody></tbody></table>
<h2>Endpoints</h2><table id="endpoints"><thead><tr><th>Cluster</th><th>Address</th><th>Health</th><th>Weight</th><th>Priority</th></tr></thead><tbody></tbody></table>
<h2>Certificates</h2><table id="certs"><thead><tr><th>Secret</th><th>Type</th><th>SPIFFE ID</th><th>Serial</th><th>Not after</th><th>Expires in</th></tr></thead><tbody></tbody></table>
<h2>xDS</h2><table id="xds"><thead><tr><th>Type</th><th>Version</th><th>Resources</th><th>Last updated</th><th>State</th></tr></thead><tbody></tbody></table>
<p id="nack" class="muted"></p>
<p class="muted">Updated <span id="updated">—</span>. Request rate is measured between two refreshes (every 2 s); p99 from <code>istio_request_duration_milliseconds</code> of the cluster's service.</p>`;
  const script = `
let prev;
function td(text, cls) { const c = document.createElement('td'); c.textContent = text; if (cls) c.className = cls; return c; }
function fill(id, rows) {
  const tb = document.querySelector('#' + id + ' tbody'); tb.replaceChildren();
  for (const cells of rows) { const tr = document.createElement('tr'); tr.append(...cells); tb.append(tr); }
}
function dur(s) { if (s < 0) return 'expired'; const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60); return d ? d + 'd ' + h + 'h' : h ? h + 'h ' + m + 'm' : m + 'm ' + (s % 60) + 's'; }
function card(label, value, cls) { const d = document.createElement('div'); d.className = 'card'; const b = document.createElement('b'); b.textContent = value; if (cls) b.className = cls; d.append(b, label); return d; }
function render(o) {
  const t = Date.parse(o.time);
  const x = o.xds;
  document.getElementById('cards').replaceChildren(
    card('state', o.server.state, o.server.ready ? 'ok' : 'bad'),
    card('node', o.server.node),
    card('listeners', String(o.listeners.length)),
    card('clusters', String(o.clusters.length)),
    card('xDS', x.configured ? (x.connected ? 'connected' : 'disconnected') : 'static', x.configured && !x.connected ? 'bad' : 'ok'));
  fill('listeners', o.listeners.map(l => [td(l.name), td(l.address), td(l.direction), td(String(l.filter_chains), 'n'), td(String(l.cx_active), 'n'), td(String(l.cx_total), 'n')]));
  fill('clusters', o.clusters.map(c => {
    const p = prev && prev.clusters.find(q => q.name === c.name);
    const rate = p ? ((c.rq_total - p.rq_total) / Math.max(0.001, (t - Date.parse(prev.time)) / 1000)).toFixed(1) : '—';
    return [td(c.name), td(c.type), td(String(c.rq_total), 'n'), td(rate, 'n'), td(String(c.rq_5xx), 'n'),
      td((c.error_rate * 100).toFixed(1) + '%', c.error_rate > 0 ? 'n bad' : 'n'), td(c.p99_ms === undefined ? '—' : String(c.p99_ms), 'n'),
      td(c.healthy + '/' + c.hosts.length, c.healthy < c.hosts.length ? 'n warn' : 'n')];
  }));
  fill('endpoints', o.clusters.flatMap(c => c.hosts.map(h => [td(c.name), td(h.address), td(h.health, h.health === 'healthy' ? 'ok' : 'bad'), td(String(h.weight), 'n'), td(String(h.priority), 'n')])));
  fill('certs', o.certificates.map(c => [td(c.secret), td(c.type), td(c.spiffeId || '—'), td(c.serialNumber || '—'), td(c.notAfter || c.status),
    td(c.secondsToExpiry === undefined ? '—' : dur(c.secondsToExpiry), c.secondsToExpiry !== undefined && c.secondsToExpiry < 86400 ? 'n warn' : 'n')]));
  fill('xds', (x.types || []).map(y => [td(y.type_url.split('.').pop()), td(y.version || '—'), td(String(y.resources), 'n'), td(y.last_updated || '—'), td(y.nacked ? 'NACKED' : 'ACKED', y.nacked ? 'bad' : 'ok')]));
  const n = document.getElementById('nack');
  n.textContent = x.last_nack ? 'Last NACK (' + x.last_nack.type_url.split('.').pop() + ', ' + x.last_nack.at + '): ' + x.last_nack.details : (x.configured ? 'No NACK.' : 'No xDS: static bootstrap.');
  n.className = x.last_nack ? 'bad' : 'muted';
  document.getElementById('updated').textContent = o.time;
  prev = o;
}
async function tick() {
  try { const r = await fetch('/overview', { headers: { accept: 'application/json' } }); render(await r.json()); document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1); }
  catch (e) { document.getElementById('updated').textContent = 'error: ' + e; }
}
tick(); setInterval(tick, 2000);`;
  return page('meshlet overview', 'overview', body, script);
}
