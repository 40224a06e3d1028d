/**
 * TypeScript filters through a real meshlet: the two examples of docs/filters.md run exactly as
 * documented (code blocks = files in examples/filters, config blocks used verbatim), failure
 * isolation (throw, reject, async and sync budget overruns, bad results → 500 + counters, the
 * proxy keeps serving), watch reloads, a config change without restart, type-checking the
 * examples against the published `meshlet/filter` types, and config validation.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import {
  closeTypeScriptFilters,
  decodeTypeScriptFilter,
  loadedFilterFor,
  type TypeScriptFilterConfig,
  typeScriptFilterStats,
} from '../../proxy/http/filters/typescript';
import { gatewayFilterCounters } from '../../proxy/http/filters/gateway-stats';
import { allLoadedFilters } from '../../proxy/http/filters/typescript-loader';
import { createRegistries } from '../../proxy/registry';
import type { StreamInfo } from '../../proxy/http/stream-info';
import { bootstrap, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { decodeWith, filterListener, request } from './helpers';

const ROOT = path.resolve(__dirname, '../..');
const DOC = readFileSync(path.join(ROOT, 'docs/filters.md'), 'utf8');
const TS_TYPE = 'type.googleapis.com/meshlet.filters.TypeScript';

/** The fenced block right after `<!-- marker -->` in the doc. */
function blockAfter(marker: string): string {
  const at = DOC.indexOf(`<!-- ${marker} -->`);
  if (at < 0) throw new Error(`docs/filters.md has no <!-- ${marker} -->`);
  const m = /```[a-z]*\n([\s\S]*?)```/.exec(DOC.slice(at));
  if (!m) throw new Error(`no code block after ${marker}`);
  return m[1]!;
}

let m: StartedMeshlet;
let echo: HttpEcho;
let chunked: HttpEcho;
let dir: string;
const streams: StreamInfo[] = [];

const ISOLATION_MODULE = `
import type { MeshletFilter } from 'meshlet/filter';
const f: MeshletFilter = {
  async onRequestHeaders(req) {
    if (req.path === '/throw') throw new Error('boom');
    if (req.path === '/reject') return Promise.reject(new Error('nope'));
    if (req.path === '/slow') await new Promise((r) => setTimeout(r, 2000));
    if (req.path === '/bad') return 42 as never;
    if (req.path === '/stop') return 'stop' as never;
    return 'continue';
  },
  onResponseHeaders(res, ctx) {
    if (ctx.routeName === 'busy') {
      const until = Date.now() + 150;
      while (Date.now() < until) { /* a synchronous overrun */ }
    }
    res.headers.set('x-isolation', 'ran');
  },
};
export default f;
`;

/** Holds the whole response body, then refuses it if it contains a forbidden word. */
const RESPONSE_MODULE = `
module.exports = {
  onResponseBody(chunk, end, ctx) {
    ctx.state.set('calls', (ctx.state.get('calls') || 0) + 1);
    if (!end) return 'stop';
    if (chunk.toString().includes('forbidden')) return { status: 502, body: 'refused' };
    return 'continue';
  },
  onResponseHeaders(res) { res.headers.remove('content-length'); },
};
`;

const versionModule = (v: string) => `
module.exports = (config) => ({
  onRequestHeaders(req) { req.headers.set('x-version', '${v}'); req.headers.set('x-greeting', String(config.greeting)); },
});
`;

beforeAll(async () => {
  echo = await startHttpEcho('app');
  dir = mkdtempSync(path.join(os.tmpdir(), 'meshlet-tsfilter-'));
  writeFileSync(path.join(dir, 'isolation.ts'), ISOLATION_MODULE);
  writeFileSync(path.join(dir, 'versioned.js'), versionModule('1'));
  writeFileSync(path.join(dir, 'response.js'), RESPONSE_MODULE);
  chunked = await startHttpEcho('chunked', (req, res) => {
    const parts = ['part one, ', 'part two, ', req.url?.includes('bad') ? 'forbidden end' : 'the end'];
    res.writeHead(200, { 'content-type': 'text/plain' });
    const next = (): void => {
      const p = parts.shift();
      if (p === undefined) res.end();
      else {
        res.write(p);
        setTimeout(next, 15);
      }
    };
    next();
    return true;
  });

  const apiKey = YAML.parse(blockAfter('config: api-key')) as Record<string, unknown>;
  const guard = YAML.parse(blockAfter('config: json-guard')) as Record<string, unknown>;
  const routes = [
    { match: { prefix: '/busy' }, name: 'busy', route: { cluster: 'app' } },
    { match: { prefix: '/' }, route: { cluster: 'app' } },
  ];
  m = await startMeshlet(
    bootstrap(
      [
        filterListener('api_key', [apiKey], routes),
        filterListener('json_guard', [guard], routes),
        filterListener(
          'isolation',
          [{ name: 'iso', typed_config: { '@type': TS_TYPE, path: path.join(dir, 'isolation.ts'), time_budget: '0.1s' } }],
          routes,
        ),
        filterListener(
          'watched',
          [{ name: 'ver', typed_config: { '@type': TS_TYPE, path: path.join(dir, 'versioned.js'), watch: true, config: { greeting: 'hi' } } }],
          routes,
        ),
        filterListener(
          'response_body',
          [{ name: 'resp', typed_config: { '@type': TS_TYPE, path: path.join(dir, 'response.js') } }],
          [{ match: { prefix: '/' }, route: { cluster: 'chunked' } }],
        ),
      ],
      [staticCluster('app', [echo.port]), staticCluster('chunked', [chunked.port])],
    ),
    { onHttpStream: (i) => streams.push(i) },
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  closeTypeScriptFilters();
  await closeAll();
  rmSync(dir, { recursive: true, force: true });
});

function upstreamHeaders(body: string): Record<string, string> {
  return (JSON.parse(body) as { headers: Record<string, string> }).headers;
}

describe('docs/filters.md examples, exactly as documented', () => {
  it('the doc shows the example files verbatim', () => {
    for (const f of ['examples/filters/api-key.ts', 'examples/filters/json-guard.ts']) {
      expect(blockAfter(`example: ${f}`)).toBe(readFileSync(path.join(ROOT, f), 'utf8'));
    }
  });

  it('example 1 (API keys): 401 without a key, consumer header upstream, public prefixes open', async () => {
    const port = m.listenerPort('api_key');
    const denied = await request(port, '/orders');
    expect(denied.status).toBe(401);
    expect(denied.body).toBe('missing or unknown API key');
    expect(denied.headers['www-authenticate']).toBe('ApiKey');
    const ok = await request(port, '/orders', { headers: { 'x-api-key': 'k-123' } });
    expect(ok.status).toBe(200);
    expect(upstreamHeaders(ok.body)['x-consumer']).toBe('mobile-app');
    expect(upstreamHeaders(ok.body)['x-api-key']).toBeUndefined();
    expect(ok.headers['x-served-as']).toBe('mobile-app');
    expect((await request(port, '/health')).status).toBe(200);
    expect(streams.find((s) => s.path === '/orders' && s.responseCode === 200)?.metadata('ts.api-key.consumer')).toBe(
      'mobile-app',
    );
  });

  it('example 2 (JSON guard): valid JSON passes, invalid 400, too large 413, blocked tenant 403', async () => {
    const port = m.listenerPort('json_guard');
    const json = { 'content-type': 'application/json' };
    const ok = await request(port, '/items', { method: 'POST', headers: json, body: '{"name":"lamp"}' });
    expect(ok.status).toBe(200);
    expect(ok.headers['x-json-guard']).toBe('passed');
    expect(echo.requests.at(-1)!.body).toBe('{"name":"lamp"}');
    const bad = await request(port, '/items', { method: 'POST', headers: json, body: '{"name":' });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatch(/^invalid JSON: /);
    const big = await request(port, '/items', { method: 'PUT', headers: json, body: `{"x":"${'a'.repeat(2000)}"}` });
    expect(big.status).toBe(413);
    expect(big.body).toBe('body over 1024 bytes');
    const blocked = await request(port, '/items', { method: 'POST', headers: { ...json, 'x-tenant': 'suspended-co' }, body: '{}' });
    expect(blocked.status).toBe(403);
    expect((await request(port, '/items')).status).toBe(200);
  });

  it('a large JSON body arriving in many chunks is held and checked whole', async () => {
    const port = m.listenerPort('json_guard');
    const body = JSON.stringify({ list: Array.from({ length: 60 }, (_, i) => i) });
    expect(body.length).toBeLessThan(1024);
    const chunks = [body.slice(0, 50), body.slice(50, 120), body.slice(120)];
    const res = await request(port, '/items', { method: 'POST', headers: { 'content-type': 'application/json' }, chunks });
    expect(res.status).toBe(200);
    expect(echo.requests.at(-1)!.body).toBe(body);
    // the same split with the closing brace missing: every chunk alone is invalid, and so is the whole
    const cut = await request(port, '/items', { method: 'POST', headers: { 'content-type': 'application/json' }, chunks: chunks.map((c, i) => (i === 2 ? c.slice(0, -1) : c)) });
    expect(cut.status).toBe(400);
  });
});

describe('failure isolation', () => {
  it('throw, reject, invalid results and budget overruns fail only their request with a 500 and a counter', async () => {
    const port = m.listenerPort('isolation');
    const stats = typeScriptFilterStats('isolation');
    const errors0 = stats.errors;
    const timeouts0 = stats.timeouts;
    for (const p of ['/throw', '/reject', '/bad', '/stop']) {
      const res = await request(port, p);
      expect(res.status, p).toBe(500);
      expect(res.body).toBe('typescript filter failed');
    }
    expect(stats.errors - errors0).toBe(4);
    expect((await request(port, '/slow')).status).toBe(500);
    expect((await request(port, '/busy')).status).toBe(500);
    expect(stats.timeouts - timeouts0).toBe(2);
    // the proxy keeps serving, on this filter and the others
    const ok = await request(port, '/fine');
    expect(ok.status).toBe(200);
    expect(ok.headers['x-isolation']).toBe('ran');
    expect(streams.find((s) => s.path === '/slow')?.responseCodeDetails).toBe('typescript_filter_timeout{isolation}');
    // the counters telemetry publishes
    const counters = new Map(gatewayFilterCounters().map((c) => [c.name, c.value]));
    expect(counters.get('typescript_filter.isolation.errors')).toBe(stats.errors);
    expect(counters.get('typescript_filter.isolation.timeouts')).toBe(stats.timeouts);
    // …and the admin endpoints publish them
    const text = await request(m.adminPort, '/stats');
    expect(text.body).toContain(`typescript_filter.isolation.errors: ${stats.errors}`);
    const prom = await request(m.adminPort, '/stats/prometheus');
    expect(prom.body).toContain(`meshlet_gateway_filter_total{stat="typescript_filter.isolation.timeouts"} ${stats.timeouts}`);
  });
});

describe('response body hooks', () => {
  it('"stop" holds a streamed response body until its end; a refusal after the headers resets the stream', async () => {
    const port = m.listenerPort('response_body');
    const ok = await request(port, '/good-body');
    expect(ok.status).toBe(200);
    expect(ok.body).toBe('part one, part two, the end');
    await expect(request(port, '/bad-body')).rejects.toThrow();
    expect(streams.find((s) => s.path === '/bad-body')?.responseCodeDetails).toBe('typescript_filter_local_reply{response}');
  });
});

describe('changes without a restart', () => {
  it('watch: a changed module applies to new requests; a broken version keeps the previous one', async () => {
    const port = m.listenerPort('watched');
    expect(upstreamHeaders((await request(port, '/v')).body)['x-version']).toBe('1');
    writeFileSync(path.join(dir, 'versioned.js'), versionModule('2'));
    const deadline = Date.now() + 8_000;
    let seen = '1';
    while (Date.now() < deadline && seen !== '2') {
      await new Promise((r) => setTimeout(r, 50));
      seen = upstreamHeaders((await request(port, '/v')).body)['x-version']!;
    }
    expect(seen).toBe('2');
    const listener = m.server.listeners.get('watched')!;
    const chain = listener.config.filterChains[0]!.filters[0]!;
    const cfg = (chain.kind === 'http_connection_manager' ? chain.hcm.httpFilters[0]!.config : undefined) as TypeScriptFilterConfig;
    const loaded = loadedFilterFor(cfg)!;
    const failures = loaded.stats.reloadFailures;
    writeFileSync(path.join(dir, 'versioned.js'), 'module.exports = { this is not javascript');
    const until = Date.now() + 8_000;
    while (Date.now() < until && loaded.stats.reloadFailures === failures) await new Promise((r) => setTimeout(r, 50));
    expect(loaded.stats.reloadFailures).toBe(failures + 1);
    expect(upstreamHeaders((await request(port, '/v')).body)['x-version']).toBe('2');
  });

  it('a changed filter config applies to new requests on the same listener', async () => {
    const port = m.listenerPort('watched');
    writeFileSync(path.join(dir, 'versioned.js'), versionModule('3'));
    const raw = bootstrap(
      [
        filterListener(
          'watched',
          [{ name: 'ver', typed_config: { '@type': TS_TYPE, path: path.join(dir, 'versioned.js'), config: { greeting: 'hello again' } } }],
          [{ match: { prefix: '/' }, route: { cluster: 'app' } }],
        ),
      ],
      [staticCluster('app', [echo.port])],
    );
    const { bootstrap: b } = decodeBootstrap(raw, { httpFilters: createRegistries().httpFilters });
    await m.server.listeners.addOrUpdate(b.staticResources.listeners[0]!);
    expect(m.listenerPort('watched')).toBe(port);
    const h = upstreamHeaders((await request(port, '/v')).body);
    expect(h['x-greeting']).toBe('hello again');
    expect(h['x-version']).toBe('3');
  });
});

describe('published types', () => {
  it('package.json exports meshlet/filter and the examples type-check against it', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      exports: Record<string, { types: string }>;
      typesVersions: Record<string, Record<string, string[]>>;
    };
    expect(pkg.exports['./filter']!.types).toBe('./dist/proxy/http/user-filter.d.ts');
    expect(pkg.typesVersions['*']!.filter).toEqual(['dist/proxy/http/user-filter.d.ts']);
    const program = ts.createProgram(
      [path.join(ROOT, 'examples/filters/api-key.ts'), path.join(ROOT, 'examples/filters/json-guard.ts'), path.join(dir, 'isolation.ts')],
      {
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.CommonJS,
        types: ['node'],
        typeRoots: [path.join(ROOT, 'node_modules/@types')],
        baseUrl: ROOT,
        // what the package's exports map resolves to, pointed at the source of the .d.ts
        paths: { 'meshlet/filter': ['proxy/http/user-filter.ts'] },
      },
    );
    const diags = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    expect(diags).toEqual([]);
  });
});

describe('the meshlet/filter entry as a user installs it', () => {
  it('resolves through package.json exports (node16) and typesVersions (node10)', () => {
    // A package laid out as npm installs it: package.json plus the emitted declaration file.
    const pkgDir = path.join(dir, 'consumer', 'node_modules', 'meshlet');
    const emitted: Record<string, string> = {};
    const emitProgram = ts.createProgram([path.join(ROOT, 'proxy/http/user-filter.ts')], {
      declaration: true,
      emitDeclarationOnly: true,
      rootDir: ROOT,
      outDir: path.join(pkgDir, 'dist'),
      skipLibCheck: true,
      types: [],
    });
    emitProgram.emit(undefined, (file, text) => {
      emitted[file] = text;
    });
    for (const [file, text] of Object.entries(emitted)) {
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, text);
    }
    expect(existsSync(path.join(pkgDir, 'dist/proxy/http/user-filter.d.ts'))).toBe(true);
    writeFileSync(path.join(pkgDir, 'package.json'), readFileSync(path.join(ROOT, 'package.json')));
    const user = path.join(dir, 'consumer', 'my-filter.ts');
    writeFileSync(user, readFileSync(path.join(ROOT, 'examples/filters/api-key.ts')));
    for (const [moduleResolution, module] of [
      [ts.ModuleResolutionKind.Node16, ts.ModuleKind.Node16],
      [ts.ModuleResolutionKind.Node10, ts.ModuleKind.CommonJS],
    ] as const) {
      const program = ts.createProgram([user], {
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        target: ts.ScriptTarget.ES2022,
        module,
        moduleResolution,
        types: ['node'],
        typeRoots: [path.join(ROOT, 'node_modules/@types')],
      });
      const diags = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      expect(diags, String(moduleResolution)).toEqual([]);
    }
  });
});

describe('watchers', () => {
  it('re-sending the same watched config reuses its watcher instead of adding one', () => {
    const raw = { path: path.join(dir, 'isolation.ts'), watch: true, config: { n: 1 } };
    decodeWith(decodeTypeScriptFilter, raw);
    const n = allLoadedFilters().length;
    for (let i = 0; i < 3; i++) expect(decodeWith(decodeTypeScriptFilter, raw).errors).toEqual([]);
    expect(allLoadedFilters().length).toBe(n);
    decodeWith(decodeTypeScriptFilter, { ...raw, config: { n: 2 } });
    expect(allLoadedFilters().length).toBe(n + 1);
  });
});

describe('TypeScript filter config validation', () => {
  it('reports a missing path, a bad extension, a budget of zero and a module that does not load', () => {
    expect(decodeWith(decodeTypeScriptFilter, {}).errors.map((e) => e.path)).toEqual(['typed_config.path']);
    const bad = decodeWith(decodeTypeScriptFilter, { path: 'x.py', time_budget: '0s' });
    expect(bad.errors.map((e) => e.path).sort()).toEqual(['typed_config.path', 'typed_config.time_budget']);
    const missing = decodeWith(decodeTypeScriptFilter, { path: path.join(dir, 'missing.ts') });
    expect(missing.errors[0]).toMatchObject({ path: 'typed_config.path' });
    writeFileSync(path.join(dir, 'syntax.ts'), 'export default { onRequestHeaders( {');
    expect(decodeWith(decodeTypeScriptFilter, { path: path.join(dir, 'syntax.ts') }).errors[0]!.message).toMatch(/syntax\.ts:1:/);
    writeFileSync(path.join(dir, 'nohooks.js'), 'module.exports = { hello() {} };');
    expect(decodeWith(decodeTypeScriptFilter, { path: path.join(dir, 'nohooks.js') }).errors[0]!.message).toMatch(
      /implements none of onRequestHeaders/,
    );
    const warn = decodeWith(decodeTypeScriptFilter, { path: path.join(dir, 'isolation.ts'), colour: 'blue' });
    expect(warn.errors).toEqual([]);
    expect(warn.warnings.map((w) => w.path)).toEqual(['typed_config.colour']);
  });
});
