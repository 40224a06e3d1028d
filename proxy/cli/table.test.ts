import { describe, expect, it } from 'vitest';
import { humanDuration, renderTable } from './table';

const H = ['SERVICE FQDN', 'PORT', 'STATUS'];
const ROWS = [
  ['reviews.default.svc.cluster.local', '9080', 'SYNCED'],
  ['a-very-long-service-name.with-a-long-namespace.svc.cluster.local', '80', 'NACKED (4)'],
];

describe('proxy-config tables', () => {
  it('piped: nothing cut, nothing coloured, columns aligned', () => {
    const out = renderTable(H, ROWS).split('\n');
    expect(out[0]).toMatch(/^SERVICE FQDN {2,}PORT {3}STATUS$/);
    expect(out[2]).toContain('a-very-long-service-name.with-a-long-namespace.svc.cluster.local');
    expect(out.join('')).not.toContain('\x1b[');
    expect(out[1]!.indexOf('9080')).toBe(out[0]!.indexOf('PORT'));
  });

  it('on a terminal: fits the width by cutting the widest column with …, and colours statuses', () => {
    const out = renderTable(H, ROWS, { width: 50, colour: true }).trimEnd().split('\n');
    const plain = out.map((l) => l.split('\x1b[').map((part, i) => (i === 0 ? part : part.replace(/^\d+m/, ''))).join(''));
    for (const l of plain) expect(l.length).toBeLessThanOrEqual(50);
    expect(plain[2]).toContain('…');
    expect(out[1]).toContain('\x1b[32mSYNCED');
    expect(out[2]).toContain('\x1b[31mNACKED (4)');
    expect(out[0]).toContain('\x1b[1m');
  });

  it('durations to expiry', () => {
    expect(humanDuration(3 * 86400 + 4 * 3600 + 5)).toBe('3d 4h');
    expect(humanDuration(7200 + 300)).toBe('2h 5m');
    expect(humanDuration(125)).toBe('2m 5s');
    expect(humanDuration(-1)).toBe('expired');
  });
});
