/**
 * Where the inspection commands reach a proxy's admin port: `--admin URL` directly, or
 * `--pod NAME[.NAMESPACE]` through `kubectl port-forward` (a local port picked by kubectl, closed
 * again when the command ends). HTTP helpers with a bounded timeout; no retries.
 */
import { type ChildProcess, spawn } from 'node:child_process';

export interface AdminTarget {
  readonly base: string;
  close(): void;
}

const DEFAULT_ADMIN = 'http://127.0.0.1:15000';

export async function openAdminTarget(opts: { admin?: string; pod?: string; namespace?: string }, timeoutMs = 15_000): Promise<AdminTarget> {
  if (opts.pod) return portForward(opts.pod, opts.namespace, timeoutMs);
  const base = (opts.admin ?? DEFAULT_ADMIN).replace(/\/+$/, '');
  try {
    new URL(base);
  } catch {
    throw new Error(`--admin ${base} is not a URL (e.g. http://127.0.0.1:15000)`);
  }
  return { base, close: () => undefined };
}

function portForward(pod: string, ns: string | undefined, timeoutMs: number): Promise<AdminTarget> {
  const dot = pod.indexOf('.');
  const name = dot > 0 ? pod.slice(0, dot) : pod;
  const namespace = ns ?? (dot > 0 ? pod.slice(dot + 1) : undefined);
  const args = ['port-forward', `pod/${name}`, ':15000', '--address', '127.0.0.1', ...(namespace ? ['-n', namespace] : [])];
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn('kubectl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      reject(new Error(`--pod needs kubectl: ${(err as Error).message}`));
      return;
    }
    let err = '';
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`kubectl port-forward to ${pod} did not start within ${timeoutMs} ms${err ? `: ${err.trim()}` : ''}`));
    }, timeoutMs);
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(e.code === 'ENOENT' ? '--pod needs kubectl on PATH (or use --admin URL)' : e.message));
    });
    child.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
    });
    child.stdout!.on('data', (c: Buffer) => {
      const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(c.toString());
      if (!m) return;
      clearTimeout(timer);
      resolve({ base: `http://127.0.0.1:${m[1]}`, close: () => child.kill() });
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      // kubectl repeats its client-side retries; the last line is the one that says why.
      const last = err.trim().split('\n').pop();
      reject(new Error(`kubectl port-forward to ${pod} exited (${code})${last ? `: ${last}` : ''}`));
    });
  });
}

/** GET or POST one admin path; non-2xx answers throw with the body. */
export async function adminRequest(base: string, path: string, opts: { method?: 'GET' | 'POST'; accept?: string; timeoutMs?: number } = {}): Promise<string> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method: opts.method ?? 'GET',
      headers: { accept: opts.accept ?? '*/*' },
      signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    throw new Error(`cannot reach the admin port at ${base}${cause ? ` (${cause})` : ''}: ${(err as Error).message}`);
  }
  const body = await res.text();
  if (!res.ok) throw new Error(`${opts.method ?? 'GET'} ${path}: ${res.status} ${body.trim()}`);
  return body;
}

export async function adminJson<T>(base: string, path: string): Promise<T> {
  return JSON.parse(await adminRequest(base, path, { accept: 'application/json' })) as T;
}
