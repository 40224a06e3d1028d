/**
 * The HTTP filter chain in the connection manager: decoder order, reverse encoder order,
 * StopIteration / continueDecoding, local replies from filters, per-route config, onDestroy, and
 * the chain resolution rules (router last, optional filters, unknown types).
 */
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { Issues, Reader } from '../../common/reader';
import type { HttpFilterConfig } from '../../proxy/config/types';
import { ConfigError } from '../../common/errors';
import { resolveFilterChain } from '../../proxy/http/filter-chain';
import {
  FilterStatus,
  type HttpFilter,
  type HttpFilterCallbacks,
  type HttpFilterFactory,
  HttpFilterRegistry,
  type TerminalHttpFilterFactory,
} from '../../proxy/http/filter';
import { ROUTER_TYPE_NAME, type RouterConfig, routerFilterFactory } from '../../proxy/http/filters/router-factory';
import { getHeader, setHeader } from '../../proxy/http/headers';
import { closeAll, startHttpEcho } from '../support/upstreams';
import {
  action,
  hcmConfig,
  prefix,
  route,
  routeConfig,
  startProxy,
  staticCluster,
  stopAll,
  vhost,
} from './hcm-support';

const agents: Agent[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.close()));
  await stopAll();
  await closeAll();
});

async function call(
  port: number,
  path: string,
  opts: { headers?: Record<string, string>; method?: string; body?: string } = {},
) {
  const a = new Agent();
  agents.push(a);
  const res = await request(`http://127.0.0.1:${port}${path}`, {
    method: (opts.method ?? 'GET') as 'GET',
    headers: opts.headers,
    body: opts.body,
    dispatcher: a,
  });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

const counters = { created: 0, destroyed: 0 };

/** Adds x-tag-<name> to requests and appends its name to x-order on responses. */
const tagFactory: HttpFilterFactory<{ name: string }> = {
  typeName: 'test.Tag',
  decode: (r: Reader) => ({ name: r.str('name', 'tag') }),
  create(config, cb: HttpFilterCallbacks): HttpFilter {
    counters.created++;
    return {
      decodeHeaders(head) {
        const per = cb.perRouteConfig() as { value?: string } | undefined;
        head.headers.push(`x-tag-${config.name}`, per?.value ?? 'on');
        return FilterStatus.Continue;
      },
      encodeHeaders(head) {
        const prev = getHeader(head.headers, 'x-order');
        setHeader(head.headers, 'x-order', prev ? `${prev},${config.name}` : config.name);
        return FilterStatus.Continue;
      },
      onDestroy() {
        counters.destroyed++;
      },
    };
  },
};

/** Holds the request headers for a while (an async check), then continues. */
const asyncFactory: HttpFilterFactory<undefined> = {
  typeName: 'test.Async',
  decode: () => undefined,
  create(_c, cb): HttpFilter {
    let timer: NodeJS.Timeout | undefined;
    return {
      decodeHeaders(head) {
        timer = setTimeout(() => {
          head.headers.push('x-checked', 'yes');
          cb.continueDecoding();
        }, 30);
        return FilterStatus.StopIteration;
      },
      onDestroy() {
        clearTimeout(timer);
      },
    };
  },
};

/** Denies requests carrying x-deny with a local reply. */
const denyFactory: HttpFilterFactory<undefined> = {
  typeName: 'test.Deny',
  decode: () => undefined,
  create(_c, cb): HttpFilter {
    return {
      decodeHeaders(head) {
        if (getHeader(head.headers, 'x-deny') !== undefined) {
          cb.sendLocalReply(403, 'RBAC: access denied', undefined, 'RBAC', 'rbac_access_denied');
          return FilterStatus.StopIteration;
        }
        return FilterStatus.Continue;
      },
    };
  },
};

/** Holds the response headers for a while, then continues; body chunks queue up meanwhile. */
const holdResponseFactory: HttpFilterFactory<undefined> = {
  typeName: 'test.HoldResponse',
  decode: () => undefined,
  create(_c, cb): HttpFilter {
    let timer: NodeJS.Timeout | undefined;
    return {
      encodeHeaders(head) {
        if (head.status >= 500) {
          cb.sendLocalReply(502, 'replaced by filter', undefined, undefined, 'filter_replaced');
          return FilterStatus.StopIteration;
        }
        timer = setTimeout(() => {
          head.headers.push('x-held', 'yes');
          cb.continueEncoding();
        }, 30);
        return FilterStatus.StopIteration;
      },
      onDestroy() {
        clearTimeout(timer);
      },
    };
  },
};

const upper = (b: Buffer): Buffer => Buffer.from(b.toString('latin1').toUpperCase(), 'latin1');

/**
 * A body-transforming filter (the compressor's shape): takes each chunk with
 * StopIterationNoBuffer and injects its upper-cased form later (on the next turn).
 */
const upperFactory: HttpFilterFactory<undefined> = {
  typeName: 'test.Upper',
  decode: () => undefined,
  create(_c, cb): HttpFilter {
    const f: HttpFilter = {
      decodeData(chunk, end) {
        setImmediate(() => cb.injectDecodedData(f, upper(chunk), end));
        return FilterStatus.StopIterationNoBuffer;
      },
      encodeData(chunk, end) {
        setImmediate(() => cb.injectEncodedData(f, upper(chunk), end));
        return FilterStatus.StopIterationNoBuffer;
      },
    };
    return f;
  },
};

function registry(): HttpFilterRegistry {
  return new HttpFilterRegistry()
    .register(upperFactory)
    .register(routerFilterFactory)
    .register(tagFactory)
    .register(asyncFactory)
    .register(denyFactory)
    .register(holdResponseFactory);
}

function filter(
  name: string,
  typeName: string,
  config: unknown = undefined,
  over: Partial<HttpFilterConfig> = {},
): HttpFilterConfig {
  return { name, typeName, config, isOptional: false, disabled: false, ...over };
}

const ROUTER = filter('envoy.filters.http.router', ROUTER_TYPE_NAME);

describe('filter chain in the connection manager', () => {
  it('creates one object per stream, the router, for a router-only chain (cost contract)', async () => {
    const up = await startHttpEcho('a');
    let created = 0;
    const countingRouter: TerminalHttpFilterFactory<RouterConfig> = {
      ...routerFilterFactory,
      create: (config, callbacks) => {
        created++;
        return routerFilterFactory.create(config, callbacks);
      },
    };
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
      registry: new HttpFilterRegistry().register(countingRouter),
    });
    for (let i = 0; i < 3; i++) expect((await call(proxy.port, '/')).status).toBe(200);
    expect(created).toBe(3);
  });

  it('runs decoders in order and encoders in reverse, with per-route config', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([
          route(prefix('/per'), action('a'), { typedPerFilterConfig: { second: { value: 'per-route' } } }),
          route(prefix('/'), action('a')),
        ]),
      ]),
      clusters: [staticCluster('a', [{ port: up.port }])],
      registry: registry(),
      hcm: {
        httpFilters: [
          filter('first', 'test.Tag', { name: 'first' }),
          filter('second', 'test.Tag', { name: 'second' }),
          ROUTER,
        ],
      },
    });
    counters.created = 0;
    counters.destroyed = 0;
    const res = await call(proxy.port, '/');
    expect(res.status).toBe(200);
    expect(res.headers['x-order']).toBe('second,first');
    const seen = up.requests[0]!.headers;
    expect(seen['x-tag-first']).toBe('on');
    expect(seen['x-tag-second']).toBe('on');
    await call(proxy.port, '/per');
    expect(up.requests[1]!.headers['x-tag-second']).toBe('per-route');
    expect(up.requests[1]!.headers['x-tag-first']).toBe('on');
    await proxy.waitCompleted(2);
    expect(counters.created).toBe(4);
    expect(counters.destroyed).toBe(4);
  });

  it('holds the request while a filter stops iteration, then continues with the body intact', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
      registry: registry(),
      hcm: { httpFilters: [filter('async', 'test.Async'), filter('tag', 'test.Tag', { name: 'after' }), ROUTER] },
    });
    // Larger than the hold limit: reading pauses while the filter holds, then resumes.
    const body = 'x'.repeat(2 * 1024 * 1024);
    const res = await call(proxy.port, '/p', { method: 'POST', body });
    expect(res.status).toBe(200);
    const seen = up.requests[0]!;
    expect(seen.headers['x-checked']).toBe('yes');
    expect(seen.headers['x-tag-after']).toBe('on');
    expect(seen.body.length).toBe(body.length);
    expect(seen.body === body).toBe(true);
  });

  it('lets a filter end the stream with a local reply; nothing is forwarded', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
      registry: registry(),
      hcm: { httpFilters: [filter('tag', 'test.Tag', { name: 't' }), filter('deny', 'test.Deny'), ROUTER] },
    });
    const res = await call(proxy.port, '/', { headers: { 'x-deny': '1' } });
    expect(res.status).toBe(403);
    expect(res.text).toBe('RBAC: access denied');
    // Encoder filters still see the local reply.
    expect(res.headers['x-order']).toBe('t');
    expect(up.requests).toHaveLength(0);
    const [info] = await proxy.waitCompleted(1);
    expect(info?.responseFlags()).toBe('RBAC');
    expect(info?.responseCodeDetails).toBe('rbac_access_denied');
  });
});

describe('encoder filters', () => {
  it('hold the response while stopped and release headers and body in order', async () => {
    const big = 'y'.repeat(200_000);
    const up = await startHttpEcho('a', (_q, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write(big.slice(0, 100_000));
      setTimeout(() => res.end(big.slice(100_000)), 5);
      return true;
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
      registry: registry(),
      hcm: { httpFilters: [filter('tag', 'test.Tag', { name: 'outer' }), filter('hold', 'test.HoldResponse'), ROUTER] },
    });
    const res = await call(proxy.port, '/');
    expect(res.status).toBe(200);
    expect(res.headers['x-held']).toBe('yes');
    // The outer filter (first in the chain) encodes last, after the held headers were released.
    expect(res.headers['x-order']).toBe('outer');
    expect(res.text).toBe(big);
  });

  it('may replace an upstream response with a local reply before headers are written', async () => {
    const up = await startHttpEcho('a', (_q, res) => {
      res.writeHead(500, { 'content-length': '4' });
      res.end('oops');
      return true;
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
      registry: registry(),
      hcm: { httpFilters: [filter('hold', 'test.HoldResponse'), ROUTER] },
    });
    const res = await call(proxy.port, '/');
    expect(res.status).toBe(502);
    expect(res.text).toBe('replaced by filter');
    const [info] = await proxy.waitCompleted(1);
    expect(info?.responseCodeDetails).toBe('filter_replaced');
  });
});

describe('filter chain resolution', () => {
  it('accepts a router-only chain and decodes the router config', () => {
    const issues = new Issues();
    const r = new Reader({ suppress_envoy_headers: true, start_child_span: true }, 'typed_config', issues);
    const cfg = routerFilterFactory.decode(r);
    expect(issues.errors).toEqual([]);
    expect(cfg.suppressEnvoyHeaders).toBe(true);
    expect(cfg.startChildSpan).toBe(true);
    expect(cfg.dynamicStats).toBe(true);
    const { filters, terminal } = resolveFilterChain(hcmConfig({ httpFilters: [{ ...ROUTER, config: cfg }] }), registry());
    expect(filters).toHaveLength(0);
    expect((terminal.config as RouterConfig).suppressEnvoyHeaders).toBe(true);
  });

  it('warns about unknown router fields', () => {
    const issues = new Issues();
    routerFilterFactory.decode(new Reader({ upstream_log: [] }, 'typed_config', issues));
    expect(issues.warnings.map((w) => w.path)).toEqual(['typed_config.upstream_log']);
  });

  it('rejects unknown filters unless optional, and a router that is not last', () => {
    expect(() =>
      resolveFilterChain(hcmConfig({ httpFilters: [filter('x', 'nope.Filter'), ROUTER] }), registry()),
    ).toThrow(ConfigError);
    const ok = resolveFilterChain(
      hcmConfig({ httpFilters: [filter('x', 'nope.Filter', undefined, { isOptional: true }), ROUTER] }),
      registry(),
    );
    expect(ok.filters).toHaveLength(0);
    const disabled = resolveFilterChain(
      hcmConfig({ httpFilters: [filter('t', 'test.Tag', { name: 't' }, { disabled: true }), ROUTER] }),
      registry(),
    );
    expect(disabled.filters).toHaveLength(0);
    expect(() =>
      resolveFilterChain(hcmConfig({ httpFilters: [ROUTER, filter('t', 'test.Tag', { name: 't' })] }), registry()),
    ).toThrow(/router must be the last/);
    expect(() =>
      resolveFilterChain(hcmConfig({ httpFilters: [filter('t', 'test.Tag', { name: 't' })] }), registry()),
    ).toThrow(/must end with/);
  });
});

describe('transforming filters (StopIterationNoBuffer + inject)', () => {
  it('request: injected bytes wait behind a later filter that stopped, then reach the upstream in order', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
      registry: registry(),
      hcm: { httpFilters: [filter('upper', 'test.Upper'), filter('async', 'test.Async'), ROUTER] },
    });
    const body = Array.from({ length: 20_000 }, (_v, i) => `chunk${i};`).join('');
    const res = await call(proxy.port, '/p', { method: 'POST', body });
    expect(res.status).toBe(200);
    const seen = up.requests[0]!;
    expect(seen.headers['x-checked']).toBe('yes');
    expect(seen.body).toBe(body.toUpperCase());
  });

  it('response: injected bytes wait behind an encoder filter that stopped at the headers', async () => {
    const big = Array.from({ length: 30_000 }, (_v, i) => `part${i},`).join('');
    const up = await startHttpEcho('a', (_q, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write(big.slice(0, 100_000));
      setTimeout(() => res.end(big.slice(100_000)), 5);
      return true;
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
      registry: registry(),
      // Encoders run in reverse: upper (index 1) injects towards hold (index 0), stopped at the headers.
      hcm: { httpFilters: [filter('hold', 'test.HoldResponse'), filter('upper', 'test.Upper'), ROUTER] },
    });
    const res = await call(proxy.port, '/');
    expect(res.status).toBe(200);
    expect(res.headers['x-held']).toBe('yes');
    expect(res.text).toBe(big.toUpperCase());
  });
});
