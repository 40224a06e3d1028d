/**
 * Tables for the inspection commands (istioctl's layout: upper-case headers, columns separated by
 * spaces). On a terminal the table fits its width (the widest columns are cut, with "…") and
 * status words are coloured; piped output is never cut or coloured (NO_COLOR is honoured too), so
 * scripts see every character.
 */

export interface TableOptions {
  /** Terminal width to fit; undefined = do not cut. */
  readonly width?: number;
  readonly colour?: boolean;
}

const GREEN = new Set(['SYNCED', 'HEALTHY', 'ACTIVE', 'OK', 'true', 'ALLOW', 'ACKED']);
const RED = new Set(['NACKED', 'UNHEALTHY', 'FAILED', 'false', 'DENY', 'STALE', 'ERROR', 'expired']);
const YELLOW = new Set(['NOT SENT', 'WARMING', 'DRAINING', 'STALE (Never Acknowledged)']);

function paint(cell: string, colour: boolean): string {
  if (!colour) return cell;
  const t = cell.trim();
  if (GREEN.has(t)) return `\x1b[32m${cell}\x1b[0m`;
  if (RED.has(t) || t.startsWith('NACKED')) return `\x1b[31m${cell}\x1b[0m`;
  if (YELLOW.has(t)) return `\x1b[33m${cell}\x1b[0m`;
  return cell;
}

function cut(s: string, w: number): string {
  if (s.length <= w) return s;
  return w <= 1 ? s.slice(0, w) : `${s.slice(0, w - 1)}…`;
}

/** Render rows under headers; a trailing newline included. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[], opts: TableOptions = {}): string {
  const n = headers.length;
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const gap = 3;
  if (opts.width !== undefined && opts.width > 0) {
    // Shrink the widest column one character at a time until the table fits (never below its
    // header or 8 characters).
    const floor = headers.map((h) => Math.max(h.length, 8));
    let total = widths.reduce((a, b) => a + b, 0) + gap * (n - 1);
    while (total > opts.width) {
      let wi = -1;
      for (let i = 0; i < n; i++) if (widths[i]! > floor[i]! && (wi < 0 || widths[i]! > widths[wi]!)) wi = i;
      if (wi < 0) break;
      widths[wi]!--;
      total--;
    }
  }
  const line = (cells: readonly string[], header: boolean): string =>
    cells
      .map((c, i) => {
        const text = cut(c ?? '', widths[i]!);
        const padded = i === n - 1 ? text : text.padEnd(widths[i]!);
        if (header) return opts.colour ? `\x1b[1m${padded}\x1b[0m` : padded;
        return paint(padded, opts.colour === true);
      })
      .join(' '.repeat(gap))
      .trimEnd();
  return `${[line(headers, true), ...rows.map((r) => line(r, false))].join('\n')}\n`;
}

/** Table options for this process's stdout. */
export function stdoutTableOptions(): TableOptions {
  const tty = process.stdout.isTTY === true;
  return {
    ...(tty && process.stdout.columns ? { width: process.stdout.columns } : {}),
    colour: tty && !process.env.NO_COLOR && process.env.TERM !== 'dumb',
  };
}

/** "3d 4h", "2h 5m", "40m 3s", "expired". */
export function humanDuration(seconds: number): string {
  if (seconds < 0) return 'expired';
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  return `${m}m ${seconds % 60}s`;
}
