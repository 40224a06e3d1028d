/**
 * meshlet's in-memory HTTP cache store: responses keyed by request (scheme, authority, path) and
 * the request values of the response's Vary headers, bounded in bytes and evicted least recently
 * used first. One store per decoded CacheConfig.
 *
 * Leans simple and bounded: a Map in recency order (a hit re-inserts its key), sizes counted as
 * body + header bytes + a fixed per-entry overhead, entries larger than the bound never stored.
 */
import type { HeaderList } from '../../codec';

/** Bytes charged per entry beyond its body and headers (keys, bookkeeping). */
const ENTRY_OVERHEAD = 256;

export interface CacheEntry {
  /** Response headers as stored (hop-by-hop and `age` removed). */
  headers: HeaderList;
  readonly body: Buffer;
  /** When the response (or its last 304 revalidation) arrived, ms since epoch. */
  responseTime: number;
  /** The `age` the upstream reported, in seconds. */
  initialAgeSec: number;
  /** Freshness lifetime in seconds (s-maxage, max-age, or Expires − Date); 0 = always validate. */
  freshnessSec: number;
  /** Cache-Control no-cache (or must-revalidate with a zero lifetime): validate on every use. */
  mustValidate: boolean;
  etag: string | undefined;
  lastModified: string | undefined;
  readonly size: number;
}

export class CacheStats {
  hits = 0;
  misses = 0;
  validated = 0;
  inserts = 0;
  evictions = 0;
  bypassed = 0;
}

export class MemoryCacheStore {
  private readonly entries = new Map<string, CacheEntry>();
  /** Vary header names last seen for a base key. */
  private readonly varyOf = new Map<string, readonly string[]>();
  private bytes = 0;
  readonly stats = new CacheStats();

  constructor(readonly maxBytes: number) {}

  get size(): number {
    return this.bytes;
  }
  get count(): number {
    return this.entries.size;
  }

  /** The vary names recorded for `base` (empty when the response had no Vary). */
  varyNames(base: string): readonly string[] {
    return this.varyOf.get(base) ?? [];
  }

  /** Look up and mark as recently used. */
  get(key: string): CacheEntry | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    this.entries.delete(key);
    this.entries.set(key, e);
    return e;
  }

  static entrySize(headers: HeaderList, body: Buffer, key: string): number {
    let n = ENTRY_OVERHEAD + key.length + body.length;
    for (let i = 0; i < headers.length; i++) n += headers[i]!.length;
    return n;
  }

  /** Store `entry` under `key` (recording base's vary names); evict LRU entries over the bound. */
  put(base: string, vary: readonly string[], key: string, entry: CacheEntry): boolean {
    if (entry.size > this.maxBytes) return false;
    this.delete(key);
    this.varyOf.set(base, vary);
    this.entries.set(key, entry);
    this.bytes += entry.size;
    this.stats.inserts++;
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= e.size;
      this.stats.evictions++;
    }
    return true;
  }

  delete(key: string): void {
    const e = this.entries.get(key);
    if (e === undefined) return;
    this.entries.delete(key);
    this.bytes -= e.size;
  }
}
