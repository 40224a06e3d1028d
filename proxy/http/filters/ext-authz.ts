/**
 * External authorization, `envoy.extensions.filters.http.ext_authz.v3.ExtAuthz` (Envoy's
 * envoy.filters.http.ext_authz), and its per-route `ExtAuthzPerRoute`.
 *
 * On request headers the filter asks an authorization service and holds the request until it
 * answers: over gRPC with `envoy.service.auth.v3.Authorization/Check` (a real CheckRequest with
 * source/destination addresses and principals and the request's method, path, host, scheme and
 * headers: ext-authz-grpc.ts) or over HTTP (`http_service`: ext-authz-http.ts; 200 = allowed).
 * Allowed: the authorizer's headers are applied to the upstream request. Denied: its status (403
 * by default), body and headers go to the client with response flag UAEX. A failure or a timeout
 * answers `status_on_error` (403) with UAEX, unless `failure_mode_allow` lets the request through
 * (and adds `x-envoy-auth-failure-mode-allowed: true` with failure_mode_allow_header_add).
 *
 * `filter_enabled` (runtime fraction) and `filter_enabled_metadata` (a MetadataMatcher over the
 * stream's dynamic metadata — Istio's CUSTOM action matches what RBAC's shadow rules wrote) decide
 * whether a request is checked at all (`ext_authz.disabled` counts the others; `deny_at_disable`
 * answers them status_on_error). `with_request_body` holds the request body through the filter
 * manager's decoder buffer (413 past max_request_bytes unless allow_partial_message) and sends
 * its first max_request_bytes in the check; the held body then goes upstream unchanged.
 *
 * Config decoding is ext-authz-config.ts, the counters ext-authz-stats.ts. Leans fail-closed and
 * lean: one pending call per request, the body held only when with_request_body asks for it.
 */
import type { Reader } from '../../../common/reader';
import { MeshletError } from '../../../common/errors';
import type { HeaderList, RequestHead } from '../codec';
import {
  type DecoderBufferWatcher,
  FilterStatus,
  type HttpFilter,
  type HttpFilterCallbacks,
  type HttpFilterFactory,
} from '../filter';
import { metadataMatches } from '../../authz/metadata-match';
import { flagEnabled } from './compression-library';
import { setHeader } from '../headers';
import {
  decodeExtAuthz,
  decodeExtAuthzPerRoute,
  EXT_AUTHZ_PER_ROUTE_TYPE_NAME,
  EXT_AUTHZ_TYPE_NAME,
  type ExtAuthzConfig,
  type ExtAuthzPerRoute,
} from './ext-authz-config';
import { applyOkResponse, checkAllowed, checkRequest, deniedReply } from './ext-authz-grpc';
import { applyHttpOk, httpCheck, httpDeniedReply } from './ext-authz-http';
import { extAuthzStats } from './ext-authz-stats';
import type { HttpCallResult } from './service-client';
import { unaryCall } from './service-client';

const NO_EXTENSIONS: Readonly<Record<string, string>> = Object.freeze({});

/** Whether filter_enabled and filter_enabled_metadata let the filter check this request (Envoy's filterEnabled). */
function filterEnabled(cfg: ExtAuthzConfig, cb: HttpFilterCallbacks): boolean {
  if (cfg.filterEnabled !== undefined && !cb.runtime.fractionEnabled(cfg.filterEnabled, Math.random())) return false;
  const m = cfg.filterEnabledMetadata;
  return m === undefined || metadataMatches(m, cb.streamInfo.dynamicMetadataOf);
}

class ExtAuthzFilter implements HttpFilter, DecoderBufferWatcher {
  private pending = false;
  private done = false;
  private head: RequestHead | undefined;
  private ext: Readonly<Record<string, string>> = NO_EXTENSIONS;
  /** Headers for the upstream's response (allowed_client_headers_on_success). */
  private responseHeaders: HeaderList | undefined;
  private syncResult: FilterStatus = FilterStatus.Continue;

  constructor(
    private readonly config: ExtAuthzConfig,
    private readonly cb: HttpFilterCallbacks,
  ) {}

  get partial(): boolean {
    return this.config.withRequestBody?.allowPartialMessage === true;
  }

  decodeHeaders(head: RequestHead, endStream: boolean): FilterStatus {
    const per = this.cb.perRouteConfig() as ExtAuthzPerRoute | undefined;
    let skipBody = false;
    if (per !== undefined && per.kind === 'ext_authz_per_route') {
      if (per.disabled) return FilterStatus.Continue;
      this.ext = per.contextExtensions;
      skipBody = per.disableRequestBodyBuffering;
    }
    const cfg = this.config;
    if ((cfg.filterEnabled !== undefined || cfg.filterEnabledMetadata !== undefined) && !filterEnabled(cfg, this.cb)) {
      extAuthzStats(cfg.statPrefix).disabled++;
      if (cfg.denyAtDisable !== undefined && flagEnabled(cfg.denyAtDisable, this.cb.runtime)) {
        this.cb.sendLocalReply(cfg.statusOnError, '', undefined, 'UAEX', 'ext_authz_error');
        return FilterStatus.StopIteration;
      }
      return FilterStatus.Continue;
    }
    this.head = head;
    const wb = cfg.withRequestBody;
    if (wb !== undefined && !skipBody && !endStream && head.upgrade === undefined && head.method !== 'CONNECT') {
      // with_request_body: hold the body (413 past max_request_bytes unless allow_partial_message)
      // and ask once it is complete or, partial, once max_request_bytes are in (onDecoderBuffered).
      this.pending = true;
      this.cb.setDecoderBufferLimit(wb.maxRequestBytes, this);
      return FilterStatus.StopIteration;
    }
    this.check(head, undefined);
    // The callback may have run synchronously (no host): then the decision is already applied.
    return this.pending ? FilterStatus.StopIteration : this.syncResult;
  }

  onDecoderBuffered(body: Buffer): void {
    if (this.done || this.head === undefined) return;
    this.check(this.head, body);
  }

  private check(head: RequestHead, body: Buffer | undefined): void {
    this.pending = true;
    const cfg = this.config;
    if (cfg.grpc !== undefined) {
      unaryCall(this.cb.clusters, cfg.grpc, 'auth', 'Check', checkRequest(head, this.cb, cfg, this.ext, body), (err, res) =>
        this.onGrpcResult(err, res),
      );
    } else if (cfg.http !== undefined) {
      httpCheck(this.cb.clusters, cfg.http, head, body, cfg.withRequestBody).then(
        (r) => this.onHttpResult(r, undefined),
        (err: unknown) => this.onHttpResult(undefined, err as Error),
      );
    } else this.finish(true);
  }

  encodeHeaders(head: { headers: HeaderList }): FilterStatus {
    const add = this.responseHeaders;
    if (add !== undefined) for (let i = 0; i < add.length; i += 2) setHeader(head.headers, add[i]!, add[i + 1]!);
    return FilterStatus.Continue;
  }

  onDestroy(): void {
    this.done = true;
  }

  private finish(allow: boolean): void {
    const wasPending = this.pending;
    this.pending = false;
    if (!allow) {
      this.syncResult = FilterStatus.StopIteration;
      return;
    }
    if (this.config.clearRouteCache) this.cb.clearRouteCache();
    if (wasPending) this.cb.continueDecoding();
  }

  private onError(err: Error): void {
    const cfg = this.config;
    const stats = extAuthzStats(cfg.statPrefix);
    stats.error++;
    this.cb.setMetadata('ext_authz_error', err.message.slice(0, 200));
    if (cfg.failureModeAllow) {
      stats.failureModeAllowed++;
      if (cfg.failureModeAllowHeaderAdd && this.head) setHeader(this.head.headers, 'x-envoy-auth-failure-mode-allowed', 'true');
      this.finish(true);
      return;
    }
    this.deny(cfg.statusOnError, '', undefined, 'ext_authz_error');
  }

  private deny(status: number, body: string, headers: HeaderList | undefined, details: string): void {
    this.pending = false;
    this.syncResult = FilterStatus.StopIteration;
    this.cb.sendLocalReply(status, body, headers, 'UAEX', details);
  }

  private onGrpcResult(err: Error | undefined, res: Record<string, unknown> | undefined): void {
    if (this.done) return;
    if (err !== undefined || res === undefined) {
      this.onError(err ?? new Error('empty response'));
      return;
    }
    const stats = extAuthzStats(this.config.statPrefix);
    if (checkAllowed(res)) {
      stats.ok++;
      if (this.head) this.responseHeaders = applyOkResponse(res, this.head.headers);
      this.finish(true);
      return;
    }
    stats.denied++;
    const d = deniedReply(res);
    this.deny(d.status, d.body, d.headers, 'ext_authz_denied');
  }

  private onHttpResult(r: HttpCallResult | undefined, err: Error | undefined): void {
    if (this.done) return;
    if (r === undefined) {
      this.onError(err ?? new Error('no response'));
      return;
    }
    const hs = this.config.http!;
    const stats = extAuthzStats(this.config.statPrefix);
    // A 5xx from the authorizer is its failure, not a decision: status_on_error / failure_mode_allow (Envoy).
    if (r.status >= 500 && r.status <= 599) {
      this.onError(new Error(`authorization server answered ${r.status}`));
      return;
    }
    if (r.status === 200) {
      stats.ok++;
      this.responseHeaders = applyHttpOk(hs, r, this.head!.headers);
      this.finish(true);
      return;
    }
    // Any other non-200 answer is a denial carrying the authorizer's status, body and headers.
    stats.denied++;
    const d = httpDeniedReply(hs, r);
    this.deny(d.status, d.body, d.headers, 'ext_authz_denied');
  }
}

export const extAuthzFilterFactory: HttpFilterFactory<ExtAuthzConfig> = {
  typeName: EXT_AUTHZ_TYPE_NAME,
  decode: decodeExtAuthz,
  decodePerRoute(r: Reader): unknown {
    r.issues.error(r.path, `use ${EXT_AUTHZ_PER_ROUTE_TYPE_NAME} for per-route ext_authz configuration`);
    return undefined;
  },
  create(config: ExtAuthzConfig, callbacks: HttpFilterCallbacks): HttpFilter {
    return new ExtAuthzFilter(config, callbacks);
  },
};

/** Registered so typed_per_filter_config entries of ExtAuthzPerRoute decode; not a filter itself. */
export const extAuthzPerRouteFactory: HttpFilterFactory<undefined> = {
  typeName: EXT_AUTHZ_PER_ROUTE_TYPE_NAME,
  decode(r: Reader): undefined {
    r.issues.error(r.sub('@type'), `${EXT_AUTHZ_PER_ROUTE_TYPE_NAME} is only valid in typed_per_filter_config`);
    return undefined;
  },
  decodePerRoute: decodeExtAuthzPerRoute,
  create(): HttpFilter {
    throw new MeshletError('MESHLET_ERR_INTERNAL', 'ExtAuthzPerRoute is not an HTTP filter');
  },
};
