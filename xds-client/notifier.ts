/**
 * The queue of watcher notifications. Changes found while applying a response are queued and
 * delivered once the whole response is applied, before the stream sends its ACK/NACK; catch-up
 * deliveries for new watches are delivered in a microtask, so `watch()` has returned its cancel
 * function first.
 *
 * Leans towards isolation: a watcher that throws is logged and does not stop the others or the
 * stream.
 */

import { logger } from '../common/logger';
import type { CachedResource, TypeState } from './cache';
import { shortTypeName, type XdsResourceError, type XdsWatcher } from './resource-types';

export enum Note {
  Changed,
  Removed,
  DoesNotExist,
  Error,
}

export interface Notification {
  readonly kind: Note;
  readonly state: TypeState<unknown>;
  readonly name: string;
  readonly version?: string;
  readonly value?: unknown;
  readonly error?: XdsResourceError;
  /** Deliver to this watcher only (catch-up for a new watch). */
  readonly only?: XdsWatcher<unknown>;
}

/** Notification queue shared by every type. */
export class Notifier {
  private readonly queue: Notification[] = [];
  private flushScheduled = false;
  private flushing = false;

  /** Queue a raw notification. */
  push(n: Notification): void {
    this.queue.push(n);
  }

  enqueue<T>(state: TypeState<T>, kind: Note, entry: CachedResource<T>): void {
    this.queue.push({
      kind,
      state: state as TypeState<unknown>,
      name: entry.name,
      version: entry.version,
      value: entry.value,
    });
  }

  enqueueFor<T>(state: TypeState<T>, kind: Note, entry: CachedResource<T>, only: XdsWatcher<T>): void {
    this.queue.push({
      kind,
      state: state as TypeState<unknown>,
      name: entry.name,
      version: entry.version,
      value: entry.value,
      only: only as XdsWatcher<unknown>,
    });
  }

  scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Deliver queued notifications (the stream calls this once a response is applied, before its ACK/NACK). */
  flush(): void {
    if (this.flushing) return;
    this.flushing = true;
    try {
      // Callbacks may watch/cancel and so enqueue more; drain until empty.
      for (let i = 0; i < this.queue.length; i++) this.deliver(this.queue[i]);
      this.queue.length = 0;
    } finally {
      this.flushing = false;
    }
  }

  private deliver(n: Notification): void {
    if (n.only) {
      // Catch-up for one watcher: skip if it cancelled meanwhile.
      const stillWatching =
        n.state.wildcardWatchers.has(n.only) || (n.name !== '*' && n.state.watchers.get(n.name)?.has(n.only) === true);
      if (stillWatching) call(n, n.only);
      return;
    }
    const named = n.state.watchers.get(n.name);
    if (named) for (const w of [...named]) call(n, w);
    if (n.kind !== Note.DoesNotExist && n.state.isWildcard()) for (const w of [...n.state.wildcardWatchers]) call(n, w);
  }
}

function call(n: Notification, w: XdsWatcher<unknown>): void {
  try {
    switch (n.kind) {
      case Note.Changed:
        w.onChanged(n.name, n.value, n.version ?? '');
        break;
      case Note.Removed:
        w.onRemoved(n.name);
        break;
      case Note.DoesNotExist:
        w.onDoesNotExist(n.name);
        break;
      case Note.Error:
        w.onError?.(n.error as XdsResourceError);
        break;
    }
  } catch (err) {
    logger('xds').error({ err, name: n.name, type: shortTypeName(n.state.typeUrl) }, 'xds: watcher callback threw');
  }
}
