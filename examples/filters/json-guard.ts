/**
 * Example 2 — a JSON body guard. POST and PUT bodies declared as JSON are held until complete
 * ("stop"), then parsed: too large answers 413, malformed answers 400 with the parser's reason.
 * An optional async lookup shows that hooks may return Promises: a deny-list of tenants is
 * consulted before the body is read.
 */
import type { MeshletFilter } from 'meshlet/filter';

interface GuardConfig {
  /** Largest accepted body in bytes. */
  maxBytes: number;
  /** Tenants (x-tenant header) that may not write. */
  blockedTenants?: string[];
}

async function isBlocked(tenant: string | undefined, config: GuardConfig): Promise<boolean> {
  // Stands in for a lookup in a cache or a service; any Promise works within the time budget.
  await new Promise((resolve) => setTimeout(resolve, 5));
  return tenant !== undefined && (config.blockedTenants ?? []).includes(tenant);
}

const guard: MeshletFilter<GuardConfig> = {
  async onRequestHeaders(request, ctx) {
    const json = (request.headers.get('content-type') ?? '').startsWith('application/json');
    const writes = request.method === 'POST' || request.method === 'PUT';
    ctx.state.set('check', json && writes);
    if (writes && (await isBlocked(request.headers.get('x-tenant'), ctx.config))) {
      return { status: 403, body: 'tenant may not write' };
    }
    return 'continue';
  },
  onRequestBody(chunk, endOfStream, ctx) {
    if (ctx.state.get('check') !== true) return 'continue';
    if (chunk.length > ctx.config.maxBytes) return { status: 413, body: `body over ${ctx.config.maxBytes} bytes` };
    if (!endOfStream) return 'stop'; // hold it: the next call sees everything so far
    try {
      JSON.parse(chunk.toString('utf8'));
    } catch (err) {
      return { status: 400, body: `invalid JSON: ${(err as Error).message}` };
    }
    return 'continue';
  },
  onResponseHeaders(response, ctx) {
    if (ctx.state.get('check') === true) response.headers.set('x-json-guard', 'passed');
  },
};

export default guard;
