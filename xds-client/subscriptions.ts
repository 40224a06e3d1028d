/**
 * Subscriptions and the resource cache: which names each type is watched for, the last accepted
 * value of every resource, per-resource error state and initial-fetch timers (the shapes are in
 * cache.ts, the notification queue in notifier.ts). It survives stream failures: the cache is never cleared on disconnect, so the
 * proxy keeps serving the last accepted config while the client reconnects.
 *
 * Leans towards keeping the last good config: a rejected resource keeps its previous value, and
 * only the control plane's explicit word (SotW LDS/CDS absence, delta removed_resources) or an
 * unsubscribe removes one. Nonces, versions sent and error_detail belong to the streams.
 */

import type { FieldIssue } from '../common/errors';
import { MeshletError } from '../common/errors';
import { logger } from '../common/logger';
import { type CachedResource, TypeState } from './cache';
import { Note, Notifier } from './notifier';
import { describeIssues, type ParsedResource, quoteName } from './parser';

/**
 * Bound of a NACK's error_detail message. Envoy truncates to 4 KiB; one resource's description is
 * itself up to 4 KiB (parser.ts), so 8 KiB always keeps the first one whole.
 */
const MAX_NACK_MESSAGE = 8192;
import { type ResourceTypeDef, shortTypeName, type XdsResourceError, type XdsWatcher } from './resource-types';

export { type CachedResource, type ClientStatus, type ErrorState, type TypeCounters, TypeState } from './cache';

/** Outcome of applying one response, for the stream to ACK or NACK. */
export interface ApplyOutcome {
  readonly accepted: boolean;
  /** NACK message: one line per rejected resource and field. */
  readonly message: string;
}
/** Registry of types, their watches and cache; the notification queue. */
export class Subscriptions {
  private readonly types = new Map<string, TypeState<unknown>>();
  private readonly notifier = new Notifier();
  /** Initial-fetch timers run only once the client has started (as Envoy starts them with the subscription). */
  private armed = false;
  /** type + field path + message of every not-honoured field already logged (bounded): one line each, not one per push. */
  private readonly warned = new Set<string>();

  /**
   * @param initialFetchTimeoutMs how long a watched resource may stay unsent before watchers hear
   *   onDoesNotExist (Envoy's initial_fetch_timeout, default 15 s); 0 disables.
   * @param onInterestChanged called when the set of subscribed names of a type changes.
   */
  constructor(
    private readonly initialFetchTimeoutMs: number,
    private readonly onInterestChanged: (typeUrl: string) => void,
  ) {}

  register<T>(def: ResourceTypeDef<T>): TypeState<T> {
    if (this.types.has(def.typeUrl))
      throw new MeshletError('MESHLET_ERR_INTERNAL', `xds: resource type ${def.typeUrl} is already registered`);
    const state = new TypeState<T>(def);
    this.types.set(def.typeUrl, state as TypeState<unknown>);
    return state;
  }

  get(typeUrl: string): TypeState<unknown> | undefined {
    return this.types.get(typeUrl);
  }

  all(): IterableIterator<TypeState<unknown>> {
    return this.types.values();
  }

  // ───────────── watches ─────────────

  watch<T>(typeUrl: string, name: string, watcher: XdsWatcher<T>): () => void {
    const state = this.types.get(typeUrl) as TypeState<T> | undefined;
    if (!state) throw new MeshletError('MESHLET_ERR_INTERNAL', `xds: resource type ${typeUrl} is not registered`);
    if (name === '*') {
      if (!state.def.wildcard)
        throw new MeshletError(
          'MESHLET_ERR_INTERNAL',
          `xds: ${shortTypeName(typeUrl)} does not support wildcard watches`,
        );
      const first = state.wildcardWatchers.size === 0;
      state.wildcardWatchers.add(watcher);
      for (const entry of state.resources.values()) {
        if (entry.value !== undefined) this.notifier.enqueueFor(state, Note.Changed, entry, watcher);
      }
      if (first && !state.receivedResponse) this.startWildcardTimer(state);
      if (first) this.onInterestChanged(typeUrl);
    } else {
      let set = state.watchers.get(name);
      const first = !set;
      if (!set) {
        set = new Set();
        state.watchers.set(name, set);
      }
      set.add(watcher);
      let entry = state.resources.get(name);
      if (!entry) {
        entry = { name, version: '', status: 'REQUESTED' };
        state.resources.set(name, entry);
        this.startTimer(state, entry);
      }
      if (entry.value !== undefined) this.notifier.enqueueFor(state, Note.Changed, entry, watcher);
      else if (entry.status === 'DOES_NOT_EXIST') this.notifier.enqueueFor(state, Note.DoesNotExist, entry, watcher);
      if (first) this.onInterestChanged(typeUrl);
    }
    this.notifier.scheduleFlush();
    let cancelled = false;
    return () => {
      if (cancelled) return;
      cancelled = true;
      this.unwatch(state, name, watcher);
    };
  }

  private unwatch<T>(state: TypeState<T>, name: string, watcher: XdsWatcher<T>): void {
    if (name === '*') {
      if (!state.wildcardWatchers.delete(watcher) || state.wildcardWatchers.size > 0) return;
      clearTimeout(state.wildcardTimer);
      state.wildcardTimer = undefined;
      // No longer subscribed to everything: forget what nobody names.
      for (const [n, entry] of state.resources) {
        if (!state.watchers.has(n)) this.drop(state, entry);
      }
      this.onInterestChanged(state.typeUrl);
      return;
    }
    const set = state.watchers.get(name);
    if (!set?.delete(watcher) || set.size > 0) return;
    state.watchers.delete(name);
    if (!state.isWildcard()) {
      const entry = state.resources.get(name);
      if (entry) this.drop(state, entry);
    }
    this.onInterestChanged(state.typeUrl);
  }

  private drop<T>(state: TypeState<T>, entry: CachedResource<T>): void {
    clearTimeout(entry.timer);
    state.resources.delete(entry.name);
  }

  // ───────────── timers ─────────────

  /**
   * Start the initial-fetch timers (client start): from now on, every watched name that has not
   * arrived within the timeout is reported as not existing.
   */
  armTimers(): void {
    if (this.armed) return;
    this.armed = true;
    for (const state of this.types.values()) {
      if (state.isWildcard() && !state.receivedResponse) this.startWildcardTimer(state);
      for (const entry of state.resources.values()) {
        if (entry.status === 'REQUESTED' && entry.value === undefined && !entry.timer) this.startTimer(state, entry);
      }
    }
  }

  private startTimer<T>(state: TypeState<T>, entry: CachedResource<T>): void {
    if (!this.armed || this.initialFetchTimeoutMs <= 0) return;
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (entry.value !== undefined || entry.status !== 'REQUESTED' || state.resources.get(entry.name) !== entry)
        return;
      logger('xds').warn(
        { type: shortTypeName(state.typeUrl), name: entry.name },
        'xds: resource not received within the initial fetch timeout',
      );
      entry.status = 'DOES_NOT_EXIST';
      this.notifier.enqueue(state, Note.DoesNotExist, entry);
      this.notifier.flush();
    }, this.initialFetchTimeoutMs);
    entry.timer.unref?.();
  }

  private startWildcardTimer<T>(state: TypeState<T>): void {
    if (!this.armed || this.initialFetchTimeoutMs <= 0 || state.wildcardTimer) return;
    state.wildcardTimer = setTimeout(() => {
      state.wildcardTimer = undefined;
      if (state.receivedResponse) return;
      logger('xds').warn({ type: shortTypeName(state.typeUrl) }, 'xds: no response within the initial fetch timeout');
      for (const w of state.wildcardWatchers)
        this.notifier.push({
          kind: Note.DoesNotExist,
          state: state as TypeState<unknown>,
          name: '*',
          only: w as XdsWatcher<unknown>,
        });
      this.notifier.flush();
    }, this.initialFetchTimeoutMs);
    state.wildcardTimer.unref?.();
  }

  /** Stop every timer (client close). Cached values stay readable. */
  stopTimers(): void {
    this.armed = false;
    for (const state of this.types.values()) {
      clearTimeout(state.wildcardTimer);
      state.wildcardTimer = undefined;
      for (const entry of state.resources.values()) {
        clearTimeout(entry.timer);
        entry.timer = undefined;
      }
    }
  }

  // ───────────── applying responses ─────────────

  /**
   * Apply a state-of-the-world response. Valid resources are applied even when others are invalid
   * (as Envoy's LDS/CDS and gRPC's A46 do); the response as a whole is then NACKed and every
   * rejected resource keeps its last accepted value. For LDS/CDS a resource absent from the
   * response is removed, unless a resource could not even be named (then nothing is removed).
   */
  applySotw<T>(state: TypeState<T>, version: string, parsed: readonly ParsedResource<T>[]): ApplyOutcome {
    const now = new Date();
    const problems: string[] = [];
    const seen = new Set<string>();
    const duplicates = new Set<string>();
    let unnamed = false;
    for (const p of parsed) {
      if (p.name === undefined) continue;
      if (seen.has(p.name)) duplicates.add(p.name);
      else seen.add(p.name);
    }
    for (const p of parsed) {
      if (p.name === undefined) {
        unnamed = true;
        problems.push(describeIssues(shortTypeName(state.typeUrl), p));
        continue;
      }
      if (duplicates.has(p.name) || !state.wants(p.name)) continue;
      if (p.issues.length > 0) {
        const msg = describeIssues(shortTypeName(state.typeUrl), p);
        problems.push(msg);
        this.markFailed(state, p.name, version, p.issues, msg, p.raw, now);
        continue;
      }
      this.accept(state, p, version, now, false);
    }
    for (const name of duplicates) {
      const msg = `${shortTypeName(state.typeUrl)} ${quoteName(name)}: (resource): duplicate resource name in one response`;
      problems.push(msg);
      if (state.wants(name))
        this.markFailed(
          state,
          name,
          version,
          [{ path: '(resource)', message: 'duplicate resource name' }],
          msg,
          undefined,
          now,
        );
    }
    if (state.def.wildcard && !unnamed) {
      for (const entry of [...state.resources.values()]) {
        if (seen.has(entry.name)) continue;
        this.removeOrMissing(state, entry);
      }
    }
    this.firstResponseWithoutResources(state);
    return this.finish(state, version, problems, now);
  }

  /**
   * Apply a delta response: per-resource versions, explicit removals. Valid resources are applied;
   * any invalid one makes the response a NACK.
   */
  applyDelta<T>(
    state: TypeState<T>,
    systemVersion: string,
    parsed: readonly ParsedResource<T>[],
    removed: readonly string[],
  ): ApplyOutcome {
    const now = new Date();
    const problems: string[] = [];
    const seen = new Set<string>();
    const duplicates = new Set<string>();
    for (const p of parsed) {
      if (p.name === undefined) continue;
      if (seen.has(p.name)) duplicates.add(p.name);
      else seen.add(p.name);
    }
    for (const p of parsed) {
      if (p.name === undefined) {
        problems.push(describeIssues(shortTypeName(state.typeUrl), p));
        continue;
      }
      if (duplicates.has(p.name) || !state.wants(p.name)) continue;
      const version = p.version ?? '';
      if (p.issues.length > 0) {
        const msg = describeIssues(shortTypeName(state.typeUrl), p);
        problems.push(msg);
        this.markFailed(state, p.name, version, p.issues, msg, p.raw, now);
        continue;
      }
      this.accept(state, p, version, now, true);
    }
    for (const name of duplicates) {
      const msg = `${shortTypeName(state.typeUrl)} ${quoteName(name)}: (resource): duplicate resource name in one response`;
      problems.push(msg);
      if (state.wants(name))
        this.markFailed(
          state,
          name,
          '',
          [{ path: '(resource)', message: 'duplicate resource name' }],
          msg,
          undefined,
          now,
        );
    }
    for (const name of removed) {
      if (seen.has(name)) continue;
      const entry = state.resources.get(name);
      if (entry) this.removeOrMissing(state, entry);
    }
    this.firstResponseWithoutResources(state);
    return this.finish(state, systemVersion, problems, now);
  }

  /**
   * The first response of a wildcard type accepted nothing (it was empty, or all of it was
   * rejected): wildcard watchers hear '*' does-not-exist now, as they would at the initial fetch
   * timeout, so start-up does not wait for a timeout Envoy would not wait for.
   */
  private firstResponseWithoutResources<T>(state: TypeState<T>): void {
    if (state.receivedResponse || !state.isWildcard()) return;
    for (const entry of state.resources.values()) if (entry.value !== undefined) return;
    for (const w of state.wildcardWatchers)
      this.notifier.push({ kind: Note.DoesNotExist, state: state as TypeState<unknown>, name: '*', only: w as XdsWatcher<unknown> });
  }

  /**
   * Accept one valid resource. `perResource` (delta): `version` is the resource's own version and
   * is recorded even when the bytes did not change; SotW keeps the version of the last change.
   */
  private accept<T>(state: TypeState<T>, p: ParsedResource<T>, version: string, now: Date, perResource: boolean): void {
    const name = p.name as string;
    let entry = state.resources.get(name);
    if (!entry) {
      entry = { name, version: '', status: 'REQUESTED' };
      state.resources.set(name, entry);
    }
    clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.errorState = undefined;
    entry.status = 'ACKED';
    if (p.unchanged) {
      // Same bytes as the accepted copy: a delta server may still bump the per-resource version.
      if (perResource) entry.version = version;
      return;
    }
    entry.value = p.value as T;
    entry.raw = p.raw;
    entry.version = version;
    entry.lastUpdated = now;
    if (p.warnings.length > 0) this.logWarnings(state.typeUrl, name, p.warnings);
    this.notifier.enqueue(state, Note.Changed, entry);
  }

  /**
   * An accepted resource may carry fields meshlet does not honour (the decoder's warnings, the
   * same ones a static bootstrap prints at start-up). Say so, once per type, field and reason:
   * a control plane repeats the same field on every resource of every push.
   */
  private logWarnings(typeUrl: string, name: string, warnings: readonly FieldIssue[]): void {
    const type = shortTypeName(typeUrl);
    const fresh: string[] = [];
    for (const w of warnings) {
      const key = `${type}\u0000${w.path}\u0000${w.message}`;
      if (this.warned.has(key)) continue;
      if (this.warned.size < 4096) this.warned.add(key);
      fresh.push(`${w.path}: ${w.message}`);
    }
    if (fresh.length > 0)
      logger('xds').warn({ type, name, fields: fresh }, 'xds: resource accepted; these fields are not honoured');
  }

  private markFailed<T>(
    state: TypeState<T>,
    name: string,
    version: string,
    issues: readonly FieldIssue[],
    message: string,
    raw: Buffer | undefined,
    now: Date,
  ): void {
    let entry = state.resources.get(name);
    if (!entry) {
      entry = { name, version: '', status: 'REQUESTED' };
      state.resources.set(name, entry);
    }
    // The resource exists (it is just invalid): it is no longer "missing".
    clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.status = 'NACKED';
    entry.errorState = { failedVersion: version, details: message, lastUpdateAttempt: now, failedRaw: raw };
    const error: XdsResourceError = { typeUrl: state.typeUrl, name, version, issues, message };
    this.notifier.push({ kind: Note.Error, state: state as TypeState<unknown>, name, error });
  }

  private removeOrMissing<T>(state: TypeState<T>, entry: CachedResource<T>): void {
    const hadValue = entry.value !== undefined;
    clearTimeout(entry.timer);
    entry.timer = undefined;
    if (!hadValue && entry.status === 'DOES_NOT_EXIST') return;
    entry.value = undefined;
    entry.raw = undefined;
    entry.errorState = undefined;
    entry.status = 'DOES_NOT_EXIST';
    if (!state.watchers.has(entry.name)) state.resources.delete(entry.name);
    this.notifier.enqueue(state, hadValue ? Note.Removed : Note.DoesNotExist, entry);
  }

  private finish<T>(state: TypeState<T>, version: string, problems: string[], now: Date): ApplyOutcome {
    state.receivedResponse = true;
    clearTimeout(state.wildcardTimer);
    state.wildcardTimer = undefined;
    state.counters.updateAttempt++;
    if (problems.length === 0) {
      state.counters.updateSuccess++;
      state.acceptedVersion = version;
      state.lastUpdated = now;
      state.lastError = undefined;
      return { accepted: true, message: '' };
    }
    state.counters.updateRejected++;
    // Like Envoy (4 KiB gRPC status messages), error_detail is bounded: a response with 50,000 bad
    // resources must not become a multi-MiB NACK, log line and config_dump entry.
    let message = `${problems.length} invalid ${shortTypeName(state.typeUrl)} resource${problems.length === 1 ? '' : 's'} in version "${version}":`;
    let shown = 0;
    for (const p of problems) {
      if (message.length + 1 + p.length > MAX_NACK_MESSAGE) break;
      message += `\n${p}`;
      shown++;
    }
    if (shown < problems.length) message += `\n… and ${problems.length - shown} more`;
    state.lastError = { failedVersion: version, details: message, lastUpdateAttempt: now };
    return { accepted: false, message };
  }

  /**
   * A response that could not be read at all (a file-based source whose file is missing or not
   * YAML): recorded like a NACK — type-level error_state, rejected counter — and nothing changes.
   */
  rejectResponse<T>(state: TypeState<T>, version: string, message: string): ApplyOutcome {
    this.firstResponseWithoutResources(state);
    return this.finish(state, version, [message], new Date());
  }

  /** Deliver queued notifications (the stream calls this once a response is applied, before its ACK/NACK). */
  flush(): void {
    this.notifier.flush();
  }
}
