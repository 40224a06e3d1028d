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

  describe('app addresses and target ports', () => {
    const svc = `
services:
  - name: api
    ports: [{ name: http, port: 80, protocol: http, target_port: 8080 }, { name: tcp, port: 90, protocol: tcp, target_port: 9090 }]
  - { name: one, ports: [{ port: 81, protocol: http, target_port: 8081 }] }
workloads:
  - { name: one-1, service: one, address: "127.0.0.3:8081" }
`;
    const errorsOf = (workload: string) => {
      const r = parseMesh(svc + workload);
      return r.ok ? [] : r.errors.map((e) => `${e.path}: ${e.message}`);
    };

    it('rejects a multi-port workload whose single address leaves a target port without its app', () => {
      // The defect: port 90's traffic went to the http app on 8080, silently.
      for (const w of [
        '  - { name: api-1, service: api, address: "127.0.0.2:8080" }\n',
        '  - { name: api-1, service: api, addresses: ["127.0.0.2:8080"] }\n',
      ]) {
        const errors = errorsOf(w);
        expect(errors).toHaveLength(1);
        expect(errors[0]).toMatch(
          /^workloads\[1\]\.address(es)?: workload api-1 has no address for port 90 of service api \(target_port 9090\); .*have 127\.0\.0\.2:8080\)$/,
        );
      }
      expect(errorsOf('  - { name: api-1, service: api, addresses: ["127.0.0.2:9090", "127.0.0.2:9999"] }\n')).toEqual([
        expect.stringMatching(/^workloads\[1\]\.addresses: workload api-1 has no address for port 80 .*target_port 8080/),
      ]);
    });

    it('accepts one address per target port, and warns about an address no port targets', () => {
      const ok = parseMesh(svc + '  - { name: api-1, service: api, addresses: ["127.0.0.2:9090", "127.0.0.2:8080"] }\n');
      expect(ok.ok && ok.warnings).toEqual([]);
      const extra = parseMesh(
        svc + '  - { name: api-1, service: api, addresses: ["127.0.0.2:9090", "127.0.0.2:8080", "127.0.0.2:7070"] }\n',
      );
      expect(extra.ok && extra.warnings.map((w) => `${w.path}: ${w.message}`)).toEqual([
        'workloads[1].addresses[2]: 127.0.0.2:7070 is no target_port of service api; nothing is sent to it',
      ]);
    });

    it("warns (and uses it) when a single-port service's one address is not its target_port", () => {
      const r = parseMesh(
        svc.replace('127.0.0.3:8081', '127.0.0.3:18081') + '  - { name: api-1, service: api, addresses: ["127.0.0.2:9090", "127.0.0.2:8080"] }\n',
      );
      expect(r.ok).toBe(true);
      expect(r.warnings.map((w) => `${w.path}: ${w.message}`)).toEqual([
        "workloads[0].address: port 81 of service one has target_port 8081 but workload one-1's app is 127.0.0.3:18081; " +
          'traffic goes to 127.0.0.3:18081 (set target_port: 18081 to silence this)',
      ]);
    });
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
