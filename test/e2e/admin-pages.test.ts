/**
 * The admin pages in a real headless Chromium (Debian's `chromium`, installed by
 * scripts/install-test-deps.sh; skipped only when it is absent): the home page lists every admin
 * path and runs a POST only after confirmation; the overview shows the same numbers as /stats after
 * known traffic (requests, 5xx, error rate, p99 from the Istio histogram), refreshes, and neither
 * page logs a console error or fetches anything but the admin port. Screenshots are taken every
 * run (to a temp dir; MESHLET_UPDATE_SCREENSHOTS=1 writes docs/admin-home.png and
 * docs/admin-overview.png).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quantile } from '../../proxy/admin/inspect-endpoints';
import { startMesh, type TestMesh } from '../support/mesh';
import { bootstrap, httpListener, routes, staticCluster, startMeshlet, stopAllMeshlets, type StartedMeshlet } from '../support/meshlet';
import { closeAll, startHttpEcho } from '../support/upstreams';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const WEB = 'outbound|80||web.default.svc.cluster.local';
const FLAKY = 'outbound|80||flaky.default.svc.cluster.local';
const OK_REQUESTS = 24;
const FAILING_REQUESTS = 6;

type Playwright = typeof import('playwright-core');
type Context = Awaited<ReturnType<Playwright['chromium']['launchPersistentContext']>>;

let m: StartedMeshlet;
let admin: string;
let ctx: Context;
let profile: string;
let mesh: TestMesh | undefined;
const tmpShots = mkdtempSync(path.join(tmpdir(), 'meshlet-shots-'));
const shots = process.env.MESHLET_UPDATE_SCREENSHOTS === '1' ? path.join(__dirname, '../../docs') : mkdtempSync(path.join(tmpdir(), 'meshlet-shots-'));

function get(port: number, p: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, headers: { host }, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
}

async function adminText(p: string): Promise<string> {
  return (await fetch(`${admin}${p}`)).text();
}

beforeAll(async () => {
  if (!HAVE_CHROMIUM) return;
  const web = await startHttpEcho('web');
  const flaky = await startHttpEcho('flaky', (_req, res) => {
    res.writeHead(503, { 'content-length': '0' });
    res.end();
    return true;
  });
  m = await startMeshlet(
    bootstrap(
      [
        httpListener(
          'http',
          routes([
            { match: { prefix: '/flaky' }, route: { cluster: FLAKY } },
            { match: { prefix: '/' }, route: { cluster: WEB } },
          ]),
        ),
      ],
      [staticCluster(WEB, [web.port]), staticCluster(FLAKY, [flaky.port])],
    ),
  );
  admin = `http://127.0.0.1:${m.adminPort}`;
  const port = m.listenerPort('http');
  for (let i = 0; i < OK_REQUESTS; i++) expect(await get(port, `/page/${i}`, 'web.default.svc.cluster.local')).toBe(200);
  for (let i = 0; i < FAILING_REQUESTS; i++) expect(await get(port, `/flaky/${i}`, 'flaky.default.svc.cluster.local')).toBe(503);
  const { chromium } = (await import('playwright-core')) as Playwright;
  profile = mkdtempSync(path.join(tmpdir(), 'meshlet-chromium-'));
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, 60_000);

afterAll(async () => {
  await mesh?.close();
  await ctx?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await stopAllMeshlets();
  await closeAll();
});

/** A page that records console errors, page errors and any request leaving the admin port. */
async function watchedPage(origin = admin): Promise<{ page: Awaited<ReturnType<Context['newPage']>>; problems: string[] }> {
  const page = await ctx.newPage();
  const problems: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('request', (req) => {
    if (!req.url().startsWith(origin)) problems.push(`external request: ${req.url()}`);
  });
  page.on('requestfailed', (req) => problems.push(`failed: ${req.url()}`));
  return { page, problems };
}

function isPng(file: string): boolean {
  return readFileSync(file).subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
}

describe.skipIf(!HAVE_CHROMIUM)('admin pages in headless Chromium', () => {
  it('home page: every admin path with its method; a POST runs only after confirmation', async () => {
    const { page, problems } = await watchedPage();
    await page.goto(`${admin}/`);
    const rows = await page.$$eval('#endpoints tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].slice(0, 2).map((td) => td.textContent!.trim())));
    const listed = JSON.parse(await (await fetch(`${admin}/`, { headers: { accept: 'application/json' } })).text()) as { endpoints: { path: string; method: string }[] };
    expect(rows).toEqual(listed.endpoints.map((e) => [e.method, e.path]));
    expect(rows).toContainEqual(['GET', '/explain']);
    expect(rows).toContainEqual(['POST', '/healthcheck/fail']);

    // Dismissed: nothing happens.
    page.once('dialog', (d) => void d.dismiss());
    await page.click('button[data-post="/healthcheck/fail"]');
    await page.waitForTimeout(200);
    expect(await adminText('/ready')).toBe('LIVE\n');
    expect(await page.textContent('#out')).toBe('(none)');
    // Confirmed: the POST runs and its answer is shown.
    let asked = '';
    page.once('dialog', (d) => {
      asked = d.message();
      void d.accept();
    });
    await page.click('button[data-post="/healthcheck/fail"]');
    await page.locator('#out', { hasText: '-> 200' }).waitFor();
    expect(asked).toContain('POST /healthcheck/fail');
    expect((await fetch(`${admin}/ready`)).status).toBe(503);
    await fetch(`${admin}/healthcheck/ok`, { method: 'POST' });
    // A GET of the page itself never changes anything: /ready is LIVE again only through POST.
    expect(await adminText('/ready')).toBe('LIVE\n');

    const file = path.join(shots, 'admin-home.png');
    await page.screenshot({ path: file, fullPage: true });
    expect(isPng(file)).toBe(true);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('overview: the numbers match /stats after known traffic, and refresh', async () => {
    const { page, problems } = await watchedPage();
    await page.goto(`${admin}/overview`);
    // (The page's CSP forbids eval, so waits use selectors, not waitForFunction.)
    await page.locator('body[data-loaded]').waitFor();
    const firstLoad = await page.getAttribute('body', 'data-loaded');
    const table = async (): Promise<Record<string, string[]>> =>
      Object.fromEntries(
        (await page.$$eval('#clusters tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent!.trim())))).map((r) => [r[0]!, r]),
      );
    const rows = await table();
    const stat = (name: string): number => {
      const m = new RegExp(`^${name.replace(/[|.]/g, '\\$&')}: (\\d+)$`, 'm').exec(statsText);
      return m ? Number(m[1]) : NaN;
    };
    const statsText = await adminText('/stats');
    expect(stat(`cluster.${WEB}.upstream_rq_total`)).toBe(OK_REQUESTS);
    expect(rows[WEB]![2]).toBe(String(stat(`cluster.${WEB}.upstream_rq_total`)));
    expect(rows[FLAKY]![2]).toBe(String(stat(`cluster.${FLAKY}.upstream_rq_total`)));
    expect(rows[FLAKY]![4]).toBe(String(stat(`cluster.${FLAKY}.upstream_rq_5xx`)));
    expect(rows[FLAKY]![4]).toBe(String(FAILING_REQUESTS));
    expect(rows[FLAKY]![5]).toBe('100.0%');
    expect(rows[WEB]![5]).toBe('0.0%');
    expect(rows[WEB]![7]).toBe('1/1');

    // p99 from the Prometheus histogram the proxy exports, computed here independently.
    const prom = await adminText('/stats/prometheus');
    const bounds: number[] = [];
    const cum: number[] = [];
    for (const line of prom.split('\n')) {
      if (!line.startsWith('istio_request_duration_milliseconds_bucket{') || !line.includes('destination_service="web.default.svc.cluster.local"')) continue;
      const le = /le="([^"]+)"/.exec(line)![1]!;
      const v = Number(line.slice(line.lastIndexOf(' ') + 1));
      const i = le === '+Inf' ? -1 : bounds.indexOf(Number(le));
      if (le !== '+Inf' && i < 0) {
        bounds.push(Number(le));
        cum.push(v);
      } else if (le !== '+Inf') cum[i] = cum[i]! + v;
      else cum[bounds.length] = (cum[bounds.length] ?? 0) + v;
    }
    expect(cum[cum.length - 1]).toBe(OK_REQUESTS);
    const p99 = Math.round(quantile(0.99, bounds, cum)! * 100) / 100;
    expect(rows[WEB]![6]).toBe(String(p99));

    // Endpoint health, listeners, xDS state for a static bootstrap.
    const eps = await page.$$eval('#endpoints tbody tr', (trs) => trs.map((tr) => tr.querySelectorAll('td')[2]!.textContent));
    expect(eps).toEqual(['healthy', 'healthy']);
    expect(await page.textContent('#listeners tbody')).toContain('http');
    expect(await page.textContent('#nack')).toBe('No xDS: static bootstrap.');

    // The next refresh measures a rate over the traffic in between.
    const port = m.listenerPort('http');
    for (let i = 0; i < 10; i++) await get(port, '/more', 'web.default.svc.cluster.local');
    // Every refresh that sees new requests shows a positive rate over the last interval.
    let seen = OK_REQUESTS;
    let mark = firstLoad;
    for (let n = 0; n < 5 && seen < OK_REQUESTS + 10; n++) {
      await page.locator(`body:not([data-loaded="${mark}"])`).waitFor({ timeout: 10_000 });
      mark = await page.getAttribute('body', 'data-loaded');
      const row = (await table())[WEB]!;
      const total = Number(row[2]);
      if (total > seen) expect(Number(row[3])).toBeGreaterThan(0);
      seen = total;
    }
    expect(seen).toBe(OK_REQUESTS + 10);

    const file = path.join(tmpShots, 'admin-overview-static.png');
    await page.screenshot({ path: file, fullPage: true });
    expect(isPng(file)).toBe(true);
    expect(problems).toEqual([]);
    await page.close();
  }, 30_000);

  it('overview of an ADS-driven sidecar: certificate expiry and xDS state as /secrets and the xDS client say', async () => {
    mesh = await startMesh(
      `
trust_domain: cluster.local
services:
  - { name: cart, namespace: shop, ports: [{ name: http, port: 9480, protocol: http, target_port: 19480 }] }
  - { name: pay, namespace: shop, ports: [{ name: http, port: 9481, protocol: http, target_port: 19481 }] }
workloads:
  - { name: cart-v1, namespace: shop, service_account: cart, service: cart, version: v1, address: "127.0.0.66:19480", inbound_port: 15006, admin_port: 15000 }
  - { name: pay-v1, namespace: shop, service_account: pay, service: pay, version: v1, address: "127.0.0.67:19481", inbound_port: 15006, admin_port: 15000 }
`,
      ['cart-v1', 'pay-v1'],
    );
    const sidecar = `http://127.0.0.1:${mesh.sidecars.get('cart-v1')!.adminPort}`;
    const { page, problems } = await watchedPage(sidecar);
    await page.goto(`${sidecar}/overview`);
    await page.locator('body[data-loaded]').waitFor();
    const secrets = (JSON.parse(await (await fetch(`${sidecar}/secrets`)).text()) as { secrets: { type: string; spiffeId?: string; serialNumber?: string; notAfter?: string }[] }).secrets;
    const id = secrets.find((x) => x.type === 'Cert Chain')!;
    const certRows = await page.$$eval('#certs tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent!.trim())));
    const row = certRows.find((r) => r[2] === 'spiffe://cluster.local/ns/shop/sa/cart')!;
    expect(row[3]).toBe(id.serialNumber);
    expect(row[4]).toBe(id.notAfter);
    expect(row[5]).toMatch(/^\d+m \d+s$|^\d+h \d+m$/);
    const xds = await page.$$eval('#xds tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent!.trim())));
    const snap = mesh.sidecars.get('cart-v1')!.server.dynamic!.client.snapshot();
    expect(xds.map((r) => [r[0], r[1], r[4]])).toEqual(snap.types.map((t) => [t.type_url.split('.').pop(), t.version_info, 'ACKED']));
    expect(await page.textContent('#cards')).toContain('connected');
    expect(await page.textContent('#nack')).toBe('No NACK.');
    const file = path.join(shots, 'admin-overview.png');
    await page.screenshot({ path: file, fullPage: true });
    expect(isPng(file)).toBe(true);
    expect(problems).toEqual([]);
    await page.close();
  }, 60_000);
});
