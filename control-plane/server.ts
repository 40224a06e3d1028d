/**
 * The embedded control plane's ADS server: a real xDS v3 `AggregatedDiscoveryService` on
 * @grpc/grpc-js (both `StreamAggregatedResources` and `DeltaAggregatedResources`) serving the mesh
 * of one YAML file, with workload certificates from the development CA.
 *
 * Security (issue 18): every ADS stream is authenticated (a service-account token verified
 * against the configured JWKS, or on the TLS port a client certificate this CA issued) and may
 * only receive the configuration of a workload running as that service account; workload private
 * keys are never sent — workloads generate their keys and obtain certificates by CSR on the TLS
 * port (csr-service.ts) — unless the operator turns on `insecureSendPrivateKeys` for local
 * development. Every stream and CSR is logged with the caller's peer address.
 *
 * Owns the process-level pieces: the gRPC server, the current mesh (and watching its file: a
 * changed file is re-validated and, if valid, pushed to every stream; if invalid, the error is
 * logged with every problem's path and the previous mesh keeps being served), and fan-out of
 * certificate rotations to the streams of the rotated workload. Per-stream protocol state lives in
 * ads-stream.ts, resource generation in generate.ts (with generate-outbound.ts,
 * generate-inbound.ts and generate-shared.ts), versioning in snapshot.ts.
 * Leans towards keeping the last good state: nothing a user edits can take configuration away
 * from running sidecars except a valid mesh that no longer lists them.
 */

import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { DevCa, type IssuedCertificate } from '../certs/dev-ca';
import { formatIssues } from '../common/errors';
import { logger } from '../common/logger';
import {
  adsServiceDefinition,
  type DeltaDiscoveryRequestProto,
  type DeltaDiscoveryResponseProto,
  type DiscoveryRequestProto,
  type DiscoveryResponseProto,
  TYPE_URLS,
} from '../xds-client/protos';
import { csdsHandlers, csdsServiceDefinition } from '../xds-client/csds';
import { type AdsStream, DeltaStream, SotwStream, type StreamCaller, type StreamHost } from './ads-stream';
import { authenticateCall, TokenAuthenticator, type TokenAuthOptions } from './caller-auth';
import { clientConfigs } from './csds';
import { csrServiceDefinition } from '../certs/csr-wire';
import { createCertificateHandler, secureServerCredentials } from './csr-service';
import { CertIssuer, workloadKey } from './issuer';
import { peerHost, RootRoll, type RootRollStatus } from './root-roll';
import { findWorkload, type Mesh, type MeshWorkload, parseMesh, parseMeshOrThrow } from './mesh';
import { SnapshotCache } from './snapshot';

/** How long a changed mesh file must stay unchanged before it is applied. */
const SETTLE_MS = 50;

export interface ControlPlaneOptions {
  /** The mesh file to serve and watch. Either this or `mesh`. */
  readonly meshFile?: string;
  /** A mesh to serve (no file watching). */
  readonly mesh?: Mesh;
  /** Listen address. Default 127.0.0.1. */
  readonly host?: string;
  /** Listen port; 0 picks a free one. Default 15010 (Istio's plaintext xDS port). */
  readonly port?: number;
  /** The CA; default a new in-memory one (or one kept in `caDir`) for the mesh's trust domain. */
  readonly ca?: DevCa;
  /** Directory holding (or to hold) the CA root. */
  readonly caDir?: string;
  /** Workload certificate lifetime, ms (default 1 h). */
  readonly certLifetimeMs?: number;
  /** Re-issue after this long, ms (default half the lifetime). */
  readonly certRotateAfterMs?: number;
  /** Watch the mesh file and apply changes (default true); false = only on `reload()`. */
  readonly watchMeshFile?: boolean;
  /** Mesh file polling interval, ms, in addition to fs.watch (default 1000; 0 = watch only). */
  readonly watchIntervalMs?: number;
  readonly log?: Logger;
  /**
   * The TLS port (istiod's 15012): CreateCertificate (see csr-service.ts) and ADS, with a
   * CA-issued serving certificate; client certificates accepted, tokens too. 0 = any free port;
   * undefined = off (then workloads can only get certificates in insecureSendPrivateKeys mode).
   */
  readonly csrPort?: number;
  /** Service-account token verification (JWKS, issuer, audiences); absent = no token accepted. */
  readonly tokenAuth?: TokenAuthOptions;
  /**
   * LOCAL DEVELOPMENT ONLY: send each workload's certificate *with its private key* over SDS
   * (the `default` secret). Off by default: workloads generate keys and use CSR.
   */
  readonly insecureSendPrivateKeys?: boolean;
  /**
   * LOCAL DEVELOPMENT ONLY: accept ADS streams that present no credentials at all (the node id is
   * trusted). Off by default. A presented but invalid credential is refused either way.
   */
  readonly insecureAllowUnauthenticatedAds?: boolean;
  /** Root roll: how often the roll and the CA directory are looked at, ms (default 1000). */
  readonly rollPollMs?: number;
  /** Root roll: the least time each phase lasts, ms (default 5000). */
  readonly rollSettleMs?: number;
}

/** Result of a mesh reload attempt. */
export type ReloadResult =
  | { readonly ok: true; readonly changed: boolean }
  | { readonly ok: false; readonly error: string };

export class ControlPlaneServer {
  private readonly streams = new Set<AdsStream>();
  private watcher?: FSWatcher;
  private pollTimer?: NodeJS.Timeout;
  private debounce?: NodeJS.Timeout;
  private lastText?: string;
  private reloading: Promise<ReloadResult> = Promise.resolve({ ok: true, changed: false });
  /** The last rejected mesh file's error, cleared by a successful reload. */
  lastMeshError?: string;
  private readonly host: StreamHost;
  private readonly tokens?: TokenAuthenticator;
  private csrServer?: grpc.Server;
  /** Bound port of the CSR service, when enabled. */
  csrPort?: number;
  private readonly roll: RootRoll;

  private constructor(
    private readonly server: grpc.Server,
    readonly port: number,
    readonly address: string,
    readonly cache: SnapshotCache,
    readonly issuer: CertIssuer,
    readonly ca: DevCa,
    private readonly opts: ControlPlaneOptions,
    private readonly log: Logger,
    text: string | undefined,
    tokens: TokenAuthenticator | undefined,
  ) {
    this.lastText = text;
    this.tokens = tokens;
    this.host = {
      cache,
      issuer,
      log,
      identifier: `meshlet-control-plane@${address}`,
      sendPrivateKeys: opts.insecureSendPrivateKeys === true,
      findWorkload: (id) => findWorkload(this.cache.mesh, id),
      closed: (s) => this.streams.delete(s),
    };
    this.roll = new RootRoll({
      ca,
      dir: opts.caDir,
      streams: () =>
        [...this.streams].flatMap((s) => {
          if (!s.workload) return [];
          const st = s.secretsState();
          return [{ spiffeId: s.workload.spiffeId, host: peerHost(s.caller.peer), holdsSecrets: st.subscribed, secretsAcked: st.acked }];
        }),
      onPromoted: () => issuer.reissueAll(),
      pollMs: opts.rollPollMs,
      settleMs: opts.rollSettleMs,
      log,
    });
    issuer.on('issued', (key: string, w: MeshWorkload, cert: IssuedCertificate) => {
      for (const s of this.streams) {
        if (!s.workload || workloadKey(s.workload) !== key) continue;
        s.push(TYPE_URLS.secret);
        if (this.opts.insecureSendPrivateKeys && cert.rootCertPem === ca.rootCertPem) this.roll.noteLeaf(w.spiffeId, peerHost(s.caller.peer));
      }
    });
    // A root roll changed the trust bundle: every stream gets the new ROOTCA.
    ca.on('trust-bundle', () => {
      for (const s of this.streams) s.push(TYPE_URLS.secret);
    });
  }

  /**
   * Start rolling the root (see root-roll.ts): a new root is added to the trust bundle now; the
   * control plane takes the roll to its end as workloads ACK and renew.
   */
  rollRoot(): Promise<void> {
    return this.roll.begin();
  }

  /** Where a root roll stands, and which connected workloads it waits for. */
  rootRollStatus(): RootRollStatus {
    return this.roll.status();
  }

  /** Load the mesh (throws a readable ConfigError if invalid), create the CA, bind and serve. */
  static async start(opts: ControlPlaneOptions): Promise<ControlPlaneServer> {
    const log = opts.log ?? logger('control-plane');
    let mesh = opts.mesh;
    let text: string | undefined;
    if (!mesh) {
      if (!opts.meshFile) throw new TypeError('ControlPlaneServer.start: meshFile or mesh is required');
      text = await readFile(opts.meshFile, 'utf8');
      const parsed = parseMeshOrThrow(text, opts.meshFile);
      for (const w of parsed.warnings) log.warn({ path: w.path }, `mesh file: ${w.message}`);
      mesh = parsed.mesh;
    }
    const ca = opts.ca ?? (await DevCa.create({ trustDomain: mesh.trustDomain, dir: opts.caDir }));
    if (ca.trustDomain !== mesh.trustDomain) {
      throw new TypeError(`the CA issues trust domain "${ca.trustDomain}" but the mesh uses "${mesh.trustDomain}"`);
    }
    let tokens: TokenAuthenticator | undefined;
    if (opts.tokenAuth) {
      tokens = new TokenAuthenticator(opts.tokenAuth);
      await tokens.init();
    }
    const issuer = new CertIssuer(ca, { lifetimeMs: opts.certLifetimeMs, rotateAfterMs: opts.certRotateAfterMs, log });
    const cache = new SnapshotCache(mesh, issuer);
    const server = new grpc.Server({ 'grpc.keepalive_permit_without_calls': 1 });
    const hostAddr = opts.host ?? '127.0.0.1';
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${hostAddr}:${opts.port ?? 15010}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      );
    });
    const cp = new ControlPlaneServer(server, port, `${hostAddr}:${port}`, cache, issuer, ca, opts, log, text, tokens);
    cp.addAds(server);
    await cp.roll.start();
    // CSDS: what each connected sidecar was sent and ACKed (`meshlet proxy-status`).
    server.addService(csdsServiceDefinition(), csdsHandlers((req) => clientConfigs(cp.streamStatus(), req)));
    if (opts.meshFile && opts.watchMeshFile !== false) cp.watchMeshFile(opts.meshFile);
    if (opts.csrPort !== undefined) await cp.startCsrService(hostAddr, opts.csrPort, log);
    if (opts.insecureSendPrivateKeys) {
      log.warn('INSECURE: workload private keys are sent over SDS to ADS callers (local development only)');
    }
    if (opts.insecureAllowUnauthenticatedAds) {
      log.warn('INSECURE: ADS callers without credentials are accepted; the node id they name is trusted (local development only)');
    }
    if (!tokens && opts.csrPort === undefined && !opts.insecureAllowUnauthenticatedAds) {
      log.warn('no token authentication and no TLS port: no workload can authenticate to this control plane');
    }
    log.info(
      { address: cp.address, trustDomain: mesh.trustDomain, workloads: mesh.workloads.length },
      'control plane serving ADS',
    );
    return cp;
  }

  get mesh(): Mesh {
    return this.cache.mesh;
  }

  /** Serve a new (already validated) mesh and push what changed to every stream. */
  setMesh(mesh: Mesh): void {
    if (mesh.trustDomain !== this.ca.trustDomain) {
      throw new TypeError(
        `the mesh's trust domain "${mesh.trustDomain}" differs from the CA's "${this.ca.trustDomain}"; restart to change it`,
      );
    }
    this.cache.setMesh(mesh);
    for (const s of this.streams) s.meshChanged();
  }

  /** Re-read the mesh file now. Invalid content is rejected; the previous mesh stays. */
  reload(): Promise<ReloadResult> {
    this.reloading = this.reloading.then(() => this.doReload());
    return this.reloading;
  }

  /** Streams' protocol status (node, per-type versions, ACK/NACK counts, last NACK error). */
  streamStatus(): ReturnType<AdsStream['status']>[] {
    return [...this.streams].map((s) => s.status());
  }

  /** Serve both ADS variants on `server`; every stream is authenticated before it is read. */
  private addAds(server: grpc.Server): void {
    server.addService(adsServiceDefinition(), {
      StreamAggregatedResources: ((call: grpc.ServerDuplexStream<DiscoveryRequestProto, DiscoveryResponseProto>) => {
        void this.admit(call, (caller) => new SotwStream(this.host, call, caller));
      }) as grpc.handleBidiStreamingCall<DiscoveryRequestProto, DiscoveryResponseProto>,
      DeltaAggregatedResources: ((
        call: grpc.ServerDuplexStream<DeltaDiscoveryRequestProto, DeltaDiscoveryResponseProto>,
      ) => {
        void this.admit(call, (caller) => new DeltaStream(this.host, call, caller));
      }) as grpc.handleBidiStreamingCall<DeltaDiscoveryRequestProto, DeltaDiscoveryResponseProto>,
    });
  }

  /** Authenticate a new ADS call, then hand it to a stream (requests wait in the call's buffer). */
  private async admit(
    call: grpc.ServerDuplexStream<unknown, unknown>,
    open: (caller: StreamCaller) => AdsStream,
  ): Promise<void> {
    const peer = call.getPeer();
    const auth = await authenticateCall(call, this.ca.trustDomain, this.tokens);
    if (!auth.ok && !(auth.anonymous && this.opts.insecureAllowUnauthenticatedAds)) {
      this.log.warn({ peer, reason: auth.reason }, 'ADS stream refused: caller not authenticated');
      call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: auth.reason } as grpc.ServiceError);
      return;
    }
    if (call.cancelled) return;
    this.streams.add(open({ peer, identity: auth.ok ? auth.identity : undefined }));
  }

  private async startCsrService(hostAddr: string, port: number, log: Logger): Promise<void> {
    const server = new grpc.Server({ 'grpc.keepalive_permit_without_calls': 1 });
    server.addService(csrServiceDefinition(), {
      CreateCertificate: createCertificateHandler({
        ca: this.ca,
        isKnownIdentity: (id) => this.cache.mesh.workloads.some((w) => w.spiffeId === id),
        tokens: this.tokens,
        lifetimeMs: this.issuer.lifetimeMs,
        log,
        onSigned: (spiffeId, peer) => this.roll.noteLeaf(spiffeId, peerHost(peer)),
      }),
    });
    this.addAds(server);
    const creds = await secureServerCredentials(this.ca);
    this.csrPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${hostAddr}:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p)));
    });
    this.csrServer = server;
    log.info({ address: `${hostAddr}:${this.csrPort}` }, 'serving CreateCertificate and ADS over TLS');
  }

  async close(): Promise<void> {
    this.roll.stop();
    this.csrServer?.forceShutdown();
    this.watcher?.close();
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.debounce) clearTimeout(this.debounce);
    for (const s of [...this.streams]) s.close();
    this.issuer.close();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000);
      t.unref();
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  private async doReload(): Promise<ReloadResult> {
    const file = this.opts.meshFile;
    if (!file) return { ok: true, changed: false };
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      const error = `cannot read mesh file ${file}: ${(err as Error).message}`;
      this.log.error({ file }, `${error}; still serving the previous mesh`);
      this.lastMeshError = error;
      return { ok: false, error };
    }
    if (text === this.lastText) return { ok: true, changed: false };
    // A file being written (not replaced atomically) can be read half-way: only apply content that
    // is still the same a moment later; the next watch event or poll picks up the rest.
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    let again: string;
    try {
      again = await readFile(file, 'utf8');
    } catch {
      return { ok: true, changed: false };
    }
    if (again !== text) return { ok: true, changed: false };
    this.lastText = text;
    const r = parseMesh(text);
    if (!r.ok) {
      const error = `mesh file ${file} is invalid (${r.errors.length} problem${r.errors.length === 1 ? '' : 's'}):\n${formatIssues(r.errors)}`;
      this.log.error({ file, issues: r.errors }, `${error}\nstill serving the previous mesh`);
      this.lastMeshError = error;
      return { ok: false, error };
    }
    if (r.mesh.trustDomain !== this.ca.trustDomain) {
      const error = `mesh file ${file}: trust_domain changed from "${this.ca.trustDomain}" to "${r.mesh.trustDomain}"; restart the control plane to change it`;
      this.log.error({ file }, `${error}; still serving the previous mesh`);
      this.lastMeshError = error;
      return { ok: false, error };
    }
    for (const w of r.warnings) this.log.warn({ path: w.path }, `mesh file: ${w.message}`);
    this.lastMeshError = undefined;
    this.setMesh(r.mesh);
    this.log.info({ file, workloads: r.mesh.workloads.length }, 'mesh reloaded and pushed');
    return { ok: true, changed: true };
  }

  private watchMeshFile(file: string): void {
    const schedule = () => {
      if (this.debounce) clearTimeout(this.debounce);
      this.debounce = setTimeout(() => void this.reload(), 50);
      this.debounce.unref();
    };
    try {
      // Watch the directory: editors and ConfigMap updates replace the file rather than write it.
      const name = basename(file);
      this.watcher = watch(dirname(file), { persistent: false }, (_ev, f) => {
        if (!f || f === name || f === '..data') schedule();
      });
      this.watcher.on('error', () => this.watcher?.close());
    } catch {
      // polling below covers it
    }
    const interval = this.opts.watchIntervalMs ?? 1000;
    if (interval > 0) {
      this.pollTimer = setInterval(() => void this.reload(), interval);
      this.pollTimer.unref();
    }
  }
}
