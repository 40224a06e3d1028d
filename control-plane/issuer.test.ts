import { once } from 'node:events';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DevCa, type IssuedCertificate } from '../certs/dev-ca';
import { CertIssuer } from './issuer';
import type { MeshWorkload } from './mesh';

const w: MeshWorkload = {
  name: 'reviews-v1',
  namespace: 'default',
  serviceAccount: 'reviews',
  service: 'reviews',
  version: 'v1',
  addresses: [{ host: '127.0.0.11', port: 9080 }],
  ip: '127.0.0.11',
  inboundPort: 15006,
  adminPort: 15000,
  outboundIp: '127.0.0.11',
  spiffeId: 'spiffe://cluster.local/ns/default/sa/reviews',
};

describe('CertIssuer', () => {
  let ca: DevCa;
  let issuer: CertIssuer | undefined;
  beforeAll(async () => {
    ca = await DevCa.create({ trustDomain: 'cluster.local' });
  });
  afterEach(() => {
    issuer?.close();
    issuer = undefined;
    vi.useRealTimers();
  });

  it('issues once, rotates at the configured point while held, and stops when released', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    issuer = new CertIssuer(ca, { lifetimeMs: 60_000, rotateAfterMs: 30_000 });
    const issued: IssuedCertificate[] = [];
    issuer.on('issued', (_k: string, _w: MeshWorkload, c: IssuedCertificate) => issued.push(c));
    issuer.acquire(w);
    const first = await issuer.current(w);
    expect(await issuer.current(w)).toBe(first); // cached, not re-issued
    expect(first.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(60_000);

    vi.advanceTimersByTime(29_000);
    expect(issued).toHaveLength(1);
    const rotated = once(issuer, 'issued');
    vi.advanceTimersByTime(1_000);
    const [, , second] = (await rotated) as [string, MeshWorkload, IssuedCertificate];
    expect(second.serial).not.toBe(first.serial);
    expect(await issuer.current(w)).toBe(second);

    issuer.release(w);
    vi.advanceTimersByTime(120_000);
    expect(issued).toHaveLength(2);
  });

  it('re-issues on demand when the identity changes or the certificate is due', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    issuer = new CertIssuer(ca, { lifetimeMs: 60_000 });
    const a = await issuer.current(w);
    const b = await issuer.current({
      ...w,
      serviceAccount: 'reviews2',
      spiffeId: 'spiffe://cluster.local/ns/default/sa/reviews2',
    });
    expect(b.spiffeId).toBe('spiffe://cluster.local/ns/default/sa/reviews2');
    expect(b.serial).not.toBe(a.serial);
    vi.setSystemTime(Date.now() + 31_000); // past the default half-life, not held: no timer, due on demand
    const c = await issuer.current({
      ...w,
      serviceAccount: 'reviews2',
      spiffeId: 'spiffe://cluster.local/ns/default/sa/reviews2',
    });
    expect(c.serial).not.toBe(b.serial);
  });

  it('rejects a rotation point outside the lifetime', () => {
    expect(() => new CertIssuer(ca, { lifetimeMs: 1000, rotateAfterMs: 1000 })).toThrow(/rotateAfterMs/);
  });
});
