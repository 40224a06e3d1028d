/**
 * One listener: a bound socket (or a virtual listener that only receives handed-over
 * connections), listener filters, filter chain selection, TLS termination, non-terminal network
 * filters, then the chain's terminal handler.
 *
 * Config updates are make-before-break: `update()` swaps in newly built chains for new
 * connections while connections already accepted keep the chain objects they started with; the
 * old chains are drained. The bound socket is kept when the address is unchanged.
 */
import net, { type Server, type Socket } from 'node:net';
import type { FilterChainConfig, ListenerConfig, ListenerFilterConfig, ListenerFilterPredicate } from '../config/types';
import { sniff } from '../detect/sniff';
import { outcomeOf, ProtocolDetectionStats, protocolDetection } from '../detect/stats';
import type { DownstreamConnectionInfo } from '../http/codec';
import { logger } from '../../common/logger';
import { type MatchInput, needsInspection, selectFilterChain } from './filter-chain-match';
import { matcherNeedsInspection, selectByMatcher } from './filter-chain-matcher';
import { SslStats } from '../upstream/ssl-stats';
import { type ConnectionHandler, type DrainDecision, newConnectionId, type Sniffed } from './types';

const log = logger('listener');

/** A non-terminal network filter (RBAC, connection limit): may refuse a connection. */
export interface NetworkFilter {
  /** false = close the connection (the filter records why). */
  onNewConnection(socket: Socket, info: DownstreamConnectionInfo): boolean;
}

/** A built filter chain: what runs on connections matched to one FilterChainConfig. */
export interface BuiltChain {
  readonly config: FilterChainConfig;
  readonly filters: readonly NetworkFilter[];
  readonly handler: ConnectionHandler;
  /**
   * Terminate TLS when the chain has a transport socket; undefined for plaintext chains. Calls
   * back with the TLS socket and what the handshake established, or an error (connection closed).
   */
  readonly terminateTls?: (
    socket: Socket,
    info: DownstreamConnectionInfo,
    cb: (tlsSocket: Socket | undefined, tlsInfo: DownstreamConnectionInfo['tls']) => void,
    /** The listener's `ssl.*` counters. */
    ssl: SslStats,
    /** The ALPN list of the ClientHello, when the listener inspected it. */
    offeredAlpn?: readonly string[],
  ) => void;
}

export type ChainBuilder = (chain: FilterChainConfig, listener: ListenerConfig) => BuiltChain;

/** Returns the original destination of an intercepted socket, if the platform can tell. */
export type OriginalDstResolver = (socket: Socket) => { address: string; port: number } | undefined;

export class ListenerStats {
  downstreamCxTotal = 0;
  downstreamCxActive = 0;
  downstreamCxDestroy = 0;
  noFilterChainMatch = 0;
  downstreamCxOverflow = 0;
  downstreamPreCxTimeout = 0;
  downstreamCxRefused = 0;
}

export class Listener {
  readonly stats = new ListenerStats();
  /** listener.<address>.ssl.*: handshakes and their failures on this listener's TLS chains. */
  readonly ssl = new SslStats();
  /** Protocol detection time and outcomes on this listener (also summed process-wide). */
  readonly detection = new ProtocolDetectionStats(protocolDetection);
  /** Inspectors (tls/http) when every one of them has filter_disabled: checked per connection. */
  private disableableInspectors: readonly ListenerFilterConfig[] | undefined;
  private server: Server | undefined;
  private chains: BuiltChain[] = [];
  private chainConfigs: FilterChainConfig[] = [];
  private defaultChain: BuiltChain | undefined;
  private inspect = false;
  /** use_original_dst or an original_dst listener filter: ask the resolver (one getsockopt). */
  private wantsOriginalDst = false;
  private drained = false;
  /** Set by a graceful drain: chains built later (an in-place update) drain the same way. */
  private drainDecision: DrainDecision | undefined;
  /** Connections accepted and not yet closed, across all chain generations (TCP sockets). */
  private readonly sockets = new Set<Socket>();
  /**
   * TLS sockets wrapping some of those connections, kept apart so that a TLS connection counts
   * once in downstream_cx_active (close() still destroys them first).
   */
  private readonly tlsSockets = new Set<Socket>();
  /** Chains of earlier config versions still serving connections. */
  private readonly retired: BuiltChain[] = [];
  boundPort = 0;
  boundAddress = '';
  /** Set when the listener could not bind (shown as error_state in config_dump). */
  bindError: string | undefined;
  lastUpdated = new Date();

  constructor(
    public config: ListenerConfig,
    private readonly build: ChainBuilder,
    private readonly originalDst: OriginalDstResolver | undefined,
    /** For use_original_dst: find the listener that owns an original destination. */
    private readonly redirect: ((od: { address: string; port: number }) => Listener | undefined) | undefined,
  ) {
    this.buildChains(config);
  }

  private buildChains(config: ListenerConfig): void {
    this.chains = config.filterChains.map((c) => this.build(c, config));
    this.chainConfigs = this.chains.map((c) => c.config);
    this.defaultChain = config.defaultFilterChain ? this.build(config.defaultFilterChain, config) : undefined;
    const listenerFilterKinds = new Set(config.listenerFilters.map((f) => f.kind));
    this.wantsOriginalDst = config.useOriginalDst || listenerFilterKinds.has('original_dst');
    this.inspect =
      listenerFilterKinds.has('tls_inspector') ||
      listenerFilterKinds.has('http_inspector') ||
      (config.filterChainMatcher ? matcherNeedsInspection(config.filterChainMatcher) : needsInspection(config.filterChains));
    const inspectors = config.listenerFilters.filter((f) => f.kind === 'tls_inspector' || f.kind === 'http_inspector');
    this.disableableInspectors =
      inspectors.length > 0 && inspectors.every((f) => f.filterDisabled !== undefined) ? inspectors : undefined;
  }

  /** Whether every inspector is disabled for this destination port (opaque / server-first ports). */
  private inspectionDisabled(port: number): boolean {
    const list = this.disableableInspectors;
    if (list === undefined) return false;
    for (let i = 0; i < list.length; i++) if (!predicateMatches(list[i]!.filterDisabled!, port)) return false;
    return true;
  }

  /** Bind the socket (resolves once listening; rejects with the bind error). */
  listen(): Promise<void> {
    if (!this.config.bindToPort) return Promise.resolve();
    const a = this.config.address;
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true });
    this.server = server;
    server.on('connection', (s) => this.accept(s));
    return new Promise((resolve, reject) => {
      const onErr = (e: Error): void => {
        this.bindError = e.message;
        reject(e);
      };
      server.once('error', onErr);
      const ready = (): void => {
        server.removeListener('error', onErr);
        server.on('error', (e) => log.error({ listener: this.config.name, err: e.message }, 'listener socket error'));
        const addr = server.address();
        if (addr && typeof addr === 'object') {
          this.boundPort = addr.port;
          this.boundAddress = addr.address;
        }
        resolve();
      };
      if (a.kind === 'pipe') server.listen(a.path, ready);
      else server.listen({ host: a.host, port: a.port, backlog: 1024 }, ready);
    });
  }

  /** Same address, new config: new connections get the new chains; old chains drain. */
  update(config: ListenerConfig): void {
    const old = [...this.chains];
    if (this.defaultChain) old.push(this.defaultChain);
    this.config = config;
    this.buildChains(config);
    this.lastUpdated = new Date();
    for (const c of old) {
      c.handler.drain?.();
      this.retired.push(c);
    }
    if (this.drainDecision !== undefined) this.drainChains(this.drainDecision);
    this.pruneRetired();
  }

  private pruneRetired(): void {
    for (let i = this.retired.length - 1; i >= 0; i--) {
      if (this.retired[i]!.handler.activeConnections === 0) this.retired.splice(i, 1);
    }
  }

  get activeConnections(): number {
    return this.sockets.size;
  }

  /** Some filter chain terminates TLS (its ssl.* counters are reported). */
  get hasTls(): boolean {
    if (this.defaultChain?.terminateTls) return true;
    for (const c of this.chains) if (c.terminateTls) return true;
    return false;
  }

  /** Entry point for accepted sockets, also used when another listener hands a connection over. */
  accept(socket: Socket, handedOver?: { info: DownstreamConnectionInfo }): void {
    if (this.drained && !handedOver) {
      this.stats.downstreamCxRefused++;
      socket.destroy();
      return;
    }
    const max = this.config.maxConnections;
    if (max !== undefined && this.sockets.size >= max) {
      this.stats.downstreamCxOverflow++;
      socket.destroy();
      return;
    }
    this.stats.downstreamCxTotal++;
    this.stats.downstreamCxActive++;
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.stats.downstreamCxActive--;
      this.stats.downstreamCxDestroy++;
    });
    socket.on('error', swallow);
    socket.setNoDelay(true);

    let info = handedOver?.info;
    if (!info) {
      // As Envoy: the original destination is read only where configured (use_original_dst or
      // the original_dst listener filter), so plain listeners pay no syscall per connection.
      const od = this.wantsOriginalDst && this.originalDst !== undefined ? this.originalDst(socket) : undefined;
      info = {
        id: newConnectionId(),
        remoteAddress: normalize(socket.remoteAddress ?? ''),
        remotePort: socket.remotePort ?? 0,
        localAddress: normalize(socket.localAddress ?? ''),
        localPort: socket.localPort ?? 0,
        originalDst: od,
      };
      // Envoy's use_original_dst: hand the connection to the listener bound to the original
      // destination (virtual outbound/inbound listeners), if there is one other than us.
      if (this.config.useOriginalDst && od && this.redirect) {
        const target = this.redirect(od);
        if (target && target !== this) {
          this.sockets.delete(socket);
          this.stats.downstreamCxActive--;
          target.accept(socket, { info });
          return;
        }
      }
    }
    if (this.inspect && this.inspectionDisabled(info.originalDst?.port ?? info.localPort)) {
      this.detection.skipped();
      this.dispatch(socket, info, undefined);
    } else if (this.inspect) {
      const connInfo = info;
      const started = performance.now();
      sniff(socket, this.config.listenerFiltersTimeoutMs, (sniffed, timedOut) => {
        this.detection.observe(performance.now() - started, outcomeOf(sniffed, timedOut));
        if (!sniffed && !this.config.continueOnListenerFiltersTimeout && socket.readableLength === 0 && !socket.destroyed) {
          // Envoy closes on listener filter timeout unless told to continue; an opaque
          // server-first protocol needs continue_on_listener_filters_timeout: true.
          this.stats.downstreamPreCxTimeout++;
          socket.destroy();
          return;
        }
        this.dispatch(socket, connInfo, sniffed);
      });
    } else {
      this.dispatch(socket, info, undefined);
    }
  }

  private dispatch(socket: Socket, info: DownstreamConnectionInfo, sniffed: Sniffed | undefined): void {
    if (socket.destroyed) return;
    const local = info.originalDst ?? { address: info.localAddress, port: info.localPort };
    const input: MatchInput = {
      destinationPort: local.port,
      destinationIp: local.address,
      serverName: sniffed?.sni,
      transportProtocol: sniffed?.transport ?? 'raw_buffer',
      applicationProtocols: sniffed?.alpn ?? applicationOf(sniffed),
      sourceIp: info.remoteAddress,
      sourcePort: info.remotePort,
    };
    const matcher = this.config.filterChainMatcher;
    const chain =
      (matcher ? selectByMatcher(matcher, this.chainConfigs, input).chain : selectFilterChain(this.chainConfigs, input)) ??
      this.defaultChain?.config;
    const built = chain ? (this.chains.find((c) => c.config === chain) ?? this.defaultChain) : undefined;
    if (!built) {
      this.stats.noFilterChainMatch++;
      log.debug({ listener: this.config.name, conn: info.id }, 'no filter chain matched; closing');
      socket.destroy();
      return;
    }
    if (built.terminateTls) {
      built.terminateTls(socket, info, (tlsSocket, tls) => {
        if (!tlsSocket) {
          socket.destroy();
          return;
        }
        this.tlsSockets.add(tlsSocket);
        tlsSocket.once('close', () => this.tlsSockets.delete(tlsSocket));
        const tlsInfo: DownstreamConnectionInfo = { ...info, tls };
        const alpn = tls?.alpn;
        const app = alpn === 'h2' ? 'h2' : alpn === 'http/1.1' ? 'http/1.1' : undefined;
        this.runChain(built, tlsSocket, tlsInfo, { transport: 'tls', sni: tls?.sni, alpn: sniffed?.alpn, application: app });
      }, this.ssl, sniffed?.alpn);
      return;
    }
    this.runChain(built, socket, info, sniffed);
  }

  /** filter_chain_matcher's result: a name with no chain is a failed match (Envoy). */
  private runChain(built: BuiltChain, socket: Socket, info: DownstreamConnectionInfo, sniffed: Sniffed | undefined): void {
    for (const f of built.filters) {
      if (!f.onNewConnection(socket, info)) {
        socket.destroy();
        return;
      }
    }
    // Accepted sockets start paused (pauseOnConnect, or paused after sniffing). Handlers get a
    // flowing socket; one that must hold data (the TCP proxy while it connects) pauses it
    // synchronously in handle(), before any I/O callback can run.
    socket.resume();
    built.handler.handle(socket, info, sniffed);
  }

  /** Stop accepting; ask every chain to drain its live connections (at once without a decision). */
  drain(decision?: DrainDecision): void {
    this.stopAccepting();
    this.drainChains(decision);
  }

  /**
   * Envoy's graceful drain (drain_listeners?graceful, shutdown): keep accepting, and let every
   * connection — live or accepted from now on — drain by `decision`. stopAccepting() ends it.
   */
  drainGracefully(decision: DrainDecision): void {
    this.drainDecision = decision;
    this.drainChains(decision);
  }

  /** Refuse new connections (the bound socket closes; handed-over ones are refused too). */
  stopAccepting(): void {
    this.drained = true;
    this.server?.close();
  }

  private drainChains(decision: DrainDecision | undefined): void {
    for (const c of this.chains) c.handler.drain?.(decision);
    if (this.defaultChain) this.defaultChain.handler.drain?.(decision);
  }

  /** Stop accepting and close every connection now. */
  async close(): Promise<void> {
    this.drain();
    for (const s of this.tlsSockets) s.destroy();
    this.tlsSockets.clear();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((r) => (this.server && this.server.listening ? this.server.close(() => r()) : r()));
  }
}

function swallow(): void {}

/** What http_inspector reports: HTTP/2 with prior knowledge on a plaintext connection is "h2c". */
const H2C: readonly string[] = ['h2c'];
const H2: readonly string[] = ['h2'];
const HTTP11: readonly string[] = ['http/1.1'];
const HTTP10: readonly string[] = ['http/1.0'];
function applicationOf(sniffed: Sniffed | undefined): readonly string[] | undefined {
  switch (sniffed?.application) {
    case 'h2':
      return sniffed.transport === 'tls' ? H2 : H2C;
    case 'http/1.1':
      return HTTP11;
    case 'http/1.0':
      return HTTP10;
    default:
      return undefined;
  }
}

/** Envoy's ListenerFilterChainMatchPredicate over the destination port. */
export function predicateMatches(p: ListenerFilterPredicate, port: number): boolean {
  switch (p.kind) {
    case 'any':
      return true;
    case 'destination_port_range':
      return port >= p.start && port < p.end;
    case 'not':
      return !predicateMatches(p.rule, port);
    case 'or':
      for (const r of p.rules) if (predicateMatches(r, port)) return true;
      return false;
    case 'and':
      for (const r of p.rules) if (!predicateMatches(r, port)) return false;
      return true;
  }
}

function normalize(ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip;
}
