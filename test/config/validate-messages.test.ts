/**
 * `meshlet proxy --validate` messages (issue 15 bug 9): warnings are printed with the errors,
 * "configuration OK" is the last thing printed (after the warnings), a TypedStruct error names
 * its inner type URL without a spurious "value: is required", and the tls_inspector warning says
 * the inspector was added. Run in-process through the command, output captured in write order.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runProxy } from '../../proxy/cli/proxy';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meshlet-validate-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** Every write to stdout and stderr, in order, tagged with its stream. */
function capture(): { stream: 'out' | 'err'; text: string }[] {
  const all: { stream: 'out' | 'err'; text: string }[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
    all.push({ stream: 'out', text: String(s) });
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
    all.push({ stream: 'err', text: String(s) });
    return true;
  });
  return all;
}

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

function bootstrap(extraFilters: unknown[]): Record<string, unknown> {
  return {
    static_resources: {
      listeners: [
        {
          name: 'l1',
          address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
          filter_chains: [
            {
              filter_chain_match: { server_names: ['a.example'] },
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': HCM,
                    stat_prefix: 'x',
                    bogus_field: 1,
                    route_config: {
                      virtual_hosts: [{ name: 'a', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'c' } }] }],
                    },
                    http_filters: [...extraFilters, { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } }],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: [
        {
          name: 'c',
          load_assignment: {
            cluster_name: 'c',
            endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 1 } } } }] }],
          },
        },
      ],
    },
  };
}

async function validate(name: string, raw: unknown): Promise<{ code: number; writes: { stream: 'out' | 'err'; text: string }[] }> {
  const file = join(dir, name);
  await writeFile(file, JSON.stringify(raw));
  const writes = capture();
  const code = await runProxy(['--bootstrap', file, '--validate']);
  vi.restoreAllMocks();
  return { code, writes };
}

const INSPECTOR_WARNING =
  'static_resources.listeners[0].filter_chains[0].filter_chain_match: server_names, transport_protocol "tls" and application_protocols need the tls_inspector listener filter: meshlet added it to this listener';
const BOGUS_WARNING = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.bogus_field: not supported by meshlet, ignored';

describe('meshlet proxy --validate messages', () => {
  it('a valid bootstrap with warnings: the warnings, then "configuration OK" last', async () => {
    const { code, writes } = await validate('ok.json', bootstrap([]));
    expect(code).toBe(0);
    const text = writes.map((w) => w.text).join('');
    const lines = text.trimEnd().split('\n');
    expect(lines.at(-1)).toBe(`configuration '${join(dir, 'ok.json')}' OK`);
    expect(writes.at(-1)!.stream).toBe('out');
    expect(lines).toContain(`  ${INSPECTOR_WARNING}`);
    expect(lines).toContain(`  ${BOGUS_WARNING}`);
    expect(lines.indexOf(`  ${BOGUS_WARNING}`)).toBeLessThan(lines.length - 1);
  });

  it('an invalid bootstrap: the errors and the warnings both; a TypedStruct error names its inner type only', async () => {
    const typedStruct = {
      name: 'istio.stats',
      typed_config: { '@type': 'type.googleapis.com/udpa.type.v1.TypedStruct', type_url: 'type.googleapis.com/example.filters.Unknown' },
    };
    const { code, writes } = await validate('bad.json', bootstrap([typedStruct]));
    expect(code).toBe(1);
    expect(writes.every((w) => w.stream === 'err')).toBe(true);
    const lines = writes.map((w) => w.text).join('').trimEnd().split('\n');
    const f = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config';
    expect(lines[0]).toBe(`meshlet proxy: invalid bootstrap ${join(dir, 'bad.json')}: 1 error`);
    expect(lines[1]).toBe(`  ${f}.type_url: TypedStruct of "type.googleapis.com/example.filters.Unknown" is not supported by meshlet (only meshlet.filters.TypeScript, stats.PluginConfig, io.istio.http.peer_metadata.Config)`);
    expect(lines.some((l) => l.includes(`${f}.value`))).toBe(false);
    expect(lines).toContain('2 warnings:');
    expect(lines).toContain(`  ${INSPECTOR_WARNING}`);
    expect(lines).toContain(`  ${BOGUS_WARNING}`);
  });

  it("an empty TypedStruct of meshlet's own filter reports the inner type's required fields, not value", async () => {
    const typedStruct = {
      name: 'meshlet.ts',
      typed_config: { '@type': 'type.googleapis.com/xds.type.v3.TypedStruct', type_url: 'type.googleapis.com/meshlet.filters.TypeScript' },
    };
    const { code, writes } = await validate('empty.json', bootstrap([typedStruct]));
    expect(code).toBe(1);
    const lines = writes.map((w) => w.text).join('').trimEnd().split('\n');
    const f = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config';
    expect(lines.some((l) => l.startsWith(`  ${f}.value: is required`))).toBe(false);
    expect(lines.some((l) => l.startsWith(`  ${f}.value.`))).toBe(true);
  });
});
