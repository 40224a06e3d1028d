import { describe, expect, it } from 'vitest';
import type { FilterChainConfig, FilterChainMatch } from '../../proxy/config/types';
import { needsInspection, selectFilterChain } from '../../proxy/listeners/filter-chain-match';

function chain(name: string, m: Partial<FilterChainMatch>): FilterChainConfig {
  return {
    name,
    match: { prefixRanges: [], serverNames: [], applicationProtocols: [], sourcePrefixRanges: [], sourcePorts: [], ...m },
    filters: [],
  };
}

const base = { destinationPort: 8080, destinationIp: '10.1.2.3', transportProtocol: 'raw_buffer', sourceIp: '10.9.9.9', sourcePort: 5555 };

describe('filter chain match (Envoy order and specificity)', () => {
  it('prefers a specific destination port over a catch-all', () => {
    const chains = [chain('any', {}), chain('port', { destinationPort: 8080 }), chain('other', { destinationPort: 9090 })];
    expect(selectFilterChain(chains, base)?.name).toBe('port');
    expect(selectFilterChain(chains, { ...base, destinationPort: 7000 })?.name).toBe('any');
  });

  it('uses the longest destination prefix', () => {
    const chains = [
      chain('wide', { prefixRanges: [{ addressPrefix: '10.0.0.0', prefixLen: 8 }] }),
      chain('narrow', { prefixRanges: [{ addressPrefix: '10.1.2.0', prefixLen: 24 }] }),
    ];
    expect(selectFilterChain(chains, base)?.name).toBe('narrow');
    expect(selectFilterChain(chains, { ...base, destinationIp: '10.7.0.1' })?.name).toBe('wide');
    expect(selectFilterChain(chains, { ...base, destinationIp: '192.0.2.1' })).toBeUndefined();
  });

  it('matches server names exactly before wildcards, then transport and ALPN (Istio permissive shape)', () => {
    const chains = [
      chain('tls-wild', { serverNames: ['*.example.com'], transportProtocol: 'tls' }),
      chain('tls-exact', { serverNames: ['api.example.com'], transportProtocol: 'tls' }),
      chain('mtls', { transportProtocol: 'tls', applicationProtocols: ['istio-peer-exchange', 'istio'] }),
      chain('plain-http', { transportProtocol: 'raw_buffer', applicationProtocols: ['http/1.1', 'h2c'] }),
      chain('plain-tcp', { transportProtocol: 'raw_buffer' }),
    ];
    expect(selectFilterChain(chains, { ...base, transportProtocol: 'tls', serverName: 'api.example.com' })?.name).toBe('tls-exact');
    expect(selectFilterChain(chains, { ...base, transportProtocol: 'tls', serverName: 'www.example.com' })?.name).toBe('tls-wild');
    expect(selectFilterChain(chains, { ...base, transportProtocol: 'tls', applicationProtocols: ['istio'] })?.name).toBe('mtls');
    expect(selectFilterChain(chains, { ...base, applicationProtocols: ['http/1.1'] })?.name).toBe('plain-http');
    expect(selectFilterChain(chains, base)?.name).toBe('plain-tcp');
    expect(needsInspection(chains)).toBe(true);
    expect(needsInspection([chain('p', { destinationPort: 1 })])).toBe(false);
  });

  it('matches source prefix and port last', () => {
    const chains = [
      chain('src', { sourcePrefixRanges: [{ addressPrefix: '10.9.0.0', prefixLen: 16 }] }),
      chain('srcport', { sourcePrefixRanges: [{ addressPrefix: '10.9.0.0', prefixLen: 16 }], sourcePorts: [5555] }),
    ];
    expect(selectFilterChain(chains, base)?.name).toBe('srcport');
    expect(selectFilterChain(chains, { ...base, sourcePort: 1 })?.name).toBe('src');
    expect(selectFilterChain(chains, { ...base, sourceIp: '::1' })).toBeUndefined();
  });
});
