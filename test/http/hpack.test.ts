/**
 * HPACK (RFC 7541) of meshlet's own HTTP/2 framing: the RFC's Appendix C examples (literal and
 * Huffman-coded, with the dynamic table carried across blocks), every decoder error the RFC
 * calls a COMPRESSION_ERROR, the header list limit, and the encoder round-tripping through both
 * our decoder and nghttp2 (node:http2) on a real connection.
 */
import http2 from 'node:http2';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { huffmanDecode, huffmanEncode } from '../../proxy/http/h2/hpack-huffman';
import { encodeField, HpackDecoder, HpackError } from '../../proxy/http/h2/hpack';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const decode = (d: HpackDecoder, s: string, max = 1 << 20) => {
  const b = hex(s);
  return d.decode(b, 0, b.length, max);
};

describe('HPACK decoder (RFC 7541 Appendix C)', () => {
  it('C.3: requests without Huffman, sharing the dynamic table', () => {
    const d = new HpackDecoder();
    expect(decode(d, '828684410f7777772e6578616d706c652e636f6d').fields).toEqual([
      ':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com',
    ]);
    expect(d.tableState).toMatchObject({ count: 1, size: 57 });
    expect(decode(d, '828684be58086e6f2d6361636865').fields).toEqual([
      ':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com', 'cache-control', 'no-cache',
    ]);
    expect(d.tableState).toMatchObject({ count: 2, size: 110 });
    expect(decode(d, '828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565').fields).toEqual([
      ':method', 'GET', ':scheme', 'https', ':path', '/index.html', ':authority', 'www.example.com', 'custom-key', 'custom-value',
    ]);
    expect(d.tableState).toMatchObject({ count: 3, size: 164 });
  });

  it('C.4: the same requests Huffman-coded', () => {
    const d = new HpackDecoder();
    expect(decode(d, '828684418cf1e3c2e5f23a6ba0ab90f4ff').fields).toContain('www.example.com');
    expect(decode(d, '828684be5886a8eb10649cbf').fields).toEqual([
      ':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com', 'cache-control', 'no-cache',
    ]);
    expect(decode(d, '828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf').fields.slice(-2)).toEqual([
      'custom-key',
      'custom-value',
    ]);
    expect(d.tableState).toMatchObject({ count: 3, size: 164 });
  });

  it('evicts the oldest entries past the table size and honours size updates', () => {
    const d = new HpackDecoder(100);
    decode(d, '400a637573746f6d2d6b65790c637573746f6d2d76616c7565'); // 54 octets
    decode(d, '400a637573746f6d2d6b65790c637573746f6d2d76616c7566'); // evicts the first
    expect(d.tableState).toMatchObject({ count: 1, size: 54 });
    expect(decode(d, 'be').fields).toEqual(['custom-key', 'custom-valuf']);
    decode(d, '20'); // size update to 0 empties the table
    expect(d.tableState).toMatchObject({ count: 0, size: 0, maxSize: 0 });
    expect(() => decode(d, 'be')).toThrow(HpackError);
  });

  it.each([
    ['index 0', '80'],
    ['an index past the tables', 'ff00'],
    ['a truncated integer', '7f'],
    ['an integer past 2^24', '0fffffffffff7f'],
    ['a string longer than the block', '0085616263'],
    ['a size update above the announced limit', '3fe21f'],
    ['a size update after a field', '8220'],
    ['Huffman padding that is not all ones', '00818081fe'],
    ['Huffman padding longer than 7 bits', '008361ffff'],
    ['an EOS symbol', '0084ffffffff'],
  ])('rejects %s as a compression error', (_what, block) => {
    expect(() => decode(new HpackDecoder(), block)).toThrow(HpackError);
  });

  it('stops collecting fields past the list limit but still decodes the whole block', () => {
    const d = new HpackDecoder();
    const r = decode(d, '400a637573746f6d2d6b65790c637573746f6d2d76616c7565' + '82', 50);
    expect(r.oversize).toBe(true);
    expect(r.fields).toEqual([]);
    // the incremental entry went into the table all the same (keeps both ends in step)
    expect(d.tableState.count).toBe(1);
  });
});

describe('Huffman code (RFC 7541 Appendix B)', () => {
  it('round-trips every octet and the RFC example strings', () => {
    let all = '';
    for (let i = 0; i < 256; i++) all += String.fromCharCode(i);
    const enc = huffmanEncode(all);
    expect(huffmanDecode(enc, 0, enc.length)).toBe(all);
    expect(huffmanEncode('www.example.com').toString('hex')).toBe('f1e3c2e5f23a6ba0ab90f4ff');
    expect(huffmanEncode('Mon, 21 Oct 2013 20:13:21 GMT').toString('hex')).toBe('d07abe941054d444a8200595040b8166e082a62d1bff');
  });
});

describe('HPACK encoder', () => {
  const encode = (fields: string[]) => {
    let out = Buffer.alloc(4096);
    let pos = 0;
    for (let i = 0; i < fields.length; i += 2) pos = encodeField(out, pos, fields[i]!, fields[i + 1]!);
    out = out.subarray(0, pos);
    return out;
  };

  it('uses one octet for static fields and round-trips through our decoder', () => {
    expect(encode([':method', 'GET']).toString('hex')).toBe('82');
    const fields = [':method', 'POST', ':path', '/a?b', 'content-type', 'application/grpc', 'x-long', 'v'.repeat(300)];
    const b = encode(fields);
    expect(new HpackDecoder().decode(b, 0, b.length, 1 << 20).fields).toEqual(fields);
  });

  it('returns -1 when the buffer is too small', () => {
    expect(encodeField(Buffer.alloc(8), 0, 'x-name', 'a-long-value')).toBe(-1);
  });

  it('nghttp2 decodes what it encodes (a real node:http2 server reads our HEADERS)', async () => {
    const seen = new Promise<http2.IncomingHttpHeaders>((resolve) => {
      const server = http2.createServer();
      server.on('stream', (stream, headers) => {
        stream.respond({ ':status': 200 });
        stream.end();
        resolve(headers);
        setImmediate(() => server.close());
      });
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as net.AddressInfo).port;
        const block = encode([
          ':method', 'GET', ':scheme', 'http', ':authority', 'example', ':path', '/p',
          'user-agent', 'meshlet', 'x-custom', 'é'.repeat(3),
        ]);
        const sock = net.connect(port, '127.0.0.1', () => {
          const h = Buffer.alloc(9);
          h.writeUIntBE(block.length, 0, 3);
          h[3] = 1;
          h[4] = 0x5;
          h.writeUInt32BE(1, 5);
          sock.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from('000000040000000000', 'hex'), h, block]));
        });
        sock.on('error', () => {});
        sock.on('data', () => {});
        setTimeout(() => sock.destroy(), 2000).unref();
      });
    });
    const headers = await seen;
    expect(headers[':path']).toBe('/p');
    expect(headers['user-agent']).toBe('meshlet');
    expect(Buffer.from(headers['x-custom'] as string, 'latin1').toString('latin1')).toBe('é'.repeat(3));
  });
});
