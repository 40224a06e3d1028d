/**
 * File-based xDS (Envoy's `path_config_source`, or the older `path`, on lds_config / cds_config):
 * the file holds a DiscoveryResponse (`version_info`, `resources: [{"@type": ..., ...}]`) in YAML
 * or JSON. It is read at start and again whenever it is moved into place — Envoy watches the
 * file's directory for an atomic rename (`mv`, `sed -i`, a ConfigMap's symlink swap when
 * `watched_directory` names the directory to watch).
 *
 * Every resource goes the same way as one from an ADS stream: proto encoding (unknown fields are
 * errors), the type's decoder, its asynchronous checks, then Subscriptions.applySotw. A rejected
 * file is the NACK equivalent: logged with the same per-resource message, error_state in
 * /config_dump, and the last good resources keep serving.
 */

import { promises as fsp, type FSWatcher, watch } from 'node:fs';
import path from 'node:path';
import { parseYaml } from '../common/yaml';
import type { FieldIssue } from '../common/errors';
import { logger } from '../common/logger';
import type { UpdateEvent } from './ads-stream';
import type { TypeState } from './cache';
import { runChecks } from './checks';
import { type ParsedResource, parseResource } from './parser';
import { jsonToAny } from './proto-json-encode';
import { shortTypeName } from './resource-types';
import type { Subscriptions } from './subscriptions';

const log = logger('xds');

/** Coalesces the several inotify events of one rename. */
const DEBOUNCE_MS = 25;

export interface FileSourceOptions {
  /** The DiscoveryResponse file. */
  readonly path: string;
  /** Watch this directory instead of the file's own (path_config_source.watched_directory). */
  readonly watchedDirectory?: string;
}

export class FileSource {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastText: string | undefined;
  private loading: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly state: TypeState<unknown>,
    private readonly subs: Subscriptions,
    private readonly opts: FileSourceOptions,
    private readonly onUpdate: (e: UpdateEvent) => void,
  ) {}

  /** Load the file now and watch for it being replaced. */
  start(): void {
    const dir = this.opts.watchedDirectory ?? path.dirname(this.opts.path);
    const base = path.basename(this.opts.path);
    try {
      this.watcher = watch(dir, { persistent: false }, (event, file) => {
        // A rename into the directory (or anything, when a watched_directory is given) triggers a
        // reload; in-place writes are picked up too, once the content parses.
        if (this.opts.watchedDirectory === undefined && file !== null && file !== base) return;
        void event;
        this.schedule();
      });
      this.watcher.on('error', (err) => log.warn({ dir, err: err.message }, 'xds: file watch failed'));
    } catch (err) {
      log.error({ dir, err: (err as Error).message }, 'xds: cannot watch the config directory; the file is read once');
    }
    this.schedule(0);
  }

  /** Resolves once every load scheduled so far has been applied (tests, start-up). */
  settled(): Promise<void> {
    return this.loading;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.watcher?.close();
  }

  private schedule(ms = DEBOUNCE_MS): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.loading = this.loading.then(() => this.load());
    }, ms);
    this.timer.unref?.();
  }

  private async load(): Promise<void> {
    if (this.closed) return;
    const file = this.opts.path;
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (err) {
      this.reject('', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return;
    }
    if (text === this.lastText) return;
    this.lastText = text;
    if (/\.pb(_text)?$/.test(file)) {
      this.reject('', `${file}: binary and text protobuf files are not supported by meshlet (use YAML or JSON)`);
      return;
    }
    // The bounded parser (size cap, alias limit, loads the yaml package only when called).
    const yamlResult = parseYaml(text);
    if (!yamlResult.ok) {
      const first = yamlResult.errors[0]!;
      this.reject('', `${file}: not valid YAML or JSON: ${first.path}: ${first.message}`);
      return;
    }
    const doc: unknown = yamlResult.value;
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
      this.reject('', `${file}: expected a DiscoveryResponse (an object with "resources")`);
      return;
    }
    const d = doc as Record<string, unknown>;
    const version = typeof d.version_info === 'string' ? d.version_info : typeof d.versionInfo === 'string' ? d.versionInfo : '';
    const resources = d.resources ?? [];
    if (!Array.isArray(resources)) {
      this.reject(version, `${file}: resources: expected a list`);
      return;
    }
    const parsed: ParsedResource<unknown>[] = resources.map((r, i) => this.parse(r, i));
    await runChecks(this.state, parsed);
    if (this.closed) return;
    const outcome = this.subs.applySotw(this.state, version, parsed);
    this.subs.flush();
    const type = shortTypeName(this.state.typeUrl);
    if (outcome.accepted) log.info({ type, file, version, resources: resources.length }, 'xds: file config applied');
    else log.warn({ type, file, version, rejected: outcome.message }, 'xds: file config rejected');
    this.onUpdate({ typeUrl: this.state.typeUrl, accepted: outcome.accepted, version, nonce: '', message: outcome.message, resources: resources.length });
  }

  /** One resource of the file, through the same proto encoding and decoding as one from a stream. */
  private parse(r: unknown, index: number): ParsedResource<unknown> {
    const json = r !== null && typeof r === 'object' && !Array.isArray(r) ? (r as Record<string, unknown>) : undefined;
    const name = typeof json?.name === 'string' ? json.name : typeof json?.cluster_name === 'string' ? json.cluster_name : undefined;
    try {
      const withType = json && json['@type'] === undefined ? { '@type': this.state.typeUrl, ...json } : r;
      return parseResource(this.state.def, index, jsonToAny(withType, { singleAsList: true }), this.state.cachedBytes);
    } catch (err) {
      const issues: FieldIssue[] = (err as { issues?: FieldIssue[] }).issues ?? [{ path: '(resource)', message: (err as Error).message }];
      return { index, name, unchanged: false, issues, warnings: [] };
    }
  }

  private reject(version: string, message: string): void {
    const outcome = this.subs.rejectResponse(this.state, version, message);
    this.subs.flush();
    log.warn({ type: shortTypeName(this.state.typeUrl), file: this.opts.path, rejected: message }, 'xds: file config rejected');
    this.onUpdate({ typeUrl: this.state.typeUrl, accepted: false, version, nonce: '', message: outcome.message, resources: 0 });
  }
}
