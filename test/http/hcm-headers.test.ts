import { describe, expect, it } from 'vitest';
import type { HcmConfig, HeaderValueOption } from '../../proxy/config/types';
import type { DownstreamConnectionInfo, RequestHead } from '../../proxy/http/codec';
import {
  applyServerHeader,
  applyXfcc,
  type EdgeResult,
  isInternalAddress,
  mutateRequestHeaders,
  normalizeRequestPath,
  xffAddressFromRight,
} from '../../proxy/http/edge-headers';
import {
  applyHeaderOptions,
  formatHeaderValue,
  getHeader,
  getHeaderJoined,
  removeHeader,
  removeHeaders,
  setHeader,
  stripHopByHop,
  stripPort,
} from '../../proxy/http/headers';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function conn(remoteAddress: string, tls = false): DownstreamConnectionInfo {
  return {
    id: 1,
    remoteAddress,
    remotePort: 40000,
    localAddress: '127.0.0.1',
    localPort: 15001,
    ...(tls ? { tls: { peerPrincipal: 'spiffe://cluster.local/ns/a/sa/b' } } : {}),
  };
}

function head(headers: string[]): RequestHead {
  return {
    method: 'GET',
    path: '/',
    authority: 'svc',
    scheme: 'http',
    protocol: 'HTTP/1.1',
    headers,
    contentLength: 0,
  };
}

function hcm(over: Partial<HcmConfig> = {}): HcmConfig {
  return {
    useRemoteAddress: false,
    xffNumTrustedHops: 0,
    skipXffAppend: false,
    generateRequestId: true,
    preserveExternalRequestId: false,
    alwaysSetRequestIdInResponse: false,
    serverName: 'envoy',
    serverHeaderTransformation: 'OVERWRITE',
    ...over,
  } as HcmConfig;
}

function opt(
  key: string,
  value: string,
  appendAction: HeaderValueOption['appendAction'],
  keepEmptyValue = false,
): HeaderValueOption {
  return { key, value, appendAction, keepEmptyValue };
}

describe('flat header list operations', () => {
  it('get / joined / set / remove', () => {
    const h = ['a', '1', 'b', '2', 'a', '3'];
    expect(getHeader(h, 'a')).toBe('1');
    expect(getHeaderJoined(h, 'a')).toBe('1,3');
    expect(getHeaderJoined(h, 'z')).toBeUndefined();
    setHeader(h, 'a', 'x');
    expect(h).toEqual(['a', 'x', 'b', '2']);
    setHeader(h, 'c', 'y');
    expect(h).toEqual(['a', 'x', 'b', '2', 'c', 'y']);
    expect(removeHeader(h, 'b')).toBe(1);
    expect(h).toEqual(['a', 'x', 'c', 'y']);
    removeHeaders(h, ['a', 'c']);
    expect(h).toEqual([]);
  });

  it('strips hop-by-hop headers but keeps te: trailers', () => {
    const h = [
      'connection',
      'close',
      'x',
      '1',
      'te',
      'trailers',
      'keep-alive',
      '5',
      'transfer-encoding',
      'chunked',
      'upgrade',
      'ws',
    ];
    stripHopByHop(h);
    expect(h).toEqual(['x', '1', 'te', 'trailers']);
    const h2 = ['te', 'gzip', 'y', '2'];
    stripHopByHop(h2);
    expect(h2).toEqual(['y', '2']);
  });

  it('stripPort and xffAddressFromRight', () => {
    expect(stripPort('a.b:80')).toBe('a.b');
    expect(stripPort('a.b')).toBe('a.b');
    expect(stripPort('[::1]:80')).toBe('[::1]');
    expect(xffAddressFromRight('1.1.1.1, 2.2.2.2,3.3.3.3', 0)).toBe('3.3.3.3');
    expect(xffAddressFromRight('1.1.1.1, 2.2.2.2,3.3.3.3', 1)).toBe('2.2.2.2');
    expect(xffAddressFromRight('1.1.1.1, 2.2.2.2,3.3.3.3', 2)).toBe('1.1.1.1');
    expect(xffAddressFromRight('1.1.1.1', 1)).toBeUndefined();
  });

  it('isInternalAddress follows RFC 1918, loopback and ULA', () => {
    for (const a of [
      '10.1.2.3',
      '127.0.0.1',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '::1',
      'fd00::1',
      '::ffff:10.0.0.1',
    ]) {
      expect(isInternalAddress(a), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '172.32.0.1', '172.15.0.1', '192.169.0.1', '2001:db8::1', 'not-an-ip']) {
      expect(isInternalAddress(a), a).toBe(false);
    }
  });
});

describe('HeaderValueOption application', () => {
  const ctx = { connection: conn('10.0.0.7', true), request: head(['x-user', 'bob']) };

  it('honours every append action', () => {
    const h = ['a', '1', 'b', '2'];
    applyHeaderOptions(
      h,
      [
        opt('a', 'append', 'APPEND_IF_EXISTS_OR_ADD'),
        opt('b', 'nope', 'ADD_IF_ABSENT'),
        opt('c', 'added', 'ADD_IF_ABSENT'),
        opt('b', 'over', 'OVERWRITE_IF_EXISTS_OR_ADD'),
        opt('d', 'new', 'OVERWRITE_IF_EXISTS_OR_ADD'),
        opt('e', 'skipped', 'OVERWRITE_IF_EXISTS'),
        opt('a', 'last', 'OVERWRITE_IF_EXISTS'),
      ],
      ctx,
    );
    expect(h).toEqual(['a', 'last', 'b', 'over', 'c', 'added', 'd', 'new']);
  });

  it('drops empty values unless keep_empty_value', () => {
    const h: string[] = [];
    applyHeaderOptions(
      h,
      [opt('x', '', 'APPEND_IF_EXISTS_OR_ADD'), opt('y', '', 'APPEND_IF_EXISTS_OR_ADD', true)],
      ctx,
    );
    expect(h).toEqual(['y', '']);
  });

  it('resolves command operators', () => {
    expect(formatHeaderValue('%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%', ctx)).toBe('10.0.0.7');
    expect(formatHeaderValue('ip=%DOWNSTREAM_REMOTE_ADDRESS%;', ctx)).toBe('ip=10.0.0.7:40000;');
    expect(formatHeaderValue('%DOWNSTREAM_PEER_URI_SAN%', ctx)).toBe('spiffe://cluster.local/ns/a/sa/b');
    expect(formatHeaderValue('%REQ(X-User)%', ctx)).toBe('bob');
    expect(formatHeaderValue('%REQ(x-missing)%', ctx)).toBe('-');
    expect(formatHeaderValue('100%%', ctx)).toBe('100%');
    expect(formatHeaderValue('plain', ctx)).toBe('plain');
  });
});

describe('edge request headers (connection manager)', () => {
  const out: EdgeResult = { internal: false, trustedAddress: '' };

  it('use_remote_address appends the peer to x-forwarded-for and overwrites x-forwarded-proto', () => {
    const h = head(['x-forwarded-for', '1.2.3.4', 'x-forwarded-proto', 'https']);
    mutateRequestHeaders(h, conn('8.8.8.8'), hcm({ useRemoteAddress: true }), out);
    expect(getHeader(h.headers, 'x-forwarded-for')).toBe('1.2.3.4,8.8.8.8');
    expect(getHeader(h.headers, 'x-forwarded-proto')).toBe('http');
    expect(getHeader(h.headers, 'x-envoy-external-address')).toBe('8.8.8.8');
    expect(out.internal).toBe(false);
  });

  it('skip_xff_append leaves x-forwarded-for alone', () => {
    const h = head(['x-forwarded-for', '1.2.3.4']);
    mutateRequestHeaders(h, conn('8.8.8.8'), hcm({ useRemoteAddress: true, skipXffAppend: true }), out);
    expect(getHeader(h.headers, 'x-forwarded-for')).toBe('1.2.3.4');
  });

  it('xff_num_trusted_hops picks the trusted client address from the right', () => {
    const h = head(['x-forwarded-for', '9.9.9.9,10.0.0.2']);
    mutateRequestHeaders(h, conn('10.0.0.3'), hcm({ useRemoteAddress: true, xffNumTrustedHops: 1 }), out);
    expect(out.trustedAddress).toBe('10.0.0.2');
    expect(getHeader(h.headers, 'x-forwarded-for')).toBe('9.9.9.9,10.0.0.2,10.0.0.3');
  });

  it('sanitises x-envoy-* control headers from external clients', () => {
    const h = head([
      'x-envoy-retry-on',
      '5xx',
      'x-envoy-upstream-rq-timeout-ms',
      '1',
      'x-envoy-internal',
      'true',
      'x-keep',
      '1',
    ]);
    mutateRequestHeaders(h, conn('8.8.8.8'), hcm({ useRemoteAddress: true }), out);
    expect(getHeader(h.headers, 'x-envoy-retry-on')).toBeUndefined();
    expect(getHeader(h.headers, 'x-envoy-upstream-rq-timeout-ms')).toBeUndefined();
    expect(getHeader(h.headers, 'x-envoy-internal')).toBeUndefined();
    expect(getHeader(h.headers, 'x-keep')).toBe('1');
  });

  it('keeps x-envoy-* from internal clients and marks them x-envoy-internal', () => {
    const h = head(['x-envoy-retry-on', '5xx']);
    mutateRequestHeaders(h, conn('127.0.0.1'), hcm({ useRemoteAddress: true }), out);
    expect(out.internal).toBe(true);
    expect(getHeader(h.headers, 'x-envoy-retry-on')).toBe('5xx');
    expect(getHeader(h.headers, 'x-envoy-internal')).toBe('true');
    expect(getHeader(h.headers, 'x-forwarded-for')).toBe('127.0.0.1');
  });

  it('without use_remote_address: x-forwarded-proto only filled when absent, no xff append', () => {
    const h = head(['x-forwarded-proto', 'https']);
    mutateRequestHeaders(h, conn('127.0.0.1'), hcm(), out);
    expect(getHeader(h.headers, 'x-forwarded-proto')).toBe('https');
    expect(h.scheme).toBe('https');
    expect(getHeader(h.headers, 'x-forwarded-for')).toBeUndefined();
    const h2 = head([]);
    mutateRequestHeaders(h2, conn('127.0.0.1', true), hcm(), out);
    expect(getHeader(h2.headers, 'x-forwarded-proto')).toBe('https');
  });

  it('generates a UUID v4 x-request-id when absent, keeps an internal one', () => {
    const h = head([]);
    mutateRequestHeaders(h, conn('127.0.0.1'), hcm({ useRemoteAddress: true }), out);
    expect(getHeader(h.headers, 'x-request-id')).toMatch(UUID_RE);
    const h2 = head(['x-request-id', 'mine']);
    mutateRequestHeaders(h2, conn('127.0.0.1'), hcm({ useRemoteAddress: true }), out);
    expect(getHeader(h2.headers, 'x-request-id')).toBe('mine');
  });

  it('replaces an external x-request-id at the edge unless preserve_external_request_id', () => {
    const h = head(['x-request-id', 'client-chosen']);
    mutateRequestHeaders(h, conn('8.8.8.8'), hcm({ useRemoteAddress: true }), out);
    expect(getHeader(h.headers, 'x-request-id')).toMatch(UUID_RE);
    const h2 = head(['x-request-id', 'client-chosen']);
    mutateRequestHeaders(h2, conn('8.8.8.8'), hcm({ useRemoteAddress: true, preserveExternalRequestId: true }), out);
    expect(getHeader(h2.headers, 'x-request-id')).toBe('client-chosen');
  });

  it('does not generate x-request-id when generate_request_id is false', () => {
    const h = head([]);
    mutateRequestHeaders(h, conn('127.0.0.1'), hcm({ generateRequestId: false }), out);
    expect(getHeader(h.headers, 'x-request-id')).toBeUndefined();
  });
});

describe('server header transformation', () => {
  it('OVERWRITE, APPEND_IF_ABSENT, PASS_THROUGH', () => {
    const a = ['server', 'upstream'];
    applyServerHeader(a, hcm({ serverHeaderTransformation: 'OVERWRITE', serverName: 'meshlet' }));
    expect(a).toEqual(['server', 'meshlet']);
    const b = ['server', 'upstream'];
    applyServerHeader(b, hcm({ serverHeaderTransformation: 'APPEND_IF_ABSENT', serverName: 'meshlet' }));
    expect(b).toEqual(['server', 'upstream']);
    const b2: string[] = [];
    applyServerHeader(b2, hcm({ serverHeaderTransformation: 'APPEND_IF_ABSENT', serverName: 'meshlet' }));
    expect(b2).toEqual(['server', 'meshlet']);
    const c = ['server', 'upstream'];
    applyServerHeader(c, hcm({ serverHeaderTransformation: 'PASS_THROUGH' }));
    expect(c).toEqual(['server', 'upstream']);
  });
});

describe('x-forwarded-client-cert', () => {
  const mtls: DownstreamConnectionInfo = {
    id: 1,
    remoteAddress: '10.0.0.1',
    remotePort: 1,
    localAddress: '10.0.0.2',
    localPort: 15006,
    tls: {
      localPrincipal: 'spiffe://cluster.local/ns/b/sa/server',
      peerPrincipal: 'spiffe://cluster.local/ns/a/sa/client',
      peerCertificateHash: 'abcd',
      peerSubject: 'O=meshlet',
      peerUriSans: ['spiffe://cluster.local/ns/a/sa/client'],
      peerDnsSans: ['client.a.svc'],
      peerCertificatePem: '-----BEGIN CERTIFICATE-----\nMII=\n-----END CERTIFICATE-----\n',
    },
  };
  const details = { subject: true, cert: false, chain: false, dns: true, uri: true };
  const xfcc = (h: string[]) => getHeader(h, 'x-forwarded-client-cert');

  it('SANITIZE removes the header', () => {
    const h = ['x-forwarded-client-cert', 'By=evil'];
    applyXfcc(h, mtls, hcm({ forwardClientCertDetails: 'SANITIZE', setCurrentClientCertDetails: details }));
    expect(xfcc(h)).toBeUndefined();
  });

  it('APPEND_FORWARD appends the current peer in Envoy key order (Istio sidecar inbound)', () => {
    const h = ['x-forwarded-client-cert', 'By=spiffe://x;Hash=00'];
    applyXfcc(h, mtls, hcm({ forwardClientCertDetails: 'APPEND_FORWARD', setCurrentClientCertDetails: details }));
    expect(xfcc(h)).toBe(
      'By=spiffe://x;Hash=00,By=spiffe://cluster.local/ns/b/sa/server;Hash=abcd;Subject="O=meshlet";URI=spiffe://cluster.local/ns/a/sa/client;DNS=client.a.svc',
    );
  });

  it('SANITIZE_SET replaces, with the URL-encoded certificate when asked', () => {
    const h = ['x-forwarded-client-cert', 'By=evil'];
    applyXfcc(
      h,
      mtls,
      hcm({
        forwardClientCertDetails: 'SANITIZE_SET',
        setCurrentClientCertDetails: { ...details, cert: true, dns: false, subject: false },
      }),
    );
    expect(xfcc(h)).toBe(
      `By=spiffe://cluster.local/ns/b/sa/server;Hash=abcd;Cert="${encodeURIComponent(mtls.tls!.peerCertificatePem!)}";URI=spiffe://cluster.local/ns/a/sa/client`,
    );
  });

  it('FORWARD_ONLY keeps the header on mTLS, drops it on plaintext; ALWAYS_FORWARD_ONLY keeps it', () => {
    const a = ['x-forwarded-client-cert', 'By=up'];
    applyXfcc(a, mtls, hcm({ forwardClientCertDetails: 'FORWARD_ONLY', setCurrentClientCertDetails: details }));
    expect(xfcc(a)).toBe('By=up');
    const b = ['x-forwarded-client-cert', 'By=up'];
    applyXfcc(
      b,
      conn('10.0.0.1'),
      hcm({ forwardClientCertDetails: 'FORWARD_ONLY', setCurrentClientCertDetails: details }),
    );
    expect(xfcc(b)).toBeUndefined();
    const c = ['x-forwarded-client-cert', 'By=up'];
    applyXfcc(
      c,
      conn('10.0.0.1'),
      hcm({ forwardClientCertDetails: 'ALWAYS_FORWARD_ONLY', setCurrentClientCertDetails: details }),
    );
    expect(xfcc(c)).toBe('By=up');
  });
});

describe('path normalisation', () => {
  it('removes dot segments (also percent-encoded) and keeps the query', () => {
    expect(normalizeRequestPath('/a/./b/../c?x=/../', true, false)).toBe('/a/c?x=/../');
    expect(normalizeRequestPath('/a/%2e%2E/b', true, false)).toBe('/b');
    expect(normalizeRequestPath('/../../etc', true, false)).toBe('/etc');
    expect(normalizeRequestPath('/a/b/..', true, false)).toBe('/a/');
    expect(normalizeRequestPath('/a/.', true, false)).toBe('/a/');
  });
  it('merges slashes when asked', () => {
    expect(normalizeRequestPath('//a///b', false, true)).toBe('/a/b');
    expect(normalizeRequestPath('//a///b', true, false)).toBe('//a///b');
  });
  it('returns the same string when nothing changes and rejects relative paths', () => {
    const p = '/already/normal?q=1';
    expect(normalizeRequestPath(p, true, true)).toBe(p);
    expect(normalizeRequestPath('relative/path', true, true)).toBeUndefined();
    expect(normalizeRequestPath('*', true, true)).toBe('*');
  });
});
