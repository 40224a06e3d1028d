/**
 * An absolute-form request target whose authority is not a URI authority (issue 18.10:
 * `GET http://[::1 HTTP/1.1` was forwarded and answered 200) is answered 400 by meshlet and never
 * reaches the upstream; well-formed absolute-form targets (IPv6 literal, port, reg-name) still go through.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { stopAllMeshlets } from '../support/meshlet';
import { closeAll, rawExchange } from '../support/upstreams';
import { type Proxied, startProxied } from './harness';

let p: Proxied;

beforeAll(async () => {
  p = await startProxied();
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

const bad = ['http://[::1', 'http://[::1/attack/a', 'http://[zz::1]/attack/b', 'http://a"b/attack/c', 'http://host:8o/attack/d', 'http://[]/attack/e'];

it.each(bad)('GET %s HTTP/1.1 is 400 and not forwarded', async (target) => {
  const r = await rawExchange(p.port, `GET ${target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
  expect(r.text.startsWith('HTTP/1.1 400')).toBe(true);
  expect(p.leaked()).toEqual([]);
});

it.each(['http://[::1]:8080/good', 'http://[::1]/good', 'http://example.com:80/good', 'http://a.b-c_d~e/good'])(
  'GET %s HTTP/1.1 is forwarded',
  async (target) => {
    const r = await rawExchange(p.port, `GET ${target} HTTP/1.1\r\nconnection: close\r\n\r\n`);
    expect(r.text.startsWith('HTTP/1.1 200')).toBe(true);
  },
);
