/**
 * Envoy's runtime admin endpoints: GET /runtime (every key with its value in each layer and the
 * final value, Envoy's JSON shape) and POST /runtime_modify?key=value (sets keys in the admin
 * layer; an empty value removes the override), also taking the pairs as a form body.
 */
import type { IncomingMessage } from 'node:http';
import type { Runtime } from '../../common/runtime';
import { type AdminServer, json, text } from './admin-server';

/** A form body of /runtime_modify is a few keys: more is refused. */
const MAX_FORM_BYTES = 64 * 1024;

const USAGE =
  'usage: /runtime_modify?key1=value1&key2=value2&keyN=valueN\n' +
  '       or send the parameters as form values\n' +
  'use an empty value to remove a previously added override';

function readForm(req: IncomingMessage): Promise<URLSearchParams | undefined> {
  const type = req.headers['content-type'] ?? '';
  if (!type.startsWith('application/x-www-form-urlencoded')) {
    req.resume();
    return Promise.resolve(new URLSearchParams());
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_FORM_BYTES) {
        resolve(undefined);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', () => resolve(undefined));
  });
}

export function registerRuntimeEndpoints(admin: AdminServer, runtime: Runtime): void {
  admin.route('GET', '/runtime', 'runtime values by layer, and the final values (JSON)', () => {
    const entries: Record<string, { layer_values: string[]; final_value: string }> = {};
    for (const [k, e] of runtime.entries()) entries[k] = { layer_values: e.layerValues, final_value: e.finalValue };
    return json({ layers: runtime.layerNames(), entries });
  });

  admin.route('POST', '/runtime_modify', 'set runtime values in the admin layer: ?key=value (empty value removes)', async (q, req) => {
    const form = await readForm(req);
    if (form === undefined) return text(`form body over ${MAX_FORM_BYTES} bytes`, 413);
    const changes: [string, string][] = [...q, ...form];
    if (changes.length === 0) return text(USAGE, 400);
    if (!runtime.modify(changes)) return text('No admin layer specified', 503);
    return text('OK');
  });
}
