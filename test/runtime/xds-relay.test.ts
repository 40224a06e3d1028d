// A --concurrency worker's RelayedXdsClient behaves like XdsClient for DynamicConfig: cached values
// are delivered when a watch starts (named and wildcard), changes/removals/absence/NACKs reach the
// right watchers, snapshot() and stats() reflect what the primary relayed, and close() stops it.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { type RelayEvent, type RelayMessage, RelayedXdsClient } from '../../proxy/runtime/xds-relay';
import type { XdsWatcher } from '../../xds-client/resource-types';

const T = 'type.googleapis.com/test.Thing';
type Thing = { name: string; n: number };

function setup() {
  const ipc = new EventEmitter();
  const sent: RelayMessage[] = [];
  const c = new RelayedXdsClient(ipc as never, (m) => sent.push(m));
  c.registerType<Thing>({
    typeUrl: T,
    wildcard: true,
    decode: (j) => {
      const o = j as { name?: string; n?: number };
      return typeof o.n === 'number' ? { value: { name: o.name!, n: o.n }, errors: [], warnings: [] } : { errors: [{ path: 'n', message: 'missing' }], warnings: [] };
    },
    name: (v) => v.name,
  });
  const push = (...events: RelayEvent[]) =>
    ipc.emit('message', { meshlet: 'xds', events, stats: { connected: true, streamsStarted: 1, types: { [T]: { updateAttempt: 1, updateSuccess: 1, updateRejected: 0, version: '7' } } } });
  return { ipc, sent, c, push };
}

function recorder() {
  const log: string[] = [];
  const w: XdsWatcher<Thing> = {
    onChanged: (n, v, ver) => log.push(`changed ${n} ${v.n} v${ver}`),
    onRemoved: (n) => log.push(`removed ${n}`),
    onDoesNotExist: (n) => log.push(`absent ${n}`),
    onError: (e) => log.push(`error ${e.name} ${e.message} ${e.issues.length}`),
  };
  return { log, w };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('RelayedXdsClient', () => {
  it('says hello on start, delivers relayed events to named and wildcard watchers', async () => {
    const { sent, c, push } = setup();
    c.start();
    expect(sent).toEqual([{ meshlet: 'xds-hello' }]);
    const a = recorder();
    const all = recorder();
    c.watch(T, 'a', a.w);
    c.watch(T, '*', all.w);
    push({ t: 'changed', typeUrl: T, name: 'a', json: { name: 'a', n: 1 }, version: '1' }, { t: 'changed', typeUrl: T, name: 'b', json: { name: 'b', n: 2 }, version: '1' });
    push({ t: 'error', typeUrl: T, name: 'a', version: '2', message: 'bad n', issues: [{ path: 'n', message: 'bad' }] });
    push({ t: 'removed', typeUrl: T, name: 'b' }, { t: 'absent', typeUrl: T, name: '*' });
    expect(a.log).toEqual(['changed a 1 v1', 'error a bad n 1']);
    expect(all.log).toEqual(['changed a 1 v1', 'changed b 2 v1', 'error a bad n 1', 'removed b', 'absent *']);

    const snap = c.snapshot();
    expect(snap.connected).toBe(true);
    expect(snap.types[0]!.version_info).toBe('7');
    expect(snap.types[0]!.resources.map((r) => [r.name, r.client_status, r.error_state?.details])).toEqual([['a', 'NACKED', 'bad n']]);
    expect(snap.types[0]!.resources[0]!.resource).toEqual({ '@type': T, name: 'a', n: 1 });
    expect(c.stats().types[T]!.version).toBe('7');
  });

  it('delivers the cached value to a watch started later (in a microtask), not after cancel', async () => {
    const { c, push } = setup();
    c.start();
    push({ t: 'changed', typeUrl: T, name: 'a', json: { name: 'a', n: 5 }, version: '3' });
    const late = recorder();
    c.watch(T, 'a', late.w);
    expect(late.log).toEqual([]);
    await tick();
    expect(late.log).toEqual(['changed a 5 v3']);
    const gone = recorder();
    const cancel = c.watch(T, '*', gone.w);
    cancel();
    await tick();
    push({ t: 'changed', typeUrl: T, name: 'a', json: { name: 'a', n: 6 }, version: '4' });
    expect(gone.log).toEqual([]);
    expect(late.log).toEqual(['changed a 5 v3', 'changed a 6 v4']);
  });

  it('keeps the last value when a relayed resource does not decode, and stops on close', async () => {
    const { c, push } = setup();
    c.start();
    const a = recorder();
    c.watch(T, 'a', a.w);
    push({ t: 'changed', typeUrl: T, name: 'a', json: { name: 'a', n: 1 }, version: '1' });
    push({ t: 'changed', typeUrl: T, name: 'a', json: { name: 'a' }, version: '2' });
    expect(a.log).toEqual(['changed a 1 v1']);
    expect(c.snapshot().types[0]!.resources[0]!.version_info).toBe('1');
    c.close();
    push({ t: 'changed', typeUrl: T, name: 'a', json: { name: 'a', n: 9 }, version: '3' });
    expect(a.log).toEqual(['changed a 1 v1']);
  });
});
