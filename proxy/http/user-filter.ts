/**
 * The published API for HTTP filters written in TypeScript (`import type { MeshletFilter } from
 * 'meshlet/filter'`). A user module exports a MeshletFilter (or a function that builds one from
 * the filter's `config`) as its default export; meshlet loads it from the path named in a
 * `type.googleapis.com/meshlet.filters.TypeScript` filter config (proxy/http/filters/typescript.ts).
 *
 * Leans small and safe: four optional hooks, each returning "continue", "stop" (body hooks only:
 * hold the data), a local reply, or a Promise of one of those. The request/response objects are
 * thin views over meshlet's own header lists — nothing is copied unless the filter reads it.
 * This module holds types plus one identity helper, so importing it costs nothing at run time.
 */

/** Case-insensitive view of a header list. Names are lower-cased by meshlet. */
export interface FilterHeaders {
  /** The first value of `name`, or undefined. */
  get(name: string): string | undefined;
  /** Every value of `name` (empty when absent). */
  getAll(name: string): string[];
  has(name: string): boolean;
  /** Replace every value of `name` with `value`. */
  set(name: string, value: string): void;
  /** Add one more `name: value` line. */
  add(name: string, value: string): void;
  /** Remove every value of `name`. */
  remove(name: string): void;
  /** A copy of all [name, value] pairs, in order. */
  entries(): [string, string][];
}

/** The request as a filter sees it; `path` and headers may be changed before it goes upstream. */
export interface FilterRequest {
  readonly method: string;
  /** Path with query, e.g. "/orders?id=7". Assignable (rewrites the upstream path). */
  path: string;
  /** Host / :authority. */
  readonly authority: string;
  readonly scheme: string;
  readonly headers: FilterHeaders;
}

/** The response as a filter sees it. */
export interface FilterResponse {
  /** Assignable: replaces the status sent to the client. */
  status: number;
  readonly headers: FilterHeaders;
}

/** Answer the request locally instead of (or instead of the rest of) the upstream response. */
export interface LocalReply {
  readonly status: number;
  readonly body?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

/** What a headers hook returns: go on (undefined or "continue") or answer locally. */
export type HeadersResult = void | 'continue' | LocalReply;
/**
 * What a body hook returns. "stop" holds this chunk: it is not passed on, and the next call gets
 * everything held so far plus the new data as its `chunk`. At end of stream "stop" is the same as
 * "continue" (nothing is left to wait for).
 */
export type BodyResult = void | 'continue' | 'stop' | LocalReply;

/** Per-request facts and helpers handed to every hook of one request. */
export interface FilterContext<C = unknown> {
  /** The `config` of the filter's meshlet configuration, as given (JSON). */
  readonly config: C;
  /** The client address meshlet trusts for this request (after x-forwarded-for rules). */
  readonly remoteAddress: string;
  /** The name of the selected route, when it has one. */
  readonly routeName: string | undefined;
  /** Scratch space that lives for this request only (e.g. values from request to response hooks). */
  readonly state: Map<string, unknown>;
  /** Record a short fact in the access log's filter metadata (key "ts.<filter name>.<key>"). */
  setMetadata(key: string, value: string): void;
}

/** Any hook may answer synchronously or with a Promise (async work holds the request). */
export type MaybePromise<T> = T | Promise<T>;

/**
 * A meshlet HTTP filter. Every hook is optional. Hooks that throw, reject, or run past the filter's
 * time budget fail only their request (500, counted in the filter's `errors` / `timeouts`
 * metrics); the proxy keeps running.
 */
export interface MeshletFilter<C = unknown> {
  onRequestHeaders?(request: FilterRequest, ctx: FilterContext<C>): MaybePromise<HeadersResult>;
  /** Request body data in arrival order; `endOfStream` marks the last call. */
  onRequestBody?(chunk: Buffer, endOfStream: boolean, ctx: FilterContext<C>): MaybePromise<BodyResult>;
  onResponseHeaders?(response: FilterResponse, ctx: FilterContext<C>): MaybePromise<HeadersResult>;
  onResponseBody?(chunk: Buffer, endOfStream: boolean, ctx: FilterContext<C>): MaybePromise<BodyResult>;
}

/** What a filter module's default export may be: a filter, or a factory called once per config. */
export type MeshletFilterExport<C = unknown> = MeshletFilter<C> | ((config: C) => MeshletFilter<C>);

/**
 * Identity helper for editor inference in plain JavaScript or TypeScript modules:
 * `export default defineFilter<MyConfig>({ onRequestHeaders(req, ctx) { … } })`.
 */
export function defineFilter<C = unknown>(filter: MeshletFilter<C>): MeshletFilter<C> {
  return filter;
}
