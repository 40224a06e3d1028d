/**
 * The Dockerfile's essentials, checked by parsing it (images cannot be built on this machine):
 * official Node 20 base images, a multi-stage build whose native toolchain stays in the build
 * stage, `npm ci` from the lockfile, dev dependencies pruned, UID/GID 1337, `meshlet proxy` as
 * the entrypoint with flags the proxy command really accepts, Istio's ports exposed, a shell-free
 * health check on 15021, and a .dockerignore that keeps node_modules and .git out while letting
 * every copied source in.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { runProxy } from '../../proxy/cli/proxy';

const ROOT = join(__dirname, '../..');

interface Instruction {
  readonly op: string;
  readonly args: string;
  readonly line: number;
}
interface Stage {
  readonly image: string;
  readonly name?: string;
  readonly instructions: Instruction[];
}

/** Dockerfile → stages of instructions (comments dropped, `\` continuations joined). */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1;
    let l = lines[i]!.trim();
    if (l === '' || l.startsWith('#')) continue;
    while (l.endsWith('\\') && i + 1 < lines.length) {
      i++;
      const next = lines[i]!.trim();
      l = `${l.slice(0, -1).trimEnd()} ${next.startsWith('#') ? '' : next}`.trim();
    }
    const m = /^(\S+)\s*(.*)$/.exec(l)!;
    const ins: Instruction = { op: m[1]!.toUpperCase(), args: m[2]!, line: start };
    if (ins.op === 'FROM') {
      const f = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      expect(f, `FROM at line ${start}`).not.toBeNull();
      stages.push({ image: f![1]!, name: f![2], instructions: [] });
      continue;
    }
    expect(stages.length, `${ins.op} at line ${start} comes before any FROM`).toBeGreaterThan(0);
    stages[stages.length - 1]!.instructions.push(ins);
  }
  return stages;
}

/** Exec form (a JSON array) of ENTRYPOINT/CMD/HEALTHCHECK CMD; undefined for shell form. */
function execForm(args: string): string[] | undefined {
  const t = args.trim();
  if (!t.startsWith('[')) return undefined;
  const v = JSON.parse(t) as unknown;
  return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : undefined;
}

const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfile);
const final = stages[stages.length - 1]!;
const all = (s: Stage, op: string) => s.instructions.filter((i) => i.op === op);
const one = (s: Stage, op: string) => {
  const xs = all(s, op);
  expect(xs, `${op} in stage ${s.name ?? s.image}`).toHaveLength(1);
  return xs[0]!;
};

describe('Dockerfile', () => {
  it('is a multi-stage build on official Node 20 images (distroless nodejs20 allowed at run time)', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages.slice(0, -1)) expect(s.image).toMatch(/^(docker\.io\/(library\/)?)?node:20(\.\d+)*(-\w+)*-slim$|^node:20-bookworm-slim$/);
    expect(final.image).toMatch(/^((docker\.io\/(library\/)?)?node:20(\.\d+)*-(bookworm-)?slim|gcr\.io\/distroless\/nodejs20-debian1[2-9](:[\w.-]+)?)$/);
    // The runtime stage takes the build's output, not its own install.
    const build = stages[0]!;
    expect(build.name).toBeDefined();
    const copiesFromBuild = all(final, 'COPY').filter((c) => c.args.includes(`--from=${build.name}`));
    expect(copiesFromBuild.map((c) => c.args.split(/\s+/).at(-1))).toEqual(
      expect.arrayContaining(['./node_modules', './dist', './bin', './build/Release/original_dst.node']),
    );
    expect(all(final, 'RUN')).toEqual([]);
  });

  it('installs from the lockfile with npm ci, builds native parts in the build stage only, prunes dev dependencies', () => {
    const build = stages[0]!;
    const runs = build.instructions.filter((i) => i.op === 'RUN').map((i) => i.args);
    const everyRun = stages.flatMap((s) => all(s, 'RUN').map((i) => i.args));
    for (const r of everyRun) expect(r, 'no npm install (it ignores the lockfile)').not.toMatch(/\bnpm\s+(install|i)\b/);
    expect(runs.some((r) => /\bnpm ci\b/.test(r))).toBe(true);
    const copyLock = all(build, 'COPY').find((c) => c.args.includes('package-lock.json'));
    expect(copyLock, 'package-lock.json is copied before npm ci').toBeDefined();
    const ciLine = build.instructions.find((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args))!.line;
    expect(copyLock!.line).toBeLessThan(ciLine);
    expect(runs.some((r) => /apt-get install .*python3/.test(r) && /\bmake\b/.test(r) && /\bg\+\+/.test(r))).toBe(true);
    expect(runs.some((r) => /build-native\.js/.test(r) && /original_dst\.node/.test(r))).toBe(true);
    expect(runs.some((r) => /npm prune --omit=dev/.test(r))).toBe(true);
  });

  it('runs as UID/GID 1337 with `meshlet proxy` as the entrypoint and flags the proxy command accepts', async () => {
    expect(one(final, 'USER').args.trim()).toBe('1337:1337');
    const entry = execForm(one(final, 'ENTRYPOINT').args);
    expect(entry, 'ENTRYPOINT in exec form (no shell in the runtime image)').toBeDefined();
    expect(entry!.slice(-2)).toEqual(['/app/bin/meshlet.js', 'proxy']);
    expect(entry![0]).toMatch(/node$/);
    const cmd = execForm(one(final, 'CMD').args)!;
    expect(cmd).toEqual(expect.arrayContaining(['--bootstrap', '--stats-port', '15090', '--health-port', '15021']));
    // `meshlet proxy` really accepts what the image passes: run it with --validate on a bootstrap.
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-docker-'));
    const file = join(dir, 'bootstrap.yaml');
    writeFileSync(file, 'admin: { address: { socket_address: { address: 127.0.0.1, port_value: 15000 } } }\n');
    const args = cmd.map((a) => (a === '/etc/meshlet/bootstrap.yaml' ? file : a));
    expect(args).toContain(file);
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      expect(await runProxy([...args, '--validate'])).toBe(0);
      expect(out.mock.calls.map((c) => String(c[0])).join('')).toContain('OK');
    } finally {
      out.mockRestore();
      rmSync(dir, { recursive: true, force: true });
    }
    // The bin the entrypoint names exists and loads the compiled main.
    expect(readFileSync(join(ROOT, 'bin/meshlet.js'), 'utf8')).toContain('dist/proxy/main.js');
  });

  it('exposes Istio ports and checks health on 15021 /healthz/ready without a shell', () => {
    const ports = all(final, 'EXPOSE').flatMap((e) => e.args.split(/\s+/));
    expect(ports.sort()).toEqual(['15000', '15001', '15006', '15021', '15090']);
    const hc = one(final, 'HEALTHCHECK').args;
    const cmdAt = hc.indexOf('CMD ');
    expect(cmdAt).toBeGreaterThan(-1);
    const probe = execForm(hc.slice(cmdAt + 4))!;
    expect(probe, 'HEALTHCHECK CMD in exec form').toBeDefined();
    expect(probe).toContain('wait');
    expect(probe.find((a) => a.startsWith('http://'))).toBe('http://127.0.0.1:15021/healthz/ready');
    expect(readFileSync(join(ROOT, 'proxy/cli/wait.ts'), 'utf8')).toContain("admin: { type: 'string' }");
  });

  it('has an init target with iptables for the meshlet-init container, running meshlet from the build', () => {
    const init = stages.find((s) => s.name === 'init');
    expect(init, 'stage "init"').toBeDefined();
    expect(init!.image).toMatch(/^node:20(\.\d+)*-(bookworm-)?slim$/);
    expect(all(init!, 'RUN').some((r) => /apt-get install .*\biptables\b/.test(r.args))).toBe(true);
    expect(all(init!, 'COPY').filter((c) => c.args.includes('--from=build')).map((c) => c.args.split(/\s+/).at(-1))).toEqual(
      expect.arrayContaining(['./node_modules', './dist', './bin']),
    );
    // meshlet inject's init container runs /usr/local/bin/node /app/bin/meshlet.js iptables …
    expect(execForm(one(init!, 'ENTRYPOINT').args)).toEqual(['/usr/local/bin/node', '/app/bin/meshlet.js']);
    expect(stages.indexOf(init!)).toBeLessThan(stages.length - 1);
  });

  it('.dockerignore keeps node_modules and .git out, and lets every copied source in', () => {
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    expect(ignore).toEqual(expect.arrayContaining(['node_modules', '.git']));
    const contextCopies = stages.flatMap((s) => all(s, 'COPY').filter((c) => !c.args.includes('--from=')));
    expect(contextCopies.length).toBeGreaterThan(0);
    for (const c of contextCopies) {
      const parts = c.args.split(/\s+/).filter((p) => !p.startsWith('--'));
      for (const src of parts.slice(0, -1)) {
        expect(existsSync(join(ROOT, src)), `COPY source ${src} (line ${c.line}) exists`).toBe(true);
        expect(ignore, `COPY source ${src} is not excluded by .dockerignore`).not.toContain(src);
      }
    }
  });
});
