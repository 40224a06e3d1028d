/**
 * docs/ checked against the code: every error code and response flag of common/errors.ts is in
 * errors.md, and every code is raised somewhere; every admin route a running meshlet serves (its own `GET /` index) is in admin.md
 * under the right method; every metric family a running meshlet exports and every Istio label is
 * in metrics.md; bootstrap.md names exactly the fields the Envoy decoders read; mesh-file.md names
 * every key the mesh file parser reads; and the docs README links to resolve.
 */
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, RESPONSE_FLAGS } from '../../common/errors';
import { ISTIO_HTTP_LABELS } from '../../proxy/telemetry/metrics';
import { startMeshlet, stopAllMeshlets } from '../support/meshlet';

const ROOT = join(__dirname, '../..');
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');
const ticked = (doc: string) => new Set([...doc.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!));
const tsFiles = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );

afterAll(async () => {
  await stopAllMeshlets();
});

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

/**
 * Field names the decoders read: Reader calls and helpers with a literal key, oneof lists, and the
 * constant / literal key lists they loop over. The same rules produced bootstrap.md's lists.
 */
function decoderFields(files: string[]): Set<string> {
  const call =
    /(?:\.(?:str|requiredStr|bool|int|optInt|num|durationMs|obj|arr|list|strList|map|any|raw|has|ignore|error|warnNoEffect|warnNoEffectOnce)|\b(?:dur|enumOf|enumNamed|decode[A-Za-z]*|requiredDataSource|headerName|pos|percent|requiredPositiveMs|optionalPositiveMs|src|tlsVersion))\(\s*(?:[a-zA-Z]+,\s*)?'([a-z][a-z0-9_]*)'/g;
  const out = new Set<string>();
  const names = (list: string) => [...list.matchAll(/'([a-z0-9_]+)'/g)].map((m) => m[1]!);
  for (const f of files) {
    const src = read(f);
    for (const m of src.matchAll(call)) out.add(m[1]!);
    for (const m of src.matchAll(/oneof\(\[([^\]]*)\]/g)) for (const n of names(m[1]!)) out.add(n);
    for (const m of src.matchAll(/for \(const k of \[([^\]]*)\]/g)) for (const n of names(m[1]!)) out.add(n);
    for (const m of src.matchAll(/(?:oneof\(|of )([A-Z_]+)\)/g)) {
      const def = new RegExp(`${m[1]}[^=]*=\\s*\\[([^\\]]*)\\]`).exec(src);
      if (def) for (const n of names(def[1]!)) out.add(n);
    }
    for (const m of src.matchAll(/\.ignore\(([^)]*)\)/g)) for (const n of names(m[1]!)) out.add(n);
  }
  return out;
}

describe('docs/errors.md', () => {
  const doc = ticked(read('docs/errors.md'));
  it('lists every error code and every response flag', () => {
    expect(ERROR_CODES.filter((c) => !doc.has(c))).toEqual([]);
    expect(Object.keys(RESPONSE_FLAGS).filter((f) => !doc.has(f))).toEqual([]);
  });
  it('lists only codes of common/errors.ts, each in its own table row', () => {
    const text = read('docs/errors.md');
    const documented = [...text.matchAll(/\b(MESHLET_ERR_[A-Z_]+)\b/g)].map((m) => m[1]!);
    expect(documented.filter((c) => !(ERROR_CODES as readonly string[]).includes(c))).toEqual([]);
    for (const code of ERROR_CODES) expect(text).toMatch(new RegExp(`^\\| \`${code}\` \\|`, 'm'));
  });
  it('every code is raised somewhere in the sources', () => {
    const sources = ['common', 'xds-client', 'certs', 'control-plane', 'proxy']
      .flatMap((d) => tsFiles(join(ROOT, d)))
      .filter((f) => !f.endsWith('.test.ts') && !f.endsWith(join('common', 'errors.ts')))
      .map((f) => readFileSync(f, 'utf8'))
      .join('\n');
    expect(ERROR_CODES.filter((c) => !sources.includes(`'${c}'`))).toEqual([]);
  });
});

describe('docs/admin.md and docs/metrics.md against a running meshlet', () => {
  it('every admin route the server registers is documented under its method', async () => {
    const m = await startMeshlet({ admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } } });
    const index = await get(m.adminPort, '/');
    const routes = [...index.matchAll(/^\s+(GET|POST)\s+(\/\S*)/gm)].map((x) => ({ method: x[1]!, path: x[2]! }));
    expect(routes.length).toBeGreaterThan(10);
    // Source and runtime agree (routes registered in endpoints.ts are all served).
    for (const x of read('proxy/admin/endpoints.ts').matchAll(/admin\.route\('(GET|POST)', '([^']+)'/g))
      expect(routes).toContainEqual({ method: x[1], path: x[2] });
    const doc = read('docs/admin.md');
    const get_ = doc.slice(doc.indexOf('## Read-only endpoints (GET)'), doc.indexOf('## Mutations (POST)'));
    const post = doc.slice(doc.indexOf('## Mutations (POST)'));
    expect(get_.length).toBeGreaterThan(0);
    for (const r of routes) {
      const section = r.method === 'GET' ? get_ : post;
      expect(section, `${r.method} ${r.path}`).toContain(`| \`${r.path}\` |`);
    }
  });

  it('every metric family exported and every Istio label is documented', async () => {
    const m = await startMeshlet({ admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } } });
    const body = await get(m.adminPort, '/stats/prometheus');
    const families = [...body.matchAll(/^# TYPE (\S+) /gm)].map((x) => x[1]!);
    expect(families).toEqual(expect.arrayContaining(['istio_requests_total', 'envoy_server_uptime']));
    const doc = read('docs/metrics.md');
    expect(families.filter((f) => !doc.includes(f))).toEqual([]);
    expect(ISTIO_HTTP_LABELS.filter((l) => !doc.includes(`\`${l}\``))).toEqual([]);
  });
});

describe('docs/bootstrap.md', () => {
  const files = [
    ...readdirSync(join(ROOT, 'proxy/config/envoy'))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .map((f) => `proxy/config/envoy/${f}`),
    'proxy/config/bootstrap.ts',
  ];
  const fields = decoderFields(files);
  // Some filter configs (config/filters) are documented here too: a field named here must be read somewhere.
  const readAnywhere = decoderFields([
    ...files,
    ...readdirSync(join(ROOT, 'proxy/config/filters'))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .map((f) => `proxy/config/filters/${f}`),
  ]);
  const doc = read('docs/bootstrap.md');
  const listed = new Set<string>();
  for (const line of doc.split('\n')) {
    if (!/^- (Supported|Accepted, no effect(?: \([^)]*\))?|Limited|Rejected if set):/.test(line)) continue;
    const body = line.startsWith('- Supported:') || line.startsWith('- Accepted') ? line : line.split(' — ')[0]!;
    for (const m of body.matchAll(/`([a-z][a-z0-9_]*)`/g)) listed.add(m[1]!);
  }

  it('lists only fields the decoders read', () => {
    expect(fields.size).toBeGreaterThan(300);
    expect([...listed].filter((f) => !readAnywhere.has(f))).toEqual([]);
  });

  it('lists every field the decoders read', () => {
    expect([...fields].filter((f) => !listed.has(f)).sort()).toEqual([]);
  });

  it('names the HTTP filters registered in proxy/registry.ts', () => {
    const registry = read('proxy/registry.ts');
    const filterFiles = [...registry.matchAll(/from '\.\/http\/filters\/([a-z-]+)'/g)].map((m) => m[1]!);
    expect(filterFiles.length).toBeGreaterThan(2);
    for (const f of filterFiles) {
      const src = read(`proxy/http/filters/${f}.ts`);
      for (const t of src.matchAll(/'(envoy\.extensions\.filters\.http\.[a-z_]+\.v3\.[A-Za-z]+)'/g)) {
        const shortName = t[1]!.split('.').slice(-3).join('.'); // e.g. rbac.v3.RBAC
        expect(doc, t[1]).toContain(shortName);
      }
    }
  });
});

describe('docs/mesh-file.md', () => {
  it('names every key the mesh file parser reads', () => {
    const src = read('control-plane/mesh.ts');
    const keys = new Set<string>();
    for (const m of src.matchAll(/\.(?:str|requiredStr|bool|int|durationMs|obj|arr|list|strList|raw|has|enumOf)\(\s*'([a-z_]+)'/g)) keys.add(m[1]!);
    for (const m of src.matchAll(/\bname\([a-z]+, '([a-z_]+)'/g)) keys.add(m[1]!);
    for (const m of src.matchAll(/oneof\(\[([^\]]*)\]/g)) for (const n of m[1]!.matchAll(/'([a-z_]+)'/g)) keys.add(n[1]!);
    expect(keys.size).toBeGreaterThan(20);
    // `ports[].target_port` names target_port; `from[].any` names any.
    const doc = new Set([...ticked(read('docs/mesh-file.md'))].map((t) => t.split(/[.\]]/).pop()!));
    expect([...keys].filter((k) => !doc.has(k)).sort()).toEqual([]);
  });
});

describe('docs links', () => {
  it('every relative link in docs/*.md, deploy READMEs and README.md points to a file that exists', () => {
    const pages = [
      ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`),
      'README.md',
      'deploy/kubernetes/README.md',
      'deploy/istio/README.md',
    ];
    expect(pages).toEqual(expect.arrayContaining(['docs/bootstrap.md', 'docs/admin.md', 'docs/metrics.md', 'docs/errors.md', 'docs/operations.md', 'docs/mesh-file.md', 'docs/demo.md']));
    const broken: string[] = [];
    for (const p of pages) {
      const dir = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '.';
      for (const m of read(p).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue;
        try {
          readFileSync(join(ROOT, dir, target));
        } catch {
          try {
            readdirSync(join(ROOT, dir, target));
          } catch {
            broken.push(`${p} → ${target}`);
          }
        }
      }
    }
    expect(broken).toEqual([]);
  });
});
