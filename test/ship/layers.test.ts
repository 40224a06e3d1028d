/**
 * The layer rule, checked on the import graph of every source file (tests excluded): no import
 * circles, and every arrow points from a layer to one it may use. The layers below are the map in
 * docs/architecture.md (every entry must appear in its layer table); a new folder or file must be
 * placed here (an unplaced file fails), and a new arrow between layers means changing this table
 * on purpose, in review.
 *
 * Every import counts, `import type` included: a type-only arrow is still a dependency of the
 * design, and it is how circles start. Relative specifiers only; packages are not part of the map.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '../..');
const SOURCE_ROOTS = ['common', 'xds-client', 'certs', 'control-plane', 'proxy'];

export interface Layer {
  readonly name: string;
  /** Folders (ending in `/`) or files; a file belongs to the layer with the longest matching entry. */
  readonly paths: readonly string[];
  /** Layers this one may import, declared before it (so the order itself has no circle). */
  readonly uses: readonly string[];
}

/** Lowest first. A layer may import itself and, transitively, what it `uses`. */
export const LAYERS: readonly Layer[] = [
  { name: 'common', paths: ['common/'], uses: [] },
  { name: 'xds-client', paths: ['xds-client/'], uses: ['common'] },
  { name: 'certs', paths: ['certs/'], uses: ['common'] },
  { name: 'control-plane', paths: ['control-plane/'], uses: ['certs', 'xds-client'] },
  { name: 'proxy/config', paths: ['proxy/config/'], uses: ['common'] },
  {
    // The words every data-plane part shares: HTTP heads and connection info, header helpers,
    // matchers, per-stream info, and the connection-handler interface of listeners.
    name: 'proxy/wire',
    paths: [
      'proxy/http/codec.ts',
      'proxy/http/headers.ts',
      'proxy/http/peer-metadata.ts',
      'proxy/http/route-matcher.ts',
      'proxy/http/stream-info.ts',
      'proxy/listeners/types.ts',
    ],
    uses: ['proxy/config'],
  },
  { name: 'proxy/upstream', paths: ['proxy/upstream/'], uses: ['proxy/wire'] },
  { name: 'proxy/tls', paths: ['proxy/tls/'], uses: ['proxy/upstream', 'certs'] },
  { name: 'proxy/authz', paths: ['proxy/authz/'], uses: ['proxy/wire'] },
  { name: 'proxy/detect', paths: ['proxy/detect/'], uses: ['proxy/wire'] },
  { name: 'proxy/http', paths: ['proxy/http/'], uses: ['proxy/upstream', 'proxy/authz', 'xds-client'] },
  {
    // The router is an ordinary terminal filter: the connection manager and filter manager never
    // import it; only its factory (registered in proxy/registry.ts) does.
    name: 'proxy/http/router',
    paths: ['proxy/http/router/', 'proxy/http/filters/router-factory.ts'],
    uses: ['proxy/http'],
  },
  { name: 'proxy/tcp', paths: ['proxy/tcp/'], uses: ['proxy/upstream'] },
  {
    name: 'proxy/listeners',
    paths: ['proxy/listeners/'],
    uses: ['proxy/http', 'proxy/tcp', 'proxy/detect', 'proxy/authz', 'proxy/upstream'],
  },
  // The admin HTTP server: routes and replies; telemetry mounts its paths on it.
  { name: 'proxy/admin-server', paths: ['proxy/admin/admin-server.ts', 'proxy/admin/home-page.ts'], uses: ['proxy/config'] },
  {
    // Reads components only through the sources the composition registers (telemetry/stats.ts)
    // and the TelemetryHost it is given.
    name: 'proxy/telemetry',
    paths: ['proxy/telemetry/'],
    uses: ['proxy/http', 'proxy/tcp', 'proxy/listeners', 'proxy/detect', 'proxy/authz', 'proxy/admin-server'],
  },
  {
    // xDS → running proxy: applies through the narrow seams it declares (dynamic/config-targets.ts);
    // listeners/bind-check.ts lets LDS NACK an address that cannot be bound.
    name: 'proxy/dynamic',
    paths: ['proxy/dynamic/'],
    uses: ['proxy/listeners', 'xds-client'],
  },
  {
    // The core admin endpoints, through admin/admin-target.ts (not the server).
    name: 'proxy/admin',
    paths: ['proxy/admin/'],
    uses: ['proxy/admin-server', 'proxy/dynamic', 'proxy/listeners', 'proxy/upstream', 'certs'],
  },
  {
    // The composition: builds every part and wires them through their interfaces.
    name: 'proxy/server',
    paths: ['proxy/server.ts', 'proxy/registry.ts'],
    uses: ['proxy/telemetry', 'proxy/dynamic', 'proxy/admin', 'proxy/listeners', 'proxy/http/router', 'proxy/tls', 'certs'],
  },
  { name: 'proxy/runtime', paths: ['proxy/runtime/'], uses: ['proxy/server', 'proxy/dynamic'] },
  { name: 'proxy/intercept', paths: ['proxy/intercept/'], uses: ['proxy/listeners'] },
  { name: 'proxy/inject', paths: ['proxy/inject/'], uses: ['proxy/config'] },
  // pilot-agent's job: the bootstrap from an Istio pod's environment.
  // Its status port streams the merged scrape with the admin server's streamBody (backpressure, gzip).
  { name: 'proxy/agent', paths: ['proxy/agent/'], uses: ['proxy/config', 'proxy/admin-server'] },
  {
    name: 'proxy/cli',
    paths: ['proxy/cli/'],
    uses: ['proxy/server', 'proxy/runtime', 'proxy/intercept', 'proxy/inject', 'proxy/agent', 'control-plane'],
  },
  { name: 'proxy/main', paths: ['proxy/main.ts'], uses: ['proxy/cli'] },
];

/** file → the files it imports (relative specifiers resolved to .ts files under ROOT). */
export type ImportGraph = ReadonlyMap<string, ReadonlySet<string>>;

function sourceFiles(dir: string, out: string[]): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sourceFiles(p, out);
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function resolveSpecifier(from: string, spec: string): string | undefined {
  const base = resolve(dirname(from), spec);
  for (const c of [`${base}.ts`, join(base, 'index.ts'), base.replace(/\.js$/, '.ts')]) {
    if (existsSync(c) && statSync(c).isFile()) return c;
  }
  return undefined;
}

/** Static, dynamic (`import()`), `require()` and type-position `import()` arrows of every source file. */
export function buildImportGraph(root: string, roots: readonly string[]): { graph: ImportGraph; unresolved: string[] } {
  const graph = new Map<string, Set<string>>();
  const unresolved: string[] = [];
  for (const r of roots) {
    for (const file of sourceFiles(join(root, r), [])) {
      const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
      const to = new Set<string>();
      const rel = relative(root, file);
      for (const { fileName } of info.importedFiles) {
        if (!fileName.startsWith('.')) continue;
        const target = resolveSpecifier(file, fileName);
        if (target) to.add(relative(root, target));
        else unresolved.push(`${rel} → ${fileName}`);
      }
      graph.set(rel, to);
    }
  }
  return { graph, unresolved };
}

/** The layer a file belongs to: the one with the longest matching path entry. */
export function layerOf(file: string, layers: readonly Layer[]): string | undefined {
  let best: { name: string; len: number } | undefined;
  for (const l of layers) {
    for (const p of l.paths) {
      const hit = p.endsWith('/') ? file.startsWith(p) : file === p;
      if (hit && (!best || p.length > best.len)) best = { name: l.name, len: p.length };
    }
  }
  return best?.name;
}

/** For each layer, every layer it may import (itself included), following `uses` transitively. */
export function allowedLayers(layers: readonly Layer[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const l of layers) {
    const allowed = new Set([l.name]);
    for (const u of l.uses) {
      const below = out.get(u);
      if (!below) throw new Error(`layer ${l.name} uses ${u}, which is not declared before it`);
      for (const b of below) allowed.add(b);
    }
    out.set(l.name, allowed);
  }
  return out;
}

/** Arrows that leave a file's layer for one it may not use, as "from → to (layer → layer)". */
export function layerViolations(graph: ImportGraph, layers: readonly Layer[]): string[] {
  const allowed = allowedLayers(layers);
  const out: string[] = [];
  for (const [from, tos] of graph) {
    const lf = layerOf(from, layers);
    for (const to of tos) {
      const lt = layerOf(to, layers);
      if (lf && lt && !allowed.get(lf)!.has(lt)) out.push(`${from} → ${to} (${lf} may not use ${lt})`);
    }
  }
  return out.sort();
}

/** Import circles: the strongly connected components with more than one file (or a self-import). */
export function importCircles(graph: ImportGraph): string[][] {
  // Tarjan's algorithm, iterative so deep graphs cannot overflow the stack.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  let next = 0;
  for (const start of graph.keys()) {
    if (index.has(start)) continue;
    const work: { node: string; edges: string[]; i: number }[] = [];
    const visit = (n: string): void => {
      index.set(n, next);
      low.set(n, next);
      next++;
      stack.push(n);
      onStack.add(n);
      work.push({ node: n, edges: [...(graph.get(n) ?? [])], i: 0 });
    };
    visit(start);
    while (work.length > 0) {
      const top = work[work.length - 1]!;
      if (top.i < top.edges.length) {
        const m = top.edges[top.i++]!;
        if (!index.has(m)) visit(m);
        else if (onStack.has(m)) low.set(top.node, Math.min(low.get(top.node)!, index.get(m)!));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1]!.node;
        low.set(parent, Math.min(low.get(parent)!, low.get(top.node)!));
      }
      if (low.get(top.node) === index.get(top.node)) {
        const scc: string[] = [];
        let m: string;
        do {
          m = stack.pop()!;
          onStack.delete(m);
          scc.push(m);
        } while (m !== top.node);
        if (scc.length > 1 || graph.get(top.node)?.has(top.node)) out.push(scc.sort());
      }
    }
  }
  return out;
}

describe('the layer rule on the import graph', () => {
  const { graph, unresolved } = buildImportGraph(ROOT, SOURCE_ROOTS);

  it('reads the whole tree', () => {
    expect(graph.size).toBeGreaterThan(150);
    expect(unresolved).toEqual([]);
  });

  it('places every source file in a layer, and every layer entry matches a file', () => {
    expect([...graph.keys()].filter((f) => layerOf(f, LAYERS) === undefined)).toEqual([]);
    const files = [...graph.keys()];
    const stale = LAYERS.flatMap((l) =>
      l.paths.filter((p) => !files.some((f) => (p.endsWith('/') ? f.startsWith(p) : f === p))),
    );
    expect(stale).toEqual([]);
  });

  it('has no import circle', () => {
    expect(importCircles(graph)).toEqual([]);
  });

  it('has no arrow from a layer to one it may not use', () => {
    expect(layerViolations(graph, LAYERS)).toEqual([]);
  });

  it('is the table docs/architecture.md shows', () => {
    const doc = readFileSync(join(ROOT, 'docs/architecture.md'), 'utf8');
    const rows = doc.slice(doc.indexOf('## The layers'), doc.indexOf('## The path of a request'));
    expect(LAYERS.flatMap((l) => l.paths).filter((p) => !rows.includes(`\`${p}`))).toEqual([]);
  });
});

describe('the checker itself', () => {
  const layers: Layer[] = [
    { name: 'low', paths: ['low/'], uses: [] },
    { name: 'mid', paths: ['mid/', 'low/special.ts'], uses: ['low'] },
    { name: 'high', paths: ['high/'], uses: ['mid'] },
  ];
  const g = (edges: [string, string][]): ImportGraph => {
    const m = new Map<string, Set<string>>();
    for (const [a, b] of edges) {
      if (!m.has(a)) m.set(a, new Set());
      if (!m.has(b)) m.set(b, new Set());
      m.get(a)!.add(b);
    }
    return m;
  };

  it('reports an arrow pointing up, and accepts arrows pointing down (transitively)', () => {
    expect(layerViolations(g([['high/a.ts', 'low/b.ts'], ['mid/c.ts', 'low/b.ts']]), layers)).toEqual([]);
    expect(layerViolations(g([['low/b.ts', 'mid/c.ts']]), layers)).toEqual([
      'low/b.ts → mid/c.ts (low may not use mid)',
    ]);
    // A file entry wins over its folder: low/special.ts is in mid, so low may not import it.
    expect(layerViolations(g([['low/b.ts', 'low/special.ts']]), layers)).toHaveLength(1);
  });

  it('reports circles, also ones that stay inside a layer', () => {
    expect(importCircles(g([['mid/a.ts', 'mid/b.ts'], ['mid/b.ts', 'mid/c.ts'], ['mid/c.ts', 'mid/a.ts']]))).toEqual([
      ['mid/a.ts', 'mid/b.ts', 'mid/c.ts'],
    ]);
    expect(importCircles(g([['mid/a.ts', 'mid/b.ts'], ['mid/b.ts', 'low/c.ts']]))).toEqual([]);
  });

  it('refuses a layer table that uses a layer declared after it', () => {
    expect(() => allowedLayers([{ name: 'a', paths: [], uses: ['b'] }, { name: 'b', paths: [], uses: [] }])).toThrow(
      /not declared before/,
    );
  });
});
