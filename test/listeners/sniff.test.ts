import net from 'node:net';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { classify, parseClientHello, sniff } from '../../proxy/detect/sniff';

const servers: net.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** Capture the first bytes a real client sends to a plain TCP server. */
async function firstBytes(connect: (port: number) => net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer((s) => {
      s.once('data', (d) => {
        resolve(d);
        s.destroy();
      });
    });
    servers.push(srv);
    srv.listen(0, '127.0.0.1', () => {
      const c = connect((srv.address() as net.AddressInfo).port);
      c.on('error', () => {});
    });
    srv.on('error', reject);
  });
}

describe('protocol detection', () => {
  it('reads SNI and ALPN from a real TLS ClientHello', async () => {
    const hello = await firstBytes((port) =>
      tls.connect({ port, host: '127.0.0.1', servername: 'reviews.default.svc', ALPNProtocols: ['h2', 'http/1.1'], rejectUnauthorized: false }),
    );
    expect(parseClientHello(hello)).toEqual({ sni: 'reviews.default.svc', alpn: ['h2', 'http/1.1'] });
    expect(classify(hello)).toEqual({ transport: 'tls', sni: 'reviews.default.svc', alpn: ['h2', 'http/1.1'] });
  });

  it('recognises the HTTP/2 preface, HTTP/1.x and opaque bytes', () => {
    expect(classify(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'))).toEqual({ transport: 'raw_buffer', application: 'h2' });
    expect(classify(Buffer.from('GET / HTTP/1.1\r\nhost: a\r\n\r\n')).application).toBe('http/1.1');
    expect(classify(Buffer.from('POST /x HTTP/1.0\r\n\r\n')).application).toBe('http/1.0');
    expect(classify(Buffer.from([0x00, 0x01, 0x02, 0x03]))).toEqual({ transport: 'raw_buffer' });
    expect(classify(Buffer.from('HELO example\r\n'))).toEqual({ transport: 'raw_buffer' });
  });

  it('never throws on truncated or garbage TLS records', () => {
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x01, 0x00, 0x00, 0xfb, 0x03, 0x03]);
    for (let n = 1; n <= hello.length; n++) expect(() => classify(hello.subarray(0, n))).not.toThrow();
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.alloc(1 + (i % 300));
      for (let j = 0; j < b.length; j++) b[j] = (i * 31 + j * 17) & 0xff;
      b[0] = 0x16;
      expect(() => classify(b)).not.toThrow();
    }
  });

  it('puts the sniffed bytes back and times out for server-first protocols', async () => {
    const got = await new Promise<{ sniffed: unknown; rest: string }>((resolve) => {
      const srv = net.createServer({ pauseOnConnect: true }, (s) => {
        sniff(s, 2_000, (sniffed) => {
          let rest = '';
          s.on('data', (d) => {
            rest += d.toString();
            if (rest.includes('\r\n\r\n')) {
              resolve({ sniffed, rest });
              s.destroy();
            }
          });
          s.resume();
        });
      });
      servers.push(srv);
      srv.listen(0, '127.0.0.1', () => {
        const c = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
        c.on('error', () => {});
        c.write('GET /hello HTTP/1.1\r\nhost: x\r\n\r\n');
      });
    });
    expect(got.sniffed).toEqual({ transport: 'raw_buffer', application: 'http/1.1' });
    expect(got.rest).toBe('GET /hello HTTP/1.1\r\nhost: x\r\n\r\n');

    const timedOut = await new Promise<unknown>((resolve) => {
      const srv = net.createServer({ pauseOnConnect: true }, (s) => {
        sniff(s, 50, (sniffed) => {
          resolve(sniffed ?? 'timeout');
          s.destroy();
        });
      });
      servers.push(srv);
      srv.listen(0, '127.0.0.1', () => {
        const c = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
        c.on('error', () => {});
      });
    });
    expect(timedOut).toBe('timeout');
  });
});
