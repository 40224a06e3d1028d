/**
 * The filter chain of a connection manager, and the bookkeeping the filter manager uses to hold
 * and replay events: http_filters resolved once against the registry (non-terminal filters in
 * order, the terminal one last), the held decode/encode events of a stopped filter, and the
 * per-filter buffers of StopIterationAndBuffer (slots exist only once a filter of the stream
 * buffers).
 */
import type { HcmConfig } from '../config/types';
import { ConfigError, type FieldIssue } from '../../common/errors';
import type { HeaderList, ResponseHead } from './codec';
import type {
  AnyHttpFilterFactory,
  HttpFilterFactory,
  HttpFilterRegistry,
  TerminalHttpFilterFactory,
} from './filter';

/** One resolved filter of the chain. */
export interface ChainEntry {
  readonly name: string;
  readonly factory: HttpFilterFactory;
  readonly config: unknown;
}

/** The terminal filter closing the chain. */
export interface TerminalChainEntry {
  readonly name: string;
  readonly factory: TerminalHttpFilterFactory;
  readonly config: unknown;
}

/** http_filters resolved against the registry, once per connection manager. */
export interface ResolvedChain {
  readonly filters: readonly ChainEntry[];
  readonly terminal: TerminalChainEntry;
}

/** Resolve http_filters against the registry: non-terminal filters in order, then the terminal one. */
export function resolveFilterChain(cfg: HcmConfig, registry: HttpFilterRegistry): ResolvedChain {
  const filters: ChainEntry[] = [];
  const issues: FieldIssue[] = [];
  let terminal: TerminalChainEntry | undefined;
  cfg.httpFilters.forEach((f, i) => {
    if (f.disabled) return;
    const factory: AnyHttpFilterFactory | undefined = registry.get(f.typeName);
    if (!factory) {
      if (!f.isOptional)
        issues.push({ path: `http_filters[${i}]`, message: `filter type ${f.typeName} is not supported by meshlet` });
      return;
    }
    if (factory.terminal === true) {
      if (i !== cfg.httpFilters.length - 1)
        issues.push({ path: `http_filters[${i}]`, message: 'the router must be the last filter' });
      terminal = { name: f.name, factory, config: f.config };
      return;
    }
    filters.push({ name: f.name, factory, config: f.config });
  });
  if (!terminal) issues.push({ path: 'http_filters', message: 'the chain must end with envoy.filters.http.router' });
  if (issues.length > 0) throw new ConfigError(`http_connection_manager ${cfg.statPrefix}`, issues);
  return { filters, terminal: terminal! };
}

/** Request bytes queued behind a stopped decoder filter before reading is paused. */
export const HOLD_LIMIT_BYTES = 64 * 1024;
/** Body bytes one filter may keep with StopIterationAndBuffer (Envoy's default buffer limit). */
export const FILTER_BUFFER_LIMIT_BYTES = 1024 * 1024;
export const EVENT_DATA = 0;
export const EVENT_TRAILERS = 1;
export const EVENT_HEADERS = 2;
/** decodeStoppedKind when a filter stopped at decodeHeaders. */
export const STOPPED_AT_HEADERS = -2;

/** A response event held while an encoder filter has stopped iteration. */
export interface HeldEncode {
  readonly kind: typeof EVENT_DATA | typeof EVENT_TRAILERS | typeof EVENT_HEADERS;
  readonly head: ResponseHead | undefined;
  readonly chunk: Buffer | undefined;
  readonly trailers: HeaderList | undefined;
  readonly endStream: boolean;
  /** Replay from this filter (default: the first encoder filter). */
  readonly from?: number;
}

/** A decode event held while a filter has stopped iteration. */
export interface HeldEvent {
  readonly kind: typeof EVENT_DATA | typeof EVENT_TRAILERS;
  readonly chunk: Buffer | undefined;
  readonly endStream: boolean;
  readonly trailers: HeaderList | undefined;
  /** Replay from this filter (default 0). */
  readonly from?: number;
}

/**
 * After filter `i` handled `chunk`: when it buffers, keep the chunk and return undefined; when it
 * continues, return the chunk to pass on — prefixed with what it buffered before, if anything.
 */
export function takeBuffered(slots: (Buffer[] | undefined)[], i: number, chunk: Buffer, buffer: boolean): Buffer | undefined {
  const kept = slots[i];
  if (buffer) {
    if (kept === undefined) slots[i] = [chunk];
    else kept.push(chunk);
    return undefined;
  }
  if (kept === undefined) return chunk;
  slots[i] = undefined;
  kept.push(chunk);
  return Buffer.concat(kept);
}

export function bufferedBytes(slots: (Buffer[] | undefined)[], i: number): number {
  const kept = slots[i];
  if (kept === undefined) return 0;
  let n = 0;
  for (const b of kept) n += b.length;
  return n;
}

export function concatBuffered(slots: (Buffer[] | undefined)[], i: number): Buffer {
  const kept = slots[i] ?? [];
  slots[i] = undefined;
  return kept.length === 1 ? kept[0]! : Buffer.concat(kept);
}
