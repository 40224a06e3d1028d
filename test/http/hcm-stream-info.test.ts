import { describe, expect, it } from 'vitest';
import { StreamInfo } from '../../proxy/http/stream-info';

const conn = { id: 7, remoteAddress: '10.0.0.1', remotePort: 5000, localAddress: '10.0.0.2', localPort: 15006 };

describe('StreamInfo', () => {
  it('prints response flags in Envoy order, "-" when none', () => {
    const i = new StreamInfo(conn, 'HTTP/1.1');
    expect(i.responseFlags()).toBe('-');
    expect(i.hasAnyResponseFlag).toBe(false);
    i.setResponseFlag('URX');
    i.setResponseFlag('UF');
    i.setResponseFlag('UF');
    expect(i.responseFlags()).toBe('UF,URX');
    expect(i.responseFlagList()).toEqual(['UF', 'URX']);
    expect(i.hasResponseFlag('UF')).toBe(true);
    expect(i.hasResponseFlag('UT')).toBe(false);
  });

  it('bounds filter metadata in entries and value size', () => {
    const i = new StreamInfo(conn, 'HTTP/2');
    expect(i.metadataEntries().size).toBe(0);
    i.setMetadata('k', 'x'.repeat(1000));
    expect(i.metadata('k')?.length).toBe(256);
    for (let n = 0; n < 100; n++) i.setMetadata(`key${n}`, 'v');
    expect(i.metadataEntries().size).toBe(32);
    // Existing keys can still be updated at the cap.
    i.setMetadata('k', 'new');
    expect(i.metadata('k')).toBe('new');
  });

  it('measures duration until the last byte, or until now while running', () => {
    const i = new StreamInfo(conn, 'HTTP/1.1');
    expect(i.durationMs).toBeGreaterThanOrEqual(0);
    i.lastDownstreamTxByteMs = 12.5;
    expect(i.durationMs).toBe(12.5);
    expect(i.connection.id).toBe(7);
  });
});
