/**
 * meshlet's own extension: an HTTP filter that is a user's TypeScript (or JavaScript) module,
 * `type.googleapis.com/meshlet.filters.TypeScript` with `path`, `config`, `watch`, `time_budget`
 * and `stat_prefix`. The module implements the published MeshletFilter interface
 * (proxy/http/user-filter.ts, `meshlet/filter`).
 *
 * Isolation contract: a hook that throws, rejects, returns something invalid, or runs past the
 * time budget fails only its request — a 500 local reply (or a reset once the response headers
 * are out) — and is counted (`errors`, `timeouts`); the proxy keeps serving. A synchronous hook
 * cannot be pre-empted in-process, so one that overruns is detected when it returns and its
 * result is discarded; an async hook is timed out while it is pending.
 *
 * Changes apply to new requests without a restart: a new filter config (listener/LDS/RDS push)
 * loads the module afresh at decode time; with `watch: true` a changed file is reloaded and each
 * new request uses the newest version that loaded (requests in flight finish on the version
 * they started with).
 */
import path from 'node:path';
import { Reader } from '../../../common/reader';
import { logger } from '../../../common/logger';
import type { HeaderList, RequestHead, ResponseHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { addHeader, getHeader, hasHeader, removeHeader, setHeader } from '../headers';
import type {
  FilterContext,
  FilterHeaders,
  FilterRequest,
  FilterResponse,
  LocalReply,
  MeshletFilter,
} from '../user-filter';
import { type LoadedFilter, loadedFilterForConfig, loadFilter } from './typescript-loader';

export { closeTypeScriptFilters } from './typescript-loader';

export const TYPESCRIPT_FILTER_TYPE_NAME = 'meshlet.filters.TypeScript';

const log = logger('typescript-filter');

export interface TypeScriptFilterConfig {
  readonly kind: 'typescript';
  /** Absolute path of the module (.ts, .cts, .js, .cjs); relative paths resolve from the working directory. */
  readonly path: string;
  /** Handed to the module's factory and to every hook as `ctx.config` (any JSON). */
  readonly config: unknown;
  /** Reload the module when its file changes. */
  readonly watch: boolean;
  /** Longest a hook may take, in ms (default 200 ms). */
  readonly timeBudgetMs: number;
  /** Names the filter's counters (default: the module's file name without extension). */
  readonly statPrefix: string;
}

/** Counters of one TypeScript filter (`typescript_filter.<stat_prefix>.*`). */
export class TypeScriptFilterStats {
  requests = 0;
  errors = 0;
  timeouts = 0;
  localReplies = 0;
  constructor(readonly statPrefix: string) {}
}
const statsByPrefix = new Map<string, TypeScriptFilterStats>();
export function typeScriptFilterStats(prefix: string): TypeScriptFilterStats {
  let s = statsByPrefix.get(prefix);
  if (s === undefined) {
    s = new TypeScriptFilterStats(prefix);
    statsByPrefix.set(prefix, s);
  }
  return s;
}
export function allTypeScriptFilterStats(): readonly TypeScriptFilterStats[] {
  return [...statsByPrefix.values()];
}

/** The loaded module per decoded config (configs stay plain data). */
const loaded = new WeakMap<TypeScriptFilterConfig, LoadedFilter>();
/** Reload counters of the module behind a config (tests, admin). */
export function loadedFilterFor(cfg: TypeScriptFilterConfig): LoadedFilter | undefined {
  return loaded.get(cfg);
}

export function decodeTypeScriptFilter(r: Reader): TypeScriptFilterConfig {
  const p = r.requiredStr('path');
  const file = p ? path.resolve(p) : '';
  if (p && !/\.(c?ts|c?js)$/.test(p)) r.error('path', 'must name a .ts, .cts, .js or .cjs module');
  const config = r.raw('config') ?? {};
  const watch = r.bool('watch', false);
  const timeBudgetMs = r.durationMs('time_budget', 200);
  if (timeBudgetMs <= 0) r.error('time_budget', 'must be greater than 0');
  const statPrefix = r.str('stat_prefix', '') || path.basename(file).replace(/\.[^.]+$/, '');
  r.done();
  const cfg: TypeScriptFilterConfig = { kind: 'typescript', path: file, config, watch, timeBudgetMs, statPrefix };
  if (p && r.issues.ok) {
    // Control plane: load (and compile) now, so a broken module is a config error at `path`.
    try {
      const impl = loadFilter(file, config);
      loaded.set(cfg, loadedFilterForConfig(file, config, impl, watch));
      typeScriptFilterStats(statPrefix);
    } catch (err) {
      r.error('path', `cannot load filter module: ${(err as Error).message}`);
    }
  }
  return cfg;
}

// ───────────────────────────── views handed to user code ─────────────────────────────

class HeadersView implements FilterHeaders {
  constructor(private readonly h: HeaderList) {}
  get(name: string): string | undefined {
    return getHeader(this.h, name.toLowerCase());
  }
  getAll(name: string): string[] {
    const n = name.toLowerCase();
    const out: string[] = [];
    for (let i = 0; i < this.h.length; i += 2) if (this.h[i] === n) out.push(this.h[i + 1]!);
    return out;
  }
  has(name: string): boolean {
    return hasHeader(this.h, name.toLowerCase());
  }
  set(name: string, value: string): void {
    setHeader(this.h, name.toLowerCase(), String(value));
  }
  add(name: string, value: string): void {
    addHeader(this.h, name.toLowerCase(), String(value));
  }
  remove(name: string): void {
    removeHeader(this.h, name.toLowerCase());
  }
  entries(): [string, string][] {
    const out: [string, string][] = [];
    for (let i = 0; i < this.h.length; i += 2) out.push([this.h[i]!, this.h[i + 1]!]);
    return out;
  }
}

class RequestView implements FilterRequest {
  readonly headers: FilterHeaders;
  constructor(private readonly head: RequestHead) {
    this.headers = new HeadersView(head.headers);
  }
  get method(): string {
    return this.head.method;
  }
  get path(): string {
    return this.head.path;
  }
  set path(v: string) {
    this.head.path = String(v);
  }
  get authority(): string {
    return this.head.authority;
  }
  get scheme(): string {
    return this.head.scheme;
  }
}

class ResponseView implements FilterResponse {
  readonly headers: FilterHeaders;
  constructor(private readonly head: ResponseHead) {
    this.headers = new HeadersView(head.headers);
  }
  get status(): number {
    return this.head.status;
  }
  set status(v: number) {
    const n = Number(v);
    if (Number.isInteger(n) && n >= 200 && n <= 599) this.head.status = n;
  }
}

class Context implements FilterContext {
  private map: Map<string, unknown> | undefined;
  constructor(
    readonly config: unknown,
    private readonly cb: HttpFilterCallbacks,
    private readonly prefix: string,
  ) {}
  get remoteAddress(): string {
    return this.cb.trustedRemoteAddress || this.cb.connection.remoteAddress;
  }
  get routeName(): string | undefined {
    return this.cb.route()?.name || undefined;
  }
  get state(): Map<string, unknown> {
    this.map ??= new Map();
    return this.map;
  }
  setMetadata(key: string, value: string): void {
    this.cb.setMetadata(`ts.${this.prefix}.${key}`, String(value));
  }
}

// ───────────────────────────── the filter ─────────────────────────────

const DECODE = 0;
const ENCODE = 1;
type Dir = typeof DECODE | typeof ENCODE;

function isLocalReply(v: unknown): v is LocalReply {
  return v !== null && typeof v === 'object' && typeof (v as LocalReply).status === 'number';
}

function onBudgetTimer(f: TypeScriptFilter): void {
  f.onTimeout();
}

class TypeScriptFilter implements HttpFilter {
  private ctx: Context | undefined;
  private done = false;
  /** A hook's promise is pending for this direction (-1 = none). */
  private pendingDir = -1;
  private pendingToken = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Chunks a body hook held with "stop", by direction. */
  private heldReq: Buffer[] | undefined;
  private heldRes: Buffer[] | undefined;
  private readonly stats: TypeScriptFilterStats;

  constructor(
    private readonly cfg: TypeScriptFilterConfig,
    private readonly impl: MeshletFilter,
    private readonly cb: HttpFilterCallbacks,
  ) {
    this.stats = typeScriptFilterStats(cfg.statPrefix);
    this.stats.requests++;
  }

  private context(): Context {
    this.ctx ??= new Context(this.cfg.config, this.cb, this.cfg.statPrefix);
    return this.ctx;
  }

  decodeHeaders(head: RequestHead): FilterStatus {
    const hook = this.impl.onRequestHeaders;
    if (hook === undefined) return FilterStatus.Continue;
    return this.invoke(() => hook.call(this.impl, new RequestView(head), this.context()), DECODE, false, false);
  }

  decodeData(chunk: Buffer, endStream: boolean): FilterStatus {
    const hook = this.impl.onRequestBody;
    if (hook === undefined) return FilterStatus.Continue;
    const data = this.withHeld(this.heldReq, chunk);
    return this.invoke(() => hook.call(this.impl, data, endStream, this.context()), DECODE, true, endStream, chunk);
  }

  encodeHeaders(head: ResponseHead): FilterStatus {
    const hook = this.impl.onResponseHeaders;
    if (hook === undefined) return FilterStatus.Continue;
    return this.invoke(() => hook.call(this.impl, new ResponseView(head), this.context()), ENCODE, false, false);
  }

  encodeData(chunk: Buffer, endStream: boolean): FilterStatus {
    const hook = this.impl.onResponseBody;
    if (hook === undefined) return FilterStatus.Continue;
    const data = this.withHeld(this.heldRes, chunk);
    return this.invoke(() => hook.call(this.impl, data, endStream, this.context()), ENCODE, true, endStream, chunk);
  }

  onDestroy(): void {
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
  }

  private withHeld(held: Buffer[] | undefined, chunk: Buffer): Buffer {
    return held === undefined || held.length === 0 ? chunk : Buffer.concat([...held, chunk]);
  }

  /** Run a hook under the isolation contract and map its result to a filter status. */
  private invoke(thunk: () => unknown, dir: Dir, body: boolean, endStream: boolean, chunk?: Buffer): FilterStatus {
    const started = performance.now();
    let r: unknown;
    try {
      r = thunk();
    } catch (err) {
      return this.fail('error', err);
    }
    if (r !== null && typeof r === 'object' && typeof (r as Promise<unknown>).then === 'function') {
      const token = ++this.pendingToken;
      this.pendingDir = dir;
      this.timer = setTimeout(onBudgetTimer, this.cfg.timeBudgetMs, this);
      (r as Promise<unknown>).then(
        (v) => this.settle(token, dir, v, body, endStream, chunk),
        (err: unknown) => {
          if (!this.current(token)) return;
          this.fail('error', err);
        },
      );
      return FilterStatus.StopIteration;
    }
    if (performance.now() - started > this.cfg.timeBudgetMs) {
      return this.fail('timeout', new Error(`hook ran for more than ${this.cfg.timeBudgetMs}ms`));
    }
    return this.apply(r, dir, body, endStream, chunk, true);
  }

  private current(token: number): boolean {
    if (this.done || token !== this.pendingToken || this.pendingDir < 0) return false;
    this.pendingDir = -1;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    return true;
  }

  private settle(token: number, dir: Dir, v: unknown, body: boolean, endStream: boolean, chunk: Buffer | undefined): void {
    if (!this.current(token)) return;
    const st = this.apply(v, dir, body, endStream, chunk, false);
    if (st !== FilterStatus.Continue) return;
    if (dir === DECODE) this.cb.continueDecoding();
    else this.cb.continueEncoding();
  }

  onTimeout(): void {
    this.timer = undefined;
    if (this.done || this.pendingDir < 0) return;
    this.pendingDir = -1;
    this.pendingToken++;
    this.fail('timeout', new Error(`hook did not finish within ${this.cfg.timeBudgetMs}ms`));
  }

  private apply(
    v: unknown,
    dir: Dir,
    body: boolean,
    endStream: boolean,
    chunk: Buffer | undefined,
    sync: boolean,
  ): FilterStatus {
    if (v === 'stop' && !body) return this.fail('error', new Error('"stop" is only valid from body hooks'));
    if (v === undefined || v === 'continue' || (v === 'stop' && (endStream || !sync))) {
      // Async "stop" cannot hold data the filter manager already queued: it continues.
      if (body) {
        if (dir === DECODE) this.heldReq = undefined;
        else this.heldRes = undefined;
      }
      return FilterStatus.Continue;
    }
    if (v === 'stop') {
      if (dir === DECODE) (this.heldReq ??= []).push(chunk!);
      else (this.heldRes ??= []).push(chunk!);
      return FilterStatus.StopIterationAndBuffer;
    }
    if (isLocalReply(v)) {
      const status = Number.isInteger(v.status) && v.status >= 200 && v.status <= 599 ? v.status : 500;
      const h: HeaderList = [];
      if (v.headers) for (const [k, val] of Object.entries(v.headers)) h.push(k.toLowerCase(), String(val));
      this.stats.localReplies++;
      this.cb.sendLocalReply(status, typeof v.body === 'string' ? v.body : '', h, undefined, `typescript_filter_local_reply{${this.cfg.statPrefix}}`);
      return FilterStatus.StopIteration;
    }
    return this.fail('error', new Error(`invalid hook result ${JSON.stringify(v)}`));
  }

  private fail(kind: 'error' | 'timeout', err: unknown): FilterStatus {
    if (kind === 'error') this.stats.errors++;
    else this.stats.timeouts++;
    if (log.isLevelEnabled('warn')) log.warn({ err, filter: this.cfg.statPrefix, kind }, 'typescript filter failed the request');
    this.cb.sendLocalReply(500, 'typescript filter failed', undefined, undefined, `typescript_filter_${kind}{${this.cfg.statPrefix}}`);
    return FilterStatus.StopIteration;
  }
}

export const typeScriptFilterFactory: HttpFilterFactory<TypeScriptFilterConfig> = {
  typeName: TYPESCRIPT_FILTER_TYPE_NAME,
  decode: decodeTypeScriptFilter,
  create(config: TypeScriptFilterConfig, callbacks: HttpFilterCallbacks): HttpFilter {
    let l = loaded.get(config);
    if (l === undefined) {
      // A config object that did not come from decode (a structural copy): load once, then reuse.
      l = loadedFilterForConfig(config.path, config.config, loadFilter(config.path, config.config), config.watch);
      loaded.set(config, l);
    }
    return new TypeScriptFilter(config, l.current, callbacks);
  },
};
