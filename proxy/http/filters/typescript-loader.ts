/**
 * Loads user filter modules for the TypeScript filter: `.js`/`.cjs` as CommonJS, `.ts`/`.cts`
 * compiled with the installed `typescript` package's transpileModule (no type checking at run
 * time — editors and `tsc` do that against the published `meshlet/filter` types). A module is
 * compiled from its current source on every load, so a reload never sees Node's require cache.
 *
 * With `watch`, a module is reloaded when its file changes; a reload that fails (syntax error,
 * bad export) keeps the previous version running and is counted, never thrown at traffic.
 *
 * Control-plane code: loading may throw (config decoding reports it at the `path` field).
 */
import { readFileSync, type FSWatcher, watch } from 'node:fs';
import Module from 'node:module';
import path from 'node:path';
import { MeshletError } from '../../../common/errors';
import { logger } from '../../../common/logger';
import type { MeshletFilter } from '../user-filter';

const log = logger('typescript-filter');

type TypeScriptApi = typeof import('typescript');
let ts: TypeScriptApi | undefined;
function typescript(): TypeScriptApi {
  ts ??= require('typescript') as TypeScriptApi;
  return ts;
}

const HOOKS = ['onRequestHeaders', 'onRequestBody', 'onResponseHeaders', 'onResponseBody'] as const;

/** Compile (when TypeScript) and evaluate `file` as a fresh CommonJS module; return its exports. */
export function evaluateModule(file: string): unknown {
  let code = readFileSync(file, 'utf8');
  if (/\.[cm]?ts$/.test(file)) {
    const out = typescript().transpileModule(code, {
      fileName: file,
      reportDiagnostics: true,
      compilerOptions: {
        module: typescript().ModuleKind.CommonJS,
        target: typescript().ScriptTarget.ES2022,
        esModuleInterop: true,
        sourceMap: false,
        inlineSourceMap: true,
      },
    });
    const errors = (out.diagnostics ?? []).filter((d) => d.category === typescript().DiagnosticCategory.Error);
    if (errors.length > 0) {
      const d = errors[0]!;
      const msg = typescript().flattenDiagnosticMessageText(d.messageText, '\n');
      const pos = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : undefined;
      throw new MeshletError('MESHLET_ERR_CONFIG', `${path.basename(file)}${pos ? `:${pos.line + 1}:${pos.character + 1}` : ''}: ${msg}`);
    }
    code = out.outputText;
  }
  const m = new Module(file, module) as Module & { _compile(code: string, filename: string): void };
  m.filename = file;
  m.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(path.dirname(file));
  m._compile(code, file);
  return m.exports;
}

/** The MeshletFilter a module's exports describe, built for `config`. */
export function filterFromExports(exports: unknown, config: unknown): MeshletFilter {
  let e = exports as { default?: unknown } | undefined;
  if (e !== null && typeof e === 'object' && 'default' in e && e.default !== undefined) e = e.default as typeof e;
  let f: unknown = e;
  if (typeof f === 'function') f = (f as (c: unknown) => unknown)(config);
  if (f === null || typeof f !== 'object') {
    throw new MeshletError('MESHLET_ERR_CONFIG', 'the module must export a MeshletFilter (or a function returning one) as default');
  }
  const o = f as Record<string, unknown>;
  let hooks = 0;
  for (const h of HOOKS) {
    if (o[h] === undefined) continue;
    if (typeof o[h] !== 'function') throw new MeshletError('MESHLET_ERR_CONFIG', `${h} must be a function`);
    hooks++;
  }
  if (hooks === 0) throw new MeshletError('MESHLET_ERR_CONFIG', `the filter implements none of ${HOOKS.join(', ')}`);
  return f as MeshletFilter;
}

export function loadFilter(file: string, config: unknown): MeshletFilter {
  return filterFromExports(evaluateModule(file), config);
}

/** Reload counters for one module path. */
export interface LoadedModuleStats {
  reloads: number;
  reloadFailures: number;
}

/**
 * The current version of one configured filter. With `watch`, the file is watched and reloaded on
 * change; `current` always points at the newest version that loaded.
 */
export class LoadedFilter {
  current: MeshletFilter;
  readonly stats: LoadedModuleStats = { reloads: 0, reloadFailures: 0 };
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    readonly file: string,
    readonly config: unknown,
    initial: MeshletFilter,
    watchFile: boolean,
  ) {
    this.current = initial;
    if (watchFile) {
      this.startWatch();
      live.add(this);
    }
  }

  private startWatch(): void {
    if (this.closed) return;
    try {
      // Watch the directory: editors replace files on save (rename), which ends a file watch.
      const base = path.basename(this.file);
      this.watcher = watch(path.dirname(this.file), (_ev, name) => {
        if (name === null || name === base) this.schedule();
      });
      this.watcher.unref();
      this.watcher.on('error', (err) => log.warn({ err, file: this.file }, 'watching the filter module failed'));
    } catch (err) {
      log.warn({ err, file: this.file }, 'cannot watch the filter module; changes need a config push');
    }
  }

  /** Debounce bursts of change events (write + rename) into one reload. */
  private schedule(): void {
    if (this.closed) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.reload(), 50);
    this.timer.unref();
  }

  /** Load the file again; keep the previous version when the new one does not load. */
  reload(): boolean {
    this.timer = undefined;
    if (this.closed) return false;
    try {
      this.current = loadFilter(this.file, this.config);
      this.stats.reloads++;
      log.info({ file: this.file }, 'filter module reloaded');
      return true;
    } catch (err) {
      this.stats.reloadFailures++;
      log.warn({ err, file: this.file }, 'filter module reload failed; the previous version stays');
      return false;
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.watcher?.close();
    live.delete(this);
    for (const [k, v] of watchedByKey) if (v === this) watchedByKey.delete(k);
  }
}

/** Watching filters (the ones holding a file watcher). */
const live = new Set<LoadedFilter>();
/** One watcher per module file × config: repeated config pushes reuse it instead of adding watchers. */
const watchedByKey = new Map<string, LoadedFilter>();

/**
 * The LoadedFilter for a freshly decoded config. Without `watch` it is private to the config;
 * with `watch` the one for the same file and config is reused (and switched to `impl`, the version
 * just loaded), so a control plane re-sending a listener does not pile up file watchers.
 */
export function loadedFilterForConfig(file: string, config: unknown, impl: MeshletFilter, watchFile: boolean): LoadedFilter {
  if (!watchFile) return new LoadedFilter(file, config, impl, false);
  const key = `${file}\u0000${JSON.stringify(config)}`;
  const existing = watchedByKey.get(key);
  if (existing !== undefined) {
    existing.current = impl;
    return existing;
  }
  const l = new LoadedFilter(file, config, impl, true);
  watchedByKey.set(key, l);
  return l;
}

/** Every module currently loaded (for reload counters). */
export function allLoadedFilters(): readonly LoadedFilter[] {
  return [...live];
}

/** Stop every watcher (shutdown, tests). */
export function closeTypeScriptFilters(): void {
  for (const l of [...live]) l.close();
}
