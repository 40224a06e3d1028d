// Runs one of the bench's Node load generators as a separate process (so it never shares an event
// loop with the runner or a server) and returns the JSON object it prints on its last line.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runToEnd } from '../lib/procs.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** @param {string} script file name in bench/load @param {string[]} args @param {number} timeoutMs */
export async function runNodeLoad(script, args, timeoutMs) {
  const r = await runToEnd(process.execPath, [path.join(HERE, script), ...args], { timeoutMs });
  const lines = r.stdout.trim().split('\n');
  const last = lines[lines.length - 1];
  try {
    return JSON.parse(last);
  } catch {
    throw new Error(
      `${script} failed (exit ${r.code}${r.timedOut ? ', timed out' : ''}): ${r.stderr.trim().split('\n').slice(-3).join(' | ') || last}`,
    );
  }
}
