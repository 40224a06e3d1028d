/**
 * RFC 9111 pieces the cache filter needs: Cache-Control directives of requests and responses,
 * freshness lifetime (s-maxage, max-age, Expires − Date) and current age. Pure functions over
 * header values; no allocation beyond the small directive object.
 */

export interface CacheControl {
  noStore: boolean;
  noCache: boolean;
  private: boolean;
  public: boolean;
  mustRevalidate: boolean;
  /** Seconds, or undefined when absent/invalid. */
  maxAge: number | undefined;
  sMaxAge: number | undefined;
}

function seconds(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const t = v.replace(/^"|"$/g, '');
  if (!/^\d+$/.test(t)) return undefined;
  return Math.min(Number(t), 2 ** 31);
}

/** Parse one Cache-Control header value (directives are case-insensitive). */
export function parseCacheControl(value: string | undefined): CacheControl {
  const cc: CacheControl = {
    noStore: false,
    noCache: false,
    private: false,
    public: false,
    mustRevalidate: false,
    maxAge: undefined,
    sMaxAge: undefined,
  };
  if (value === undefined || value === '') return cc;
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    const arg = eq < 0 ? undefined : part.slice(eq + 1).trim();
    switch (name) {
      case 'no-store':
        cc.noStore = true;
        break;
      case 'no-cache':
        // `no-cache="field"` only restricts fields; meshlet treats it like no-cache (safe side).
        cc.noCache = true;
        break;
      case 'private':
        cc.private = true;
        break;
      case 'public':
        cc.public = true;
        break;
      case 'must-revalidate':
      case 'proxy-revalidate':
        cc.mustRevalidate = true;
        break;
      case 'max-age':
        cc.maxAge = seconds(arg);
        break;
      case 's-maxage':
        cc.sMaxAge = seconds(arg);
        break;
    }
  }
  return cc;
}

/** An HTTP date in ms, or undefined when it does not parse. */
export function httpDateMs(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : t;
}

/**
 * Freshness lifetime in seconds for a shared cache: s-maxage, then max-age, then Expires − Date
 * (Date defaulting to the response time). No heuristic freshness: without these a stored
 * response is validated on every use. An invalid Expires means already expired.
 */
export function freshnessLifetimeSec(
  cc: CacheControl,
  expires: string | undefined,
  date: string | undefined,
  responseTime: number,
): number {
  if (cc.sMaxAge !== undefined) return cc.sMaxAge;
  if (cc.maxAge !== undefined) return cc.maxAge;
  if (expires !== undefined) {
    const e = httpDateMs(expires);
    if (e === undefined) return 0;
    const d = httpDateMs(date) ?? responseTime;
    return Math.max(0, Math.floor((e - d) / 1000));
  }
  return 0;
}

/** Current age in whole seconds: the upstream's age plus time resident here. */
export function currentAgeSec(initialAgeSec: number, responseTime: number, now: number): number {
  return initialAgeSec + Math.max(0, Math.floor((now - responseTime) / 1000));
}
