import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findWorkload, parseMesh, parseMeshOrThrow } from './mesh';

const example = readFileSync(join(__dirname, 'examples', 'bookinfo.yaml'), 'utf8');

describe('mesh file', () => {
  it('parses the example into a frozen model with SPIFFE ids and defaults', () => {
    const r = parseMesh(example);
    if (!r.ok) throw new Error(JSON.stringify(r.errors));
    expect(r.warnings).toEqual([]);
    const m = r.mesh;
    expect(Object.isFrozen(m) && Object.isFrozen(m.workloads[0])).toBe(true);
    expect(m.services.map((s) => s.host)).toContain('reviews.default.svc.cluster.local');
    const w = m.workloads.find((x) => x.name === 'reviews-v2')!;
    expect(w).toMatchObject({ ip: '127.0.0.12', inboundPort: 15006, outboundIp: '127.0.0.12', version: 'v2' });
    expect(w.spiffeId).toBe('spiffe://cluster.local/ns/default/sa/reviews');
    expect(m.traffic[0]).toMatchObject({
      service: 'reviews',
      timeoutMs: 3000,
      retries: { attempts: 2, perTryTimeoutMs: 1000 },
    });
    expect(m.authorization[3]!.from[0]).toEqual({
      kind: 'principal',
      spiffeId: 'spiffe://cluster.local/ns/default/sa/ratings',
    });
  });

  it('accepts the schema example in examples/README.md', () => {
    const readme = readFileSync(join(__dirname, 'examples', 'README.md'), 'utf8');
    const snippet = /```yaml\n([\s\S]*?)```/.exec(readme)![1]!;
    const r = parseMesh(snippet);
    expect(r.ok ? [] : r.errors).toEqual([]);
    expect(r.ok && r.warnings).toEqual([]);
  });

  it('finds a workload by plain name, name.namespace and Istio sidecar node id', () => {
    const { mesh } = parseMeshOrThrow(example);
    expect(findWorkload(mesh, 'reviews-v1')?.name).toBe('reviews-v1');
    expect(findWorkload(mesh, 'reviews-v1.default')?.name).toBe('reviews-v1');
    expect(findWorkload(mesh, 'sidecar~127.0.0.11~reviews-v1.default~default.svc.cluster.local')?.name).toBe(
      'reviews-v1',
    );
    expect(findWorkload(mesh, 'nope')).toBeUndefined();
    expect(findWorkload(mesh, 'reviews-v1.other')).toBeUndefined();
  });

  it('collects every problem with its path', () => {
    const r = parseMesh(`
trust_domain: Bad_Domain
services:
  - name: a
    ports: [{ port: 80, protocol: smtp }]
  - name: b
    ports: [{ port: 80, protocol: tcp }]
workloads:
  - { name: a1, service: a, address: "127.0.0.2:80", version: v1 }
  - { name: a2, service: missing, address: "localhost:80" }
  - { name: a3, service: a, address: "127.0.0.2:80", bogus: 1 }
traffic:
  - service: a
    splits: [{ version: v9, weight: 10 }]
    timeout: soon
authorization:
  - service: a
    action: MAYBE
    from: [{ principal: "spiffe://UPPER/x" }, {}]
    paths: [admin]
`);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const byPath = r.errors.map((e) => `${e.path}: ${e.message}`);
    const expectOne = (re: RegExp) =>
      expect(
        byPath.some((l) => re.test(l)),
        `${re} in\n${byPath.join('\n')}`,
      ).toBe(true);
    expectOne(/^trust_domain: .*not a valid SPIFFE trust domain/);
    expectOne(/^services\[0\]\.ports\[0\]\.protocol: unknown value "smtp"/);
    expectOne(/^services: port 80 is a tcp port shared by a, b/);
    expectOne(/^workloads\[1\]\.service: unknown service "missing"/);
    expectOne(/^workloads\[1\]\.address: expected "IPv4:port"/);
    expectOne(/^workloads\[2\]\.addresses\[0\]: 127\.0\.0\.2:80 is already used by app of a1/);
    expectOne(/^traffic\[0\]\.splits\[0\]\.version: no workload of a has version "v9"/);
    expectOne(/^traffic\[0\]\.timeout: expected a duration/);
    expectOne(/^authorization\[0\]\.action: unknown value "MAYBE"/);
    expectOne(/^authorization\[0\]\.from\[0\]\.principal: invalid trust domain/);
    expectOne(/^authorization\[0\]\.from\[1\]: set one of service_account/);
    expectOne(/^authorization\[0\]\.paths\[0\]: path prefix must start with "\/"/);
    expect(r.warnings.map((w) => w.path)).toContain('workloads[2].bogus');
    expect(() => parseMeshOrThrow('services: [')).toThrow(/invalid/);
  });

  it('rejects an empty (or truncated-to-empty) file', () => {
    const r = parseMesh('');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors.map((e) => e.path)).toEqual(['services', 'workloads']);
  });

  it('reports YAML syntax errors readably', () => {
    const r = parseMesh('services:\n  - name: a\n   ports: x\n');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]).toMatchObject({ path: 'line 3', message: expect.stringMatching(/^invalid YAML: /) });
  });
});
