// Process and port bookkeeping for the bench runner. Owns every child process the harness starts,
// so that one call (also from SIGINT/SIGTERM) stops them all. Leans towards never leaving a stray
// server behind: children run in their own process group and are killed as a group.
import { spawn } from 'node:child_process';
import net from 'node:net';

/** @type {Set<import('node:child_process').ChildProcess>} */
const children = new Set();

/**
 * Starts a long-running child (a server or proxy). stdout/stderr are kept (last 8 KiB each) so a
 * failure can say why. The child is its own process-group leader so stopAll() can kill the group.
 * @param {string} name label used in error messages
 * @param {string} cmd
 * @param {string[]} args
 * @param {{cwd?: string, env?: NodeJS.ProcessEnv}} [opts]
 */
export function startProcess(name, cmd, args, opts = {}) {
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const out = { stdout: '', stderr: '' };
  const keep = (key) => (chunk) => {
    out[key] = (out[key] + chunk.toString()).slice(-8192);
  };
  child.stdout.on('data', keep('stdout'));
  child.stderr.on('data', keep('stderr'));
  children.add(child);
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
    child.on('error', (err) => {
      children.delete(child);
      out.stderr += `\nspawn error: ${err.message}`;
      resolve({ code: -1, signal: null });
    });
  });
  return {
    name,
    child,
    pid: child.pid,
    output: out,
    exited,
    /** Last non-empty line of stderr (or stdout), for "not available: …" reasons. */
    lastLine() {
      const text = (out.stderr.trim() || out.stdout.trim()).split('\n');
      return text[text.length - 1] ?? '';
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      killGroup(child, 'SIGTERM');
      const t = setTimeout(() => killGroup(child, 'SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

/**
 * Runs a child to completion (a load generator), bounded by timeoutMs; resolves with its output.
 * @returns {Promise<{code: number|null, stdout: string, stderr: string, timedOut: boolean}>}
 */
export function runToEnd(cmd, args, { timeoutMs, cwd, env, onStdout } = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    children.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (c) => {
      stdout += c.toString();
      if (onStdout) onStdout(c.toString());
    });
    child.stderr.on('data', (c) => {
      stderr = (stderr + c.toString()).slice(-16384);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGKILL');
    }, timeoutMs ?? 60_000);
    child.on('error', (err) => {
      stderr += `\nspawn error: ${err.message}`;
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

/** Kills every child still running (used on normal exit and on Ctrl-C). Synchronous on purpose. */
export function killAll(signal = 'SIGTERM') {
  for (const child of children) killGroup(child, signal);
}

/** Stops every child and waits (bounded) for them to exit. */
export async function stopAll() {
  const pending = [...children].map(
    (c) =>
      new Promise((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null) return resolve();
        c.once('exit', resolve);
      }),
  );
  killAll('SIGTERM');
  const t = setTimeout(() => killAll('SIGKILL'), 3000);
  await Promise.race([Promise.all(pending), new Promise((r) => setTimeout(r, 5000))]);
  clearTimeout(t);
}

/** A free TCP port on 127.0.0.1 (bound to 0, read, released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Distinct free ports (kept distinct from each other within one call). */
export async function freePorts(n) {
  const ports = new Set();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

/**
 * Waits until host:port (default 127.0.0.1) accepts a TCP connection, or the process exits, or timeoutMs passes.
 * @returns {Promise<string|null>} null when ready, otherwise the reason it is not.
 */
export async function waitForPort(port, { timeoutMs = 10_000, proc, host = '127.0.0.1' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  proc?.exited.then(() => {
    exited = true;
  });
  while (Date.now() < deadline) {
    if (exited) return `${proc.name} exited: ${proc.lastLine() || 'no output'}`;
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, host);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return null;
    await new Promise((r) => setTimeout(r, 100));
  }
  return `${proc?.name ?? 'server'} did not listen on ${host}:${port} within ${timeoutMs} ms${proc?.lastLine() ? `: ${proc.lastLine()}` : ''}`;
}

/** Reads VmRSS of a process from /proc (KiB), or null when the process is gone. */
export async function rssKiB(pid) {
  const { readFile } = await import('node:fs/promises');
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Summed VmRSS (KiB) of a process and all its descendants (nginx master + workers, etc.). */
export async function treeRssKiB(pid) {
  const { readFile, readdir } = await import('node:fs/promises');
  const seen = new Set();
  const stack = [pid];
  let total = 0;
  let found = false;
  while (stack.length) {
    const p = stack.pop();
    if (seen.has(p)) continue;
    seen.add(p);
    const rss = await rssKiB(p);
    if (rss === null) continue;
    found = true;
    total += rss;
    try {
      for (const tid of await readdir(`/proc/${p}/task`)) {
        const kids = await readFile(`/proc/${p}/task/${tid}/children`, 'utf8').catch(() => '');
        for (const k of kids.split(/\s+/)) if (k) stack.push(Number(k));
      }
    } catch {
      /* process went away */
    }
  }
  return found ? total : null;
}
