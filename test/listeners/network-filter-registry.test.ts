/**
 * Network filters are built through their registered factories (listeners/network-filter.ts):
 * every decoded kind has a built-in factory, filters are added in config order, wrappers end up
 * around the terminal handler with the first listed outermost, and an unregistered kind is an
 * error rather than a silently dropped filter.
 */
import { describe, expect, it } from 'vitest';
import type { NetworkFilterConfig } from '../../proxy/config/types';
import type { ConnectionHandler } from '../../proxy/listeners/types';
import {
  buildNetworkFilters,
  type NetworkFilterContext,
  NetworkFilterRegistry,
} from '../../proxy/listeners/network-filter';
import { createRegistries } from '../../proxy/registry';

function handler(name: string, inner?: ConnectionHandler): ConnectionHandler & { name: string; inner?: ConnectionHandler } {
  return { name, inner, activeConnections: 0, handle: () => {} };
}

const ctx = {} as NetworkFilterContext;

describe('the network filter registry', () => {
  it('has a built-in factory for every network filter kind the decoders produce', () => {
    expect(createRegistries().networkFilters.kinds().sort()).toEqual(
      ['connection_limit', 'ext_authz', 'http_connection_manager', 'istio_authn', 'istio_stats', 'metadata_exchange', 'rbac', 'tcp_proxy'],
    );
  });

  it('builds in config order and wraps the terminal handler, first wrapper outermost', () => {
    const order: string[] = [];
    const reg = new NetworkFilterRegistry()
      .register({
        kind: 'ext_authz',
        build: (f, parts) => {
          order.push(f.name);
          parts.wrappers.push((inner) => handler(f.name, inner));
        },
      })
      .register({
        kind: 'connection_limit',
        build: (f, parts) => {
          order.push(f.name);
          parts.filters.push({ onNewConnection: () => true });
        },
      })
      .register({
        kind: 'tcp_proxy',
        build: (f, parts) => {
          order.push(f.name);
          parts.handler = handler(f.name);
        },
      });
    const filters = [
      { kind: 'ext_authz', name: 'outer' },
      { kind: 'connection_limit', name: 'limit', maxConnections: 1 },
      { kind: 'ext_authz', name: 'inner' },
      { kind: 'tcp_proxy', name: 'terminal' },
    ] as unknown as NetworkFilterConfig[];
    const built = buildNetworkFilters(reg, filters, ctx);
    expect(order).toEqual(['outer', 'limit', 'inner', 'terminal']);
    expect(built.filters).toHaveLength(1);
    const h = built.handler as ReturnType<typeof handler>;
    expect(h.name).toBe('outer');
    expect((h.inner as ReturnType<typeof handler>).name).toBe('inner');
    expect(((h.inner as ReturnType<typeof handler>).inner as ReturnType<typeof handler>).name).toBe('terminal');
  });

  it('refuses an unregistered kind and a second factory for one kind', () => {
    const reg = new NetworkFilterRegistry();
    expect(() => buildNetworkFilters(reg, [{ kind: 'rbac', name: 'r' } as unknown as NetworkFilterConfig], ctx)).toThrow(
      /network filter rbac \(r\) has no registered factory/,
    );
    reg.register({ kind: 'rbac', build: () => {} });
    expect(() => reg.register({ kind: 'rbac', build: () => {} })).toThrow(/registered twice/);
  });
});
