/**
 * filter_chain_matcher (the unified matcher API over network inputs) and the listener fixes
 * istiod depends on: listener_filters_timeout 0s = no timeout, repeated chain names without a
 * matcher. Decoded by the real listener decoder; the socket tests run the real Listener.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeListener } from '../../proxy/config/envoy';
import type { FilterChainConfig, ListenerConfig } from '../../proxy/config/types';
import { evaluateChainMatcher } from '../../proxy/listeners/filter-chain-matcher';
import { type BuiltChain, Listener } from '../../proxy/listeners/listener';
import { ctx, TCP_PROXY_TYPE, TYPE_PREFIX } from '../config/helpers';

const NET = `${TYPE_PREFIX}envoy.extensions.matching.common_inputs.network.v3.`;
const input = (name: string, t: string) => ({ name, typed_config: { '@type': `${NET}${t}` } });
const toChain = (name: string) => ({
  action: { name, typed_config: { '@type': `${TYPE_PREFIX}google.protobuf.StringValue`, value: name } },
});
const tcp = (name: string) => ({
  name,
  filters: [{ name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: name, cluster: name } }],
});
const HTTP_INSPECTOR = {
  name: 'envoy.filters.listener.http_inspector',
  typed_config: { '@type': `${TYPE_PREFIX}envoy.extensions.filters.listener.http_inspector.v3.HttpInspector` },
};

/** Istio's shape (pilot's match package): port map → application protocol map, IP matcher. */
function istioMatcher(withNoMatch: boolean) {
  return {
    matcher_tree: {
      input: input('port', 'DestinationPortInput'),
      exact_match_map: {
        map: {
          '9080': {
            matcher: {
              matcher_tree: {
                input: input('application-protocol', 'ApplicationProtocolInput'),
                exact_match_map: { map: { "'h2c'": toChain('http'), "'http/1.1'": toChain('http') } },
              },
              on_no_match: toChain('tcp'),
            },
          },
          '7000': {
            matcher: {
              matcher_tree: {
                input: input('ip', 'DestinationIPInput'),
                custom_match: {
                  name: 'ip',
                  typed_config: {
                    '@type': `${TYPE_PREFIX}xds.type.matcher.v3.IPMatcher`,
                    range_matchers: [
                      { ranges: [{ address_prefix: '127.0.0.0', prefix_len: 8 }], on_match: toChain('loopback') },
                      { ranges: [{ address_prefix: '127.0.0.9', prefix_len: 32 }], on_match: toChain('missing') },
                    ],
                  },
                },
              },
            },
          },
        },
      },
    },
    ...(withNoMatch ? { on_no_match: toChain('tcp') } : {}),
  };
}

function listenerJson(extra: Record<string, unknown>) {
  return {
    name: 'l',
    address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
    filter_chains: [tcp('http'), tcp('tcp'), tcp('loopback')],
    ...extra,
  };
}

const base = { destinationIp: '10.0.0.1', transportProtocol: 'raw_buffer', sourceIp: '10.0.0.2', sourcePort: 4000 };

describe('filter_chain_matcher: decoding', () => {
  it('decodes the tree istiod writes and selects chains by name as Envoy does', () => {
    const { value, errors, warnings } = decodeListener(listenerJson({ filter_chain_matcher: istioMatcher(true) }), ctx());
    expect(errors).toEqual([]);
    expect(warnings).toEqual([
      {
        path: 'filter_chain_matcher.matcher_tree.exact_match_map.map.7000.matcher.matcher_tree.custom_match.typed_config.range_matchers[1].on_match.action.typed_config.value',
        message: 'no filter chain is named "missing": connections matched here use the default filter chain or are closed',
      },
    ]);
    const m = value!.filterChainMatcher!;
    expect(evaluateChainMatcher(m, { ...base, destinationPort: 9080, applicationProtocols: ['h2c'] })).toBe('http');
    expect(evaluateChainMatcher(m, { ...base, destinationPort: 9080, applicationProtocols: ['http/1.1'] })).toBe('http');
    // No ALPN (opaque bytes): the nested matcher's on_no_match.
    expect(evaluateChainMatcher(m, { ...base, destinationPort: 9080 })).toBe('tcp');
    // Most specific IP range first; its action names no chain (the listener then fails the match).
    expect(evaluateChainMatcher(m, { ...base, destinationPort: 7000, destinationIp: '127.0.0.9' })).toBe('missing');
    expect(evaluateChainMatcher(m, { ...base, destinationPort: 7000, destinationIp: '127.0.0.5' })).toBe('loopback');
    // The nested IP matcher fails for 10.0.0.1 and has no on_no_match: the top-level one applies.
    expect(evaluateChainMatcher(m, { ...base, destinationPort: 7000 })).toBe('tcp');
    expect(evaluateChainMatcher(m, { ...base, destinationPort: 1 })).toBe('tcp');
  });

  it('requires unique chain names only with a matcher; repeated names are fine without one', () => {
    const dup = { filter_chains: [tcp('a'), { ...tcp('a'), filter_chain_match: { destination_port: 1 } }, { filters: tcp('x').filters, filter_chain_match: { destination_port: 2 } }] };
    expect(decodeListener(listenerJson(dup), ctx()).errors).toEqual([]);
    const { errors } = decodeListener(listenerJson({ ...dup, filter_chain_matcher: { on_no_match: toChain('a') } }), ctx());
    expect(errors).toEqual([
      {
        path: 'filter_chains[1].name',
        message: 'filter chain name "a" is used by another filter chain (names must be unique with filter_chain_matcher)',
      },
      { path: 'filter_chains[2].name', message: 'filter chains must be named when filter_chain_matcher is set' },
    ]);
  });

  it('rejects inputs and actions it cannot honour, with their paths', () => {
    const bad = {
      matcher_list: {
        matchers: [
          {
            predicate: {
              single_predicate: {
                input: { name: 'fs', typed_config: { '@type': `${NET}FilterStateInput`, key: 'io.istio.peer_principal' } },
                value_match: { exact: 'x' },
              },
            },
            on_match: { action: { name: 'a', typed_config: { '@type': `${TYPE_PREFIX}google.protobuf.UInt32Value`, value: 1 } } },
          },
        ],
      },
    };
    const { errors } = decodeListener(listenerJson({ filter_chain_matcher: bad }), ctx());
    expect(errors.map((e) => e.path)).toEqual([
      'filter_chain_matcher.matcher_list.matchers[0].predicate.single_predicate.input.typed_config.@type',
      'filter_chain_matcher.matcher_list.matchers[0].on_match.action.typed_config.@type',
    ]);
    expect(errors[0]!.message).toMatch(/FilterStateInput: filter state inputs are set by ambient\/HBONE listeners/);
    expect(errors[1]!.message).toMatch(/must be a google.protobuf.StringValue naming a filter chain, got google.protobuf.UInt32Value/);
  });

  it('evaluates predicates (and/or/not, value_match, CIDR custom_match) in list order', () => {
    const list = {
      matcher_list: {
        matchers: [
          {
            predicate: {
              and_matcher: {
                predicate: [
                  { single_predicate: { input: input('sni', 'ServerNameInput'), value_match: { suffix: '.svc.cluster.local' } } },
                  { not_matcher: { single_predicate: { input: input('t', 'TransportProtocolInput'), value_match: { exact: 'raw_buffer' } } } },
                ],
              },
            },
            on_match: toChain('http'),
          },
          {
            predicate: {
              single_predicate: {
                input: input('src', 'SourceIPInput'),
                custom_match: {
                  name: 'ip',
                  typed_config: {
                    '@type': `${TYPE_PREFIX}envoy.extensions.matching.input_matchers.ip.v3.Ip`,
                    cidr_ranges: [{ address_prefix: '10.0.0.0', prefix_len: 24 }],
                    stat_prefix: 'src',
                  },
                },
              },
            },
            on_match: toChain('loopback'),
          },
        ],
      },
    };
    const { value, errors } = decodeListener(listenerJson({ filter_chain_matcher: list }), ctx());
    expect(errors).toEqual([]);
    const m = value!.filterChainMatcher!;
    expect(evaluateChainMatcher(m, { ...base, destinationPort: 1, transportProtocol: 'tls', serverName: 'a.ns.svc.cluster.local' })).toBe('http');
    expect(evaluateChainMatcher(m, { ...base, destinationPort: 1, serverName: 'a.ns.svc.cluster.local' })).toBe('loopback');
    expect(evaluateChainMatcher(m, { ...base, destinationPort: 1, sourceIp: '10.0.1.2' })).toBeUndefined();
  });
});

describe('listener: matcher, no-match close and listener_filters_timeout 0s on real sockets', () => {
  const open: Listener[] = [];
  afterEach(async () => {
    for (const l of open.splice(0)) await l.close();
  });

  async function start(extra: Record<string, unknown>): Promise<Listener> {
    const { value, errors } = decodeListener(listenerJson({ listener_filters: [HTTP_INSPECTOR], ...extra }), ctx());
    expect(errors).toEqual([]);
    const build = (c: FilterChainConfig): BuiltChain => ({
      config: c,
      filters: [],
      handler: { activeConnections: 0, handle: (s) => s.end(`chain=${c.name}`) },
    });
    const l = new Listener(value as ListenerConfig, build, undefined, undefined);
    open.push(l);
    await l.listen();
    return l;
  }

  function exchange(port: number, send: string | undefined, delayMs = 0): Promise<string> {
    return new Promise((resolve, reject) => {
      const c = net.connect(port, '127.0.0.1');
      let got = '';
      const timer = setTimeout(() => reject(new Error(`no answer; got ${JSON.stringify(got)}`)), 5_000);
      c.on('data', (d) => (got += d.toString()));
      c.on('error', () => {});
      c.on('close', () => {
        clearTimeout(timer);
        resolve(got);
      });
      if (send !== undefined) setTimeout(() => c.write(send), delayMs);
    });
  }

  it('0s waits for the first bytes (HTTP sent late still reaches the HTTP chain), as Envoy', async () => {
    const l = await start({
      listener_filters_timeout: '0s',
      continue_on_listener_filters_timeout: true,
      filter_chains: [{ ...tcp('http'), filter_chain_match: { application_protocols: ['http/1.1', 'h2c'] } }],
      default_filter_chain: tcp('dflt'),
    });
    expect(l.config.listenerFiltersTimeoutMs).toBe(0);
    expect(await exchange(l.boundPort, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n', 80)).toBe('chain=http');
    expect(await exchange(l.boundPort, 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 30)).toBe('chain=http');
    expect(await exchange(l.boundPort, 'opaque bytes')).toBe('chain=dflt');
  });

  it('selects by the matcher; a failed match without on_no_match or default chain closes', async () => {
    const l = await start({ filter_chain_matcher: istioMatcher(false) });
    const port = l.boundPort;
    // Destination port is the bound port here: point the tree at it.
    const tree = istioMatcher(false);
    const map = tree.matcher_tree.exact_match_map.map as Record<string, unknown>;
    map[String(port)] = map['9080'];
    await l.close();
    open.splice(0);
    const { value } = decodeListener(
      { ...listenerJson({ listener_filters: [HTTP_INSPECTOR], filter_chain_matcher: tree }), address: { socket_address: { address: '127.0.0.1', port_value: port } } },
      ctx(),
    );
    const build = (c: FilterChainConfig): BuiltChain => ({
      config: c,
      filters: [],
      handler: { activeConnections: 0, handle: (s) => s.end(`chain=${c.name}`) },
    });
    const l2 = new Listener(value as ListenerConfig, build, undefined, undefined);
    open.push(l2);
    await l2.listen();
    expect(await exchange(port, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n')).toBe('chain=http');
    expect(await exchange(port, 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')).toBe('chain=http');
    expect(await exchange(port, '\x00\x01opaque')).toBe('chain=tcp');

    // A listener whose matcher matches nothing here: closed, counted.
    const none = await start({ filter_chain_matcher: istioMatcher(false) });
    expect(await exchange(none.boundPort, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n')).toBe('');
    expect(none.stats.noFilterChainMatch).toBe(1);
  });
});
