/**
 * deploy/istio/injection-values.yaml, linted: the Helm values parse, the `meshlet` template under
 * sidecarInjectorWebhook.templates parses as the pod patch istiod merges over its `sidecar`
 * template (the istio-proxy container, by name), its command is the meshlet image's entry point
 * (Dockerfile), and its args are accepted by the real commands: `meshlet agent` renders a
 * bootstrap that `meshlet proxy --validate` accepts with the proxy flags after `--`.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import { runAgent } from '../../proxy/cli/agent';
import { runProxy } from '../../proxy/cli/proxy';

const ROOT = join(__dirname, '../..');
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');
const tmp = mkdtempSync(join(tmpdir(), 'meshlet-istio-template-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string }> {
  let out = '';
  const w = vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
    out += String(s);
    return true;
  });
  try {
    return { code: await fn(), out };
  } finally {
    w.mockRestore();
  }
}

describe('deploy/istio/injection-values.yaml', () => {
  const values = parse(read('deploy/istio/injection-values.yaml')) as Obj;
  const template = values.sidecarInjectorWebhook.templates.meshlet as string;
  // No Go template expressions: the patch is the same for every pod.
  const patch = parse(template) as Obj;
  const proxy = patch.spec.containers[0] as Obj;

  it('is a pod patch for the istio-proxy container only (volumes, env, ports and probes stay Istio’s)', () => {
    expect(template).not.toContain('{{');
    expect(Object.keys(patch)).toEqual(['spec']);
    expect(Object.keys(patch.spec)).toEqual(['containers']);
    expect(patch.spec.containers).toHaveLength(1);
    expect(proxy.name).toBe('istio-proxy');
    expect(Object.keys(proxy).sort()).toEqual(['args', 'command', 'image', 'lifecycle', 'name']);
  });

  it("runs the meshlet image's entry point", () => {
    const dockerfile = read('Dockerfile');
    const runtime = dockerfile.slice(dockerfile.indexOf('AS runtime'));
    expect(runtime).toContain(`ENTRYPOINT ["${proxy.command[0]}", "${proxy.command[1]}", "proxy"]`);
    expect(proxy.lifecycle.postStart.exec.command.slice(0, 3)).toEqual([...proxy.command, 'wait']);
  });

  it('its args are accepted by meshlet agent, and the bootstrap and proxy flags by meshlet proxy --validate', async () => {
    const args = proxy.args as string[];
    expect(args[0]).toBe('agent');
    const dash = args.indexOf('--');
    const own = args.slice(1, dash).map((a) => (a === '/etc/istio/proxy/meshlet-bootstrap.json' ? join(tmp, 'b.json') : a));
    const printed = await capture(() => runAgent([...own, '--print']));
    expect(printed.code).toBe(0);
    const bootstrap = JSON.parse(printed.out) as Obj;
    expect(bootstrap.dynamic_resources.ads_config.grpc_services[0].google_grpc.target_uri).toBe('istiod.istio-system.svc:15012');
    const { writeFileSync } = await import('node:fs');
    const file = join(tmp, 'b.json');
    writeFileSync(file, printed.out);
    const validated = await capture(() => runProxy(['--bootstrap', file, '--status-port', '15020', ...args.slice(dash + 1), '--validate']));
    expect(validated.out).toContain('OK');
    expect(validated.code).toBe(0);
  });
});
