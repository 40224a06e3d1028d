/**
 * Example 1 — API keys at the sidecar. Requests need an `x-api-key` header naming a known
 * consumer; the key is replaced by `x-consumer` before the request goes upstream, and the
 * response tells the client who it was served as.
 */
import type { MeshletFilter } from 'meshlet/filter';

interface ApiKeyConfig {
  /** API key → consumer name. */
  keys: Record<string, string>;
  /** Path prefixes that need no key. */
  publicPrefixes?: string[];
}

export default function apiKeys(config: ApiKeyConfig): MeshletFilter<ApiKeyConfig> {
  const consumers = new Map(Object.entries(config.keys));
  const open = config.publicPrefixes ?? [];
  return {
    onRequestHeaders(request, ctx) {
      if (open.some((prefix) => request.path.startsWith(prefix))) return 'continue';
      const key = request.headers.get('x-api-key');
      const consumer = key === undefined ? undefined : consumers.get(key);
      if (consumer === undefined) {
        return { status: 401, body: 'missing or unknown API key', headers: { 'www-authenticate': 'ApiKey' } };
      }
      request.headers.remove('x-api-key');
      request.headers.set('x-consumer', consumer);
      ctx.state.set('consumer', consumer);
      ctx.setMetadata('consumer', consumer);
      return 'continue';
    },
    onResponseHeaders(response, ctx) {
      const consumer = ctx.state.get('consumer');
      if (typeof consumer === 'string') response.headers.set('x-served-as', consumer);
    },
  };
}
