import { afterEach, describe, expect, it, vi } from 'vitest';
import { logger } from '../common/logger';
import {
  clusterAny,
  endpointsAny,
  endpointsType,
  listenerAny,
  listenerType,
  RecordingWatcher,
  type TestListener,
} from '../test/support/xds-fixtures';
import { parseResource, peekName } from './parser';
import type { AnyProto } from './protos';
import { TYPE_URLS } from './protos';
import type { ResourceTypeDef } from './resource-types';
import { Subscriptions } from './subscriptions';

const LDS = TYPE_URLS.listener;
const EDS = TYPE_URLS.clusterLoadAssignment;

afterEach(() => {
  vi.useRealTimers();
});

function sotw<T>(subs: Subscriptions, def: ResourceTypeDef<T>, version: string, anys: AnyProto[]) {
  const state = subs.get(def.typeUrl);
  if (!state) throw new Error('type not registered');
  const parsed = anys.map((a, i) => parseResource(def as ResourceTypeDef<unknown>, i, a, state.cachedBytes));
  const outcome = subs.applySotw(state, version, parsed);
  subs.flush();
  return outcome;
}

describe('initial fetch timeout (fake timers)', () => {
  it('fires onDoesNotExist after exactly the configured timeout, once, and not for resources that arrived', () => {
    vi.useFakeTimers();
    const interest: string[] = [];
    const subs = new Subscriptions(15_000, (t) => interest.push(t));
    subs.register(endpointsType);
    const missing = new RecordingWatcher<unknown>();
    const present = new RecordingWatcher<unknown>();
    subs.watch(EDS, 'missing', missing);
    subs.watch(EDS, 'present', present);
    expect(interest).toEqual([EDS, EDS]);
    vi.advanceTimersByTime(60_000); // timers start with the client, not with the watch
    expect(missing.events).toEqual([]);
    subs.armTimers();
    vi.advanceTimersByTime(10_000);
    sotw(subs, endpointsType, '1', [endpointsAny('present', ['10.0.0.1:80'])]);
    vi.advanceTimersByTime(4_999);
    expect(missing.events).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(missing.events).toEqual([{ kind: 'missing', name: 'missing' }]);
    vi.advanceTimersByTime(60_000);
    expect(missing.events).toHaveLength(1);
    expect(present.events.map((e) => e.kind)).toEqual(['changed']);
  });

  it('tells wildcard watchers "*" does not exist when no response arrives in time', () => {
    vi.useFakeTimers();
    const subs = new Subscriptions(1000, () => {});
    subs.register(listenerType);
    const all = new RecordingWatcher<TestListener>();
    subs.watch(LDS, '*', all);
    subs.armTimers();
    vi.advanceTimersByTime(999);
    expect(all.events).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(all.events).toEqual([{ kind: 'missing', name: '*' }]);
  });

  it('never fires when the timeout is 0 (disabled, as in Envoy)', () => {
    vi.useFakeTimers();
    const subs = new Subscriptions(0, () => {});
    subs.register(endpointsType);
    const w = new RecordingWatcher<unknown>();
    subs.watch(EDS, 'x', w);
    subs.armTimers();
    vi.advanceTimersByTime(3_600_000);
    expect(w.events).toEqual([]);
  });
});

describe('cache behaviour', () => {
  it('does not decode again a resource whose bytes did not change', () => {
    let decodes = 0;
    const counting: ResourceTypeDef<TestListener> = {
      ...listenerType,
      decode: (json) => {
        decodes++;
        return listenerType.decode(json);
      },
    };
    const subs = new Subscriptions(0, () => {});
    subs.register(counting);
    const w = new RecordingWatcher<TestListener>();
    subs.watch(LDS, '*', w);
    const batch = Array.from({ length: 50 }, (_, i) => listenerAny(`l${i}`, 1000 + i));
    sotw(subs, counting, '1', batch);
    expect(decodes).toBe(50);
    batch[7] = listenerAny('l7', 7);
    expect(sotw(subs, counting, '2', batch).accepted).toBe(true);
    expect(decodes).toBe(51);
    expect(w.events.filter((e) => e.kind === 'changed')).toHaveLength(51);
  });

  it('delivers the cached value to a late watcher asynchronously, and not after it cancelled', async () => {
    const subs = new Subscriptions(0, () => {});
    subs.register(endpointsType);
    const first = new RecordingWatcher<unknown>();
    subs.watch(EDS, 'c', first);
    sotw(subs, endpointsType, '3', [endpointsAny('c', ['10.0.0.1:80'])]);
    const late = new RecordingWatcher<unknown>();
    subs.watch(EDS, 'c', late);
    expect(late.events).toEqual([]); // not synchronously
    expect(await late.next()).toMatchObject({ kind: 'changed', name: 'c', version: '3' });
    const cancelled = new RecordingWatcher<unknown>();
    subs.watch(EDS, 'c', cancelled)();
    await Promise.resolve();
    expect(cancelled.events).toEqual([]);
  });

  it('keeps going when a watcher throws', () => {
    const subs = new Subscriptions(0, () => {});
    subs.register(listenerType);
    const good = new RecordingWatcher<TestListener>();
    subs.watch(LDS, '*', {
      onChanged: () => {
        throw new Error('boom');
      },
      onRemoved: () => {},
      onDoesNotExist: () => {},
    });
    subs.watch(LDS, '*', good);
    sotw(subs, listenerType, '1', [listenerAny('a', 1)]);
    expect(good.events).toHaveLength(1);
  });

  it('rejects a resource of another type inside a response, and a resource without a name', () => {
    const subs = new Subscriptions(0, () => {});
    subs.register(listenerType);
    subs.watch(LDS, '*', new RecordingWatcher<TestListener>());
    const out = sotw(subs, listenerType, '1', [clusterAny('c'), listenerAny('')]);
    expect(out.accepted).toBe(false);
    expect(out.message).toContain(
      'Listener at index 0: (resource): type type.googleapis.com/envoy.config.cluster.v3.Cluster does not match',
    );
    expect(out.message).toContain('Listener at index 1: name: resource has no name');
  });
});

describe('fields an accepted resource carries that meshlet does not honour', () => {
  it('are logged once per type, field and reason, not once per resource or push', () => {
    // The listener decoder of the fixtures, plus one warning, as a real decoder's Reader.done() gives.
    const warning: ResourceTypeDef<TestListener> = {
      ...listenerType,
      decode(json) {
        const r = listenerType.decode(json);
        return { ...r, warnings: [{ path: 'per_connection_buffer_limit_bytes', message: 'not supported by meshlet, ignored' }] };
      },
    };
    const spy = vi.spyOn(logger('xds'), 'warn');
    try {
      const subs = new Subscriptions(0, () => {});
      subs.register(warning);
      subs.watch(LDS, '*', new RecordingWatcher<TestListener>());
      const out = sotw(subs, warning, '1', [listenerAny('a', 1), listenerAny('b', 2)]);
      expect(out.accepted).toBe(true);
      sotw(subs, warning, '2', [listenerAny('a', 3), listenerAny('b', 4)]);
      const lines = spy.mock.calls.filter((c) => c[1] === 'xds: resource accepted; these fields are not honoured');
      expect(lines).toHaveLength(1);
      expect(lines[0]![0]).toEqual({
        type: 'Listener',
        name: 'a',
        fields: ['per_connection_buffer_limit_bytes: not supported by meshlet, ignored'],
      });
    } finally {
      spy.mockRestore();
    }
  });
});

describe('peekName', () => {
  it('reads field 1 of every xDS resource type without decoding', () => {
    expect(peekName(Buffer.from(listenerAny('inbound|8080', 8080).value))).toBe('inbound|8080');
    expect(peekName(Buffer.from(endpointsAny('outbound|80||a', ['1.2.3.4:80']).value))).toBe('outbound|80||a');
    expect(peekName(Buffer.from([0x0a, 0x05, 0x61]))).toBeUndefined(); // truncated
    expect(peekName(Buffer.alloc(0))).toBeUndefined();
  });
});
