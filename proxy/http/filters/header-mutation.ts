/**
 * Transformation with Envoy's own filter, `envoy.extensions.filters.http.header_mutation.v3
 * .HeaderMutation` (and `HeaderMutationPerRoute`): ordered request and response mutations, each
 * an `append` (a HeaderValueOption whose value may use `%FORMAT%` operators — %REQ(x)%,
 * %RESP(x)%, %DOWNSTREAM_REMOTE_ADDRESS%, %UPSTREAM_METADATA(["ns","key"])%, … resolved by
 * proxy/http/headers.ts) or a `remove`. A route's HeaderMutationPerRoute runs in addition to the
 * filter's mutations: by default the route's run first and the filter's last (the least specific
 * wins, Envoy's default); with most_specific_header_mutations_wins the order flips.
 *
 * Leans on the shared formatter: no second template language, no allocation when a value has no
 * `%`.
 */
import { decodeHeaderValueOption } from '../../config/envoy/headers';
import { headerName } from '../../config/envoy/matchers';
import type { Reader } from '../../../common/reader';
import type { HeaderValueOption } from '../../config/types';
import type { RequestHead, ResponseHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { applyHeaderOptions, type HeaderFormatContext, removeHeader } from '../headers';
import { MeshletError } from '../../../common/errors';

export const HEADER_MUTATION_TYPE_NAME = 'envoy.extensions.filters.http.header_mutation.v3.HeaderMutation';
export const HEADER_MUTATION_PER_ROUTE_TYPE_NAME = 'envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute';

/** envoy.config.common.mutation_rules.v3.HeaderMutation */
export type Mutation = { readonly kind: 'append'; readonly option: HeaderValueOption } | { readonly kind: 'remove'; readonly name: string };

export interface HeaderMutationConfig {
  readonly kind: 'header_mutation';
  readonly request: readonly Mutation[];
  readonly response: readonly Mutation[];
  /** Route-level mutations run first (so the filter's win) when false — Envoy's default order. */
  readonly mostSpecificWins: boolean;
}

function decodeMutations(r: Reader, key: string): Mutation[] {
  const out: Mutation[] = [];
  for (const m of r.arr(key)) {
    const which = m.oneof(['append', 'remove', 'remove_on_match'] as const);
    if (which === undefined) m.issues.error(m.path, 'one of append, remove must be set');
    else if (which === 'append') {
      const a = m.obj('append');
      const option = a ? decodeHeaderValueOption(a) : undefined;
      if (option) out.push({ kind: 'append', option });
    } else if (which === 'remove') {
      const name = headerName(m, 'remove');
      if (name) out.push({ kind: 'remove', name });
    } else {
      m.error(which, 'is not supported by meshlet');
      m.raw(which);
    }
    m.done();
  }
  return out;
}

function decodeBody(r: Reader, mostSpecificWins: boolean): HeaderMutationConfig {
  const mu = r.obj('mutations');
  const request = mu ? decodeMutations(mu, 'request_mutations') : [];
  const response = mu ? decodeMutations(mu, 'response_mutations') : [];
  if (mu) {
    for (const k of ['query_parameter_mutations', 'request_trailers_mutations', 'response_trailers_mutations']) {
      if (mu.list(k).length > 0) mu.error(k, 'is not supported by meshlet');
    }
    mu.done();
  }
  return { kind: 'header_mutation', request, response, mostSpecificWins };
}

export function decodeHeaderMutation(r: Reader): HeaderMutationConfig {
  const mostSpecificWins = r.bool('most_specific_header_mutations_wins', false);
  const out = decodeBody(r, mostSpecificWins);
  r.done();
  return out;
}

function decodePerRoute(r: Reader): HeaderMutationConfig {
  const out = decodeBody(r, false);
  r.done();
  return Object.freeze(out);
}

function apply(h: string[], list: readonly Mutation[], ctx: HeaderFormatContext): void {
  for (let i = 0; i < list.length; i++) {
    const m = list[i]!;
    if (m.kind === 'remove') removeHeader(h, m.name);
    else applyHeaderOptions(h, [m.option], ctx);
  }
}

/** The stream's format context with the response attached, for %RESP(…)%. */
class ResponseContext implements HeaderFormatContext {
  constructor(
    private readonly base: HeaderFormatContext,
    readonly response: ResponseHead,
  ) {}
  get connection() {
    return this.base.connection;
  }
  get request() {
    return this.base.request;
  }
  get upstreamHost() {
    return this.base.upstreamHost;
  }
  get protocol() {
    return this.base.protocol;
  }
  get hostname() {
    return this.base.hostname;
  }
  get upstreamMetadata() {
    return this.base.upstreamMetadata;
  }
}

class HeaderMutationFilter implements HttpFilter {
  private route: HeaderMutationConfig | undefined;

  constructor(
    private readonly cfg: HeaderMutationConfig,
    private readonly cb: HttpFilterCallbacks,
  ) {}

  private ctx(): HeaderFormatContext {
    return this.cb.formatContext;
  }

  /** Filter and route mutations in Envoy's order. */
  private run(h: string[], pick: (c: HeaderMutationConfig) => readonly Mutation[], ctx: HeaderFormatContext): void {
    const own = pick(this.cfg);
    const route = this.route ? pick(this.route) : undefined;
    if (route === undefined) apply(h, own, ctx);
    else if (this.cfg.mostSpecificWins) {
      apply(h, own, ctx);
      apply(h, route, ctx);
    } else {
      apply(h, route, ctx);
      apply(h, own, ctx);
    }
  }

  decodeHeaders(head: RequestHead): FilterStatus {
    const per = this.cb.perRouteConfig() as HeaderMutationConfig | undefined;
    if (per !== undefined && per.kind === 'header_mutation') this.route = per;
    this.run(head.headers, (c) => c.request, this.ctx());
    return FilterStatus.Continue;
  }

  encodeHeaders(head: ResponseHead): FilterStatus {
    if (this.cfg.response.length === 0 && (this.route === undefined || this.route.response.length === 0))
      return FilterStatus.Continue;
    this.run(head.headers, (c) => c.response, new ResponseContext(this.ctx(), head));
    return FilterStatus.Continue;
  }
}

export const headerMutationFilterFactory: HttpFilterFactory<HeaderMutationConfig> = {
  typeName: HEADER_MUTATION_TYPE_NAME,
  decode: decodeHeaderMutation,
  decodePerRoute(r: Reader): unknown {
    r.issues.error(r.path, `use ${HEADER_MUTATION_PER_ROUTE_TYPE_NAME} for per-route header mutations`);
    return undefined;
  },
  create(config: HeaderMutationConfig, callbacks: HttpFilterCallbacks): HttpFilter {
    return new HeaderMutationFilter(config, callbacks);
  },
};

export const headerMutationPerRouteFactory: HttpFilterFactory<undefined> = {
  typeName: HEADER_MUTATION_PER_ROUTE_TYPE_NAME,
  decode(r: Reader): undefined {
    r.issues.error(r.sub('@type'), `${HEADER_MUTATION_PER_ROUTE_TYPE_NAME} is only valid in typed_per_filter_config`);
    return undefined;
  },
  decodePerRoute,
  create(): HttpFilter {
    throw new MeshletError('MESHLET_ERR_INTERNAL', 'HeaderMutationPerRoute is not an HTTP filter');
  },
};
