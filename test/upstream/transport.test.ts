import * as net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ResetReason } from '../../proxy/http/codec';
import { Host } from '../../proxy/upstream/host';
import { TcpTransportSocketFactory } from '../../proxy/upstream/transport';
import type { TransportConnection } from '../../proxy/upstream/types';

type Outcome = { err: { reason: ResetReason; detail: string } | undefined; conn: TransportConnection | undefined };

function connect(f: TcpTransportSocketFactory, host: Host, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    let calls = 0;
    f.connect(host, { timeoutMs }, (err, conn) => {
      calls++;
      expect(calls).toBe(1);
      resolve({ err, conn });
    });
  });
}

describe('TcpTransportSocketFactory', () => {
  const cleanup: Array<() => void> = [];
  afterEach(() => {
    vi.useRealTimers();
    for (const c of cleanup.splice(0)) c();
  });

  it('connects to a loopback server with no-delay and keep-alive, handing over a live socket', async () => {
    const accepted: net.Socket[] = [];
    const server = net.createServer((s) => {
      accepted.push(s);
      s.on('data', (d) => s.write(Buffer.concat([Buffer.from('echo:'), d])));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(() => {
      for (const s of accepted) s.destroy();
      server.close();
    });
    const port = (server.address() as net.AddressInfo).port;
    const { err, conn } = await connect(
      new TcpTransportSocketFactory(),
      new Host({ kind: 'socket', host: '127.0.0.1', port }),
      2000,
    );
    expect(err).toBeUndefined();
    expect(conn).toBeDefined();
    const sock = conn?.socket as net.Socket;
    cleanup.push(() => sock.destroy());
    expect(sock.remotePort).toBe(port);
    expect(sock.listenerCount('error')).toBe(0);
    const reply = await new Promise<string>((resolve) => {
      sock.once('data', (d) => resolve(d.toString()));
      sock.write('hi');
    });
    expect(reply).toBe('echo:hi');
  });

  it('reports connect_failure with the errno when nothing listens', async () => {
    // Reserve a port, then close it so the connect is refused.
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    const { err, conn } = await connect(
      new TcpTransportSocketFactory(),
      new Host({ kind: 'socket', host: '127.0.0.1', port }),
      2000,
    );
    expect(conn).toBeUndefined();
    expect(err?.reason).toBe('connect_failure');
    expect(err?.detail).toContain('ECONNREFUSED');
  });

  it('reports timeout when the connect does not finish in time (fake timers, socket never connects)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    // Make the connect hang: stub net.Socket.prototype.connect for this one call so no packet leaves.
    const spy = vi.spyOn(net.Socket.prototype, 'connect').mockImplementation(function (this: net.Socket) {
      return this;
    });
    cleanup.push(() => spy.mockRestore());
    const f = new TcpTransportSocketFactory();
    const p = connect(f, new Host({ kind: 'socket', host: '127.0.0.1', port: 9 }), 250);
    vi.advanceTimersByTime(249);
    let settled = false;
    void p.then(() => {
      settled = true;
    });
    await Promise.resolve();
    expect(settled).toBe(false);
    vi.advanceTimersByTime(1);
    const { err, conn } = await p;
    expect(conn).toBeUndefined();
    expect(err?.reason).toBe('timeout');
    expect(err?.detail).toContain('250ms');
  });

  it('dials connectAddress when set (LOGICAL_DNS hosts keep their name as identity)', async () => {
    const server = net.createServer((s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(() => server.close());
    const port = (server.address() as net.AddressInfo).port;
    const host = new Host({ kind: 'socket', host: 'name.invalid', port });
    host.connectAddress = '127.0.0.1';
    const { err, conn } = await connect(new TcpTransportSocketFactory(), host, 2000);
    expect(err).toBeUndefined();
    expect(host.key).toBe(`name.invalid:${port}`);
    conn?.socket.destroy();
  });
});
