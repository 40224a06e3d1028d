/**
 * The Wasm form of Istio's built-in extensions: older istiod writes `istio.stats` and
 * `istio.metadata_exchange` as `envoy.extensions.filters.{http,network}.wasm.v3.Wasm` plugins
 * (the null VM, or Istio's compiled stats module) whose plugin `root_id` names the extension:
 * `stats_inbound` / `stats_outbound` for stats, `metadata_exchange` for the peer metadata
 * exchange. meshlet runs no Wasm: those plugins are mapped onto the same native implementations,
 * and any other module is rejected with the reason.
 *
 * The plugin's `configuration` is either a StringValue holding JSON (what istiod writes) or a
 * typed message; both come back as a Reader over the same fields the native filter reads.
 */
import { Issues, Reader } from '../../../common/reader';

export type IstioWasmPlugin =
  | { readonly kind: 'stats'; readonly config: Reader }
  | { readonly kind: 'metadata_exchange'; readonly config: Reader };

const STATS_ROOTS = new Set(['stats_inbound', 'stats_outbound']);
const STRING_VALUE = 'google.protobuf.StringValue';

/** The plugin's configuration as a Reader over its fields ({} when absent). */
function configurationReader(p: Reader): Reader {
  const c = p.obj('configuration');
  if (!c) return new Reader({}, p.sub('configuration'), p.issues);
  const any = c.asAny();
  if (!any) return new Reader({}, c.path, c.issues);
  if (any.type !== STRING_VALUE) {
    // A typed configuration (e.g. the TCP MetadataExchange message): its fields as they are.
    return c;
  }
  const text = c.str('value', '');
  c.done();
  if (text.trim() === '') return new Reader({}, c.sub('value'), c.issues);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    c.error('value', `Wasm plugin configuration is not JSON: ${(err as Error).message}`);
    return new Reader({}, c.sub('value'), new Issues());
  }
  return Reader.of(parsed, c.sub('value'), c.issues) ?? new Reader({}, c.sub('value'), new Issues());
}

/**
 * Decode a Wasm filter's typed_config: which Istio extension it is, with its configuration, or
 * undefined after reporting why it cannot run.
 */
export function decodeIstioWasm(r: Reader, what: string): IstioWasmPlugin | undefined {
  const p = r.obj('config');
  r.done();
  if (!p) {
    r.error('config', 'is required');
    return undefined;
  }
  const rootId = p.str('root_id', '');
  p.ignore('name', 'fail_open', 'failure_policy', 'capability_restriction_config', 'vm_config', 'vm');
  const vm = p.obj('vm_config');
  const code = vm?.obj('code')?.obj('local');
  const inline = code?.str('inline_string', '') ?? '';
  const filename = code?.str('filename', '') ?? '';
  let kind: IstioWasmPlugin['kind'] | undefined;
  if (STATS_ROOTS.has(rootId) || inline === 'envoy.wasm.stats') kind = 'stats';
  else if (rootId === 'metadata_exchange' || inline === 'envoy.wasm.metadata_exchange') kind = 'metadata_exchange';
  if (!kind) {
    const module = inline || filename || (vm?.has('code') ? 'remote code' : 'no code');
    p.issues.error(
      p.sub('root_id'),
      `Wasm ${what} ${JSON.stringify(rootId)} (${module}) is not supported: meshlet runs no Wasm; only Istio's stats (root_id stats_inbound/stats_outbound) and metadata_exchange plugins are accepted, mapped onto native filters`,
    );
    return undefined;
  }
  const config = configurationReader(p);
  p.done();
  return { kind, config };
}
