/**
 * What the two ADS stream variants share: one gRPC bidi call, the node sent on the first request
 * (or on every request unless set_node_on_first_message_only), and the "pause" while a response is
 * applied: watchers are notified, then the ACK/NACK is sent, then any subscription a watcher made
 * from inside its callback (Envoy pauses EDS/RDS requests during CDS/LDS updates the same way).
 *
 * Leans towards ordering over latency: apply, ACK/NACK, then subscription changes.
 */

import type * as grpc from '@grpc/grpc-js';
import { logger } from '../common/logger';
import type { TypeState } from './cache';
import { runChecks } from './checks';
import type { ParsedResource } from './parser';
import type { NodeProto } from './protos';
import { SUBSCRIPTION_ORDER } from './resource-types';
import type { Subscriptions } from './subscriptions';

/** An applied response, reported for metrics and logs. */
export interface UpdateEvent {
  readonly typeUrl: string;
  readonly accepted: boolean;
  /** SotW version_info, or delta system_version_info. */
  readonly version: string;
  readonly nonce: string;
  /** NACK message when rejected. */
  readonly message: string;
  readonly resources: number;
}

/** Callbacks from a stream to the client that owns it. */
export interface StreamHooks {
  /** A response of a subscribed type arrived (the stream is healthy: reset backoff). */
  onResponse(): void;
  /** A response was applied and (N)ACKed. */
  onUpdate(event: UpdateEvent): void;
}

/** google.rpc.Code.INVALID_ARGUMENT, the code of every NACK's error_detail. */
export const NACK_CODE = 3;

/** One ADS stream (one connection attempt); the client makes a new one after every failure. */
export abstract class AdsStream<Req, Res> {
  protected nodeSent = false;
  private applying = false;
  private flushQueued = false;
  private readonly dirty = new Set<string>();
  protected closed = false;

  constructor(
    protected readonly call: grpc.ClientDuplexStream<Req, Res>,
    protected readonly subs: Subscriptions,
    private readonly node: NodeProto,
    private readonly nodeOnFirstMessageOnly: boolean,
    protected readonly hooks: StreamHooks,
  ) {
    call.on('data', (msg: Res) => {
      if (this.closed) return;
      try {
        this.onResponse(msg);
      } catch (err) {
        // A bug here must not take the process down; the response stays un-ACKed.
        logger('xds').error({ err }, 'xds: failed to handle a response');
      }
    });
  }

  /** Send the initial requests for every subscribed type, in ADS dependency order. */
  start(): void {
    const seen = new Set<string>();
    for (const url of SUBSCRIPTION_ORDER) {
      const state = this.subs.get(url);
      if (state?.isSubscribed() && !state.external) {
        seen.add(url);
        this.subscribe(state);
      }
    }
    for (const state of this.subs.all()) {
      if (!seen.has(state.typeUrl) && state.isSubscribed() && !state.external) this.subscribe(state);
    }
  }

  /**
   * The set of names watched for a type changed. Changes are coalesced: a burst of watches made in
   * one tick (or inside a response's callbacks) becomes one request per type, sent after the
   * current tick (or after the ACK).
   */
  interestChanged(typeUrl: string): void {
    if (this.closed) return;
    this.dirty.add(typeUrl);
    if (this.applying || this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      if (!this.applying) this.sendDirty();
    });
  }

  private sendDirty(): void {
    if (this.closed || this.dirty.size === 0) return;
    const pending = [...this.dirty];
    this.dirty.clear();
    for (const url of pending) {
      const state = this.subs.get(url);
      if (state && !state.external) this.subscribe(state);
    }
  }

  /** End the call (client close or replacement). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.call.cancel();
  }

  /** Send whatever request brings the server's view of this type's subscription up to date. */
  protected abstract subscribe(state: TypeState<unknown>): void;

  /** Handle one response message. */
  protected abstract onResponse(msg: Res): void;

  /** Node for the next request, or undefined when it was already sent and need not be repeated. */
  protected nodeForRequest(): NodeProto | undefined {
    if (this.nodeSent && this.nodeOnFirstMessageOnly) return undefined;
    this.nodeSent = true;
    return this.node;
  }

  protected write(req: Req): void {
    if (this.closed) return;
    try {
      this.call.write(req);
    } catch (err) {
      // A write after the call ended: the status handler reconnects.
      logger('xds').debug({ err }, 'xds: write on a finished stream');
    }
  }

  /**
   * Run the type's asynchronous checks (ResourceTypeDef.check) on `parsed`, then `apply`. Without
   * checks to run, `apply` runs now; otherwise the call is paused meanwhile so responses stay in
   * order.
   */
  protected afterChecks(state: TypeState<unknown>, parsed: ParsedResource<unknown>[], apply: () => void): void {
    const wait = runChecks(state, parsed);
    if (!wait) {
      apply();
      return;
    }
    this.call.pause();
    void wait.then(() => {
      if (this.closed) return;
      try {
        apply();
      } catch (err) {
        logger('xds').error({ err }, 'xds: failed to handle a response');
      }
      this.call.resume();
    });
  }

  /**
   * Run `apply` (which applies a response, notifies watchers and sends the ACK/NACK) with
   * subscription changes deferred, then send the deferred subscriptions.
   */
  protected withPause(apply: () => void): void {
    this.applying = true;
    try {
      apply();
      this.subs.flush();
    } finally {
      this.applying = false;
    }
    this.sendDirty();
  }
}
