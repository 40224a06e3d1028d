// Describes the machine a run happened on (CPU model, cores, kernel, Node version, date), because a
// number without its machine means nothing. Reads /proc and os; no external commands.
import { readFileSync } from 'node:fs';
import os from 'node:os';

export function machineInfo() {
  let cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1].trim();
  } catch {
    /* not Linux */
  }
  return {
    cpu,
    cores: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    /** 1-minute load average when the run started: how busy the box was with other work. */
    loadAvg1m: Math.round(os.loadavg()[0] * 100) / 100,
    date: new Date().toISOString(),
  };
}
