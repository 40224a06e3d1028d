/**
 * The `envoy.extensions.filters.http.router.v3.Router` filter factory: decodes the router's
 * typed_config and creates the terminal RouterFilter (proxy/http/router/router-filter.ts) once
 * per stream, like any registered filter.
 */
import type { Reader } from '../../../common/reader';
import type { RouterConfig } from '../router/router-config';
import { RouterFilter } from '../router/router-filter';
import type { TerminalHttpFilterFactory } from '../filter';

export { DEFAULT_ROUTER_CONFIG, type RouterConfig } from '../router/router-config';

export const ROUTER_TYPE_NAME = 'envoy.extensions.filters.http.router.v3.Router';

export const routerFilterFactory: TerminalHttpFilterFactory<RouterConfig> = {
  typeName: ROUTER_TYPE_NAME,
  terminal: true,
  decode(r: Reader): RouterConfig {
    const cfg: RouterConfig = {
      dynamicStats: r.bool('dynamic_stats', true),
      startChildSpan: r.bool('start_child_span', false),
      suppressEnvoyHeaders: r.bool('suppress_envoy_headers', false),
      respectExpectedRqTimeout: r.bool('respect_expected_rq_timeout', false),
      suppressGrpcRequestFailureCodeStats: r.bool('suppress_grpc_request_failure_code_stats', false),
    };
    // strict_check_headers lists headers to validate; accepted values are checked for shape only.
    const strict = r.strList('strict_check_headers');
    for (const [i, h] of strict.entries()) {
      if (!h.startsWith('x-envoy-'))
        r.issues.error(`${r.sub('strict_check_headers')}[${i}]`, `unsupported header ${h}`);
    }
    r.done();
    return Object.freeze(cfg);
  },
  create(config, callbacks): RouterFilter {
    return new RouterFilter(callbacks, config);
  },
};
