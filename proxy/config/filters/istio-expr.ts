/**
 * The attribute expressions istio.stats accepts for metric dimensions (Istio evaluates them as
 * CEL). meshlet compiles the forms people write for dimensions — string literals, request and
 * response attributes, request headers, the cluster and route, node metadata — into a small
 * closed set evaluated per finished stream (proxy/telemetry/istio-overrides.ts). Anything else is
 * kept as `unsupported` and evaluates to "unknown", which is what Istio reports when an
 * expression fails; the decoder warns about it at start-up with the expression and its path.
 */

export type IstioExpr =
  | { readonly kind: 'literal'; readonly value: string }
  | {
      readonly kind: 'attr';
      readonly name:
        | 'request.host'
        | 'request.method'
        | 'request.protocol'
        | 'request.useragent'
        | 'request.id'
        | 'response.code'
        | 'xds.cluster_name'
        | 'xds.route_name'
        | 'destination.port'
        | 'connection.mtls';
    }
  | { readonly kind: 'header'; readonly name: string }
  | { readonly kind: 'node_metadata'; readonly key: string }
  | { readonly kind: 'unsupported'; readonly text: string };

const ATTRS = new Set([
  'request.host',
  'request.method',
  'request.protocol',
  'request.useragent',
  'request.id',
  'response.code',
  'xds.cluster_name',
  'xds.route_name',
  'destination.port',
  'connection.mtls',
]);

/** `'x'` / `"x"` (no escapes inside). */
const LITERAL = /^(?:'([^'\\]*)'|"([^"\\]*)")$/;
/** `request.headers['x-name']` (either quote). */
const HEADER = /^request\.headers\[(?:'([^'\\]+)'|"([^"\\]+)")\]$/;
/** `node.metadata['KEY']`. */
const NODE_MD = /^node\.metadata\[(?:'([^'\\]+)'|"([^"\\]+)")\]$/;
/** `string(destination.port)` / `string(response.code)`: the same text. */
const STRING_CALL = /^string\((.*)\)$/;

/** Compile one dimension expression. */
export function compileIstioExpr(text: string): IstioExpr {
  let t = text.trim();
  const call = STRING_CALL.exec(t);
  if (call) t = call[1]!.trim();
  let m = LITERAL.exec(t);
  if (m) return { kind: 'literal', value: m[1] ?? m[2] ?? '' };
  m = HEADER.exec(t);
  if (m) return { kind: 'header', name: (m[1] ?? m[2]!).toLowerCase() };
  m = NODE_MD.exec(t);
  if (m) return { kind: 'node_metadata', key: m[1] ?? m[2]! };
  if (ATTRS.has(t)) return { kind: 'attr', name: t as Extract<IstioExpr, { kind: 'attr' }>['name'] };
  return { kind: 'unsupported', text };
}

export const SUPPORTED_EXPRESSIONS =
  "string literals, request.host, request.method, request.protocol, request.useragent, request.id, request.headers['name'], response.code, xds.cluster_name, xds.route_name, destination.port, connection.mtls, node.metadata['KEY']";
