/**
 * The "applications" of the interception tests, as small plain-Node scripts run inside the pod
 * namespaces (they must not depend on the test runner): a server app answering HTTP/1.1, HTTP/2
 * (h2c), a TCP echo, a server-first greeter (speaks before the client, like MySQL/SMTP) and two
 * plain ports that report the peer address; and a client app that makes one call and prints
 * what it got as one JSON line. Every answer carries the peer address the server saw.
 */

/** Ports of the server app. */
export const APP_PORTS = { http1: 8080, http2: 8081, tcpEcho: 9000, greeter: 3306, direct: 7070, passthrough: 7071 } as const;

export const SERVER_APP = `
'use strict';
const http = require('node:http');
const http2 = require('node:http2');
const net = require('node:net');
const P = ${JSON.stringify(APP_PORTS)};
const peer = (s) => (s.remoteAddress || '').replace(/^::ffff:/, '');
// Dual-stack: '::' accepts IPv4 too (peers shown without the ::ffff: prefix).
const servers = [];
const h1 = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    const out = JSON.stringify({ app: 'h1', peer: peer(req.socket), url: req.url, httpVersion: req.httpVersion, headers: req.headers, body });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
    res.end(out);
  });
});
servers.push([h1, P.http1]);
const h2 = http2.createServer((req, res) => {
  const out = JSON.stringify({ app: 'h2', peer: peer(req.socket), url: req.url, httpVersion: req.httpVersion, headers: req.headers });
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(out);
});
servers.push([h2, P.http2]);
servers.push([net.createServer((s) => { s.on('error', () => {}); s.on('data', (d) => s.write('[' + peer(s) + ']' + d)); s.on('end', () => s.end()); }), P.tcpEcho]);
servers.push([net.createServer((s) => { s.on('error', () => {}); s.write('220 greeter ready; you are ' + peer(s) + '\\r\\n'); s.on('data', (d) => s.write('echo:' + d)); s.on('end', () => s.end()); }), P.greeter]);
servers.push([net.createServer((s) => { s.on('error', () => {}); s.end('direct ' + peer(s) + '\\n'); }), P.direct]);
servers.push([net.createServer((s) => { s.on('error', () => {}); s.end('passthrough ' + peer(s) + '\\n'); }), P.passthrough]);
let n = 0;
for (const [srv, port] of servers) srv.listen(port, '::', () => { if (++n === servers.length) process.stdout.write('ready\\n'); });
`;

/**
 * node client.js MODE HOST PORT [ARG]: one call, one JSON line on stdout.
 *   h1 PATH | h2 PATH    → { status, body }
 *   tcp PAYLOAD          → { data } (client speaks first)
 *   greet                → { greeting, echo } (server speaks first: the client waits for it)
 *   read                 → { data, closed } (read until the server closes or 3 s pass)
 *   send PAYLOAD         → { data, closed } (write, then read until the server closes or 3 s pass)
 */
export const CLIENT_APP = `
'use strict';
const http = require('node:http');
const http2 = require('node:http2');
const net = require('node:net');
const [mode, host, portS, arg] = process.argv.slice(2);
const port = Number(portS);
const done = (o) => { process.stdout.write(JSON.stringify(o) + '\\n'); process.exit(0); };
const fail = (e) => done({ error: String(e && e.message || e) });
setTimeout(() => fail('client timeout'), 8000).unref();
if (mode === 'h1') {
  http.get({ host, port, path: arg || '/', agent: false }, (res) => {
    let body = '';
    res.on('data', (c) => (body += c));
    res.on('end', () => done({ status: res.statusCode, body }));
  }).on('error', fail);
} else if (mode === 'h2') {
  const c = http2.connect('http://' + host + ':' + port);
  c.on('error', fail);
  const r = c.request({ ':path': arg || '/' });
  let status = 0, body = '';
  r.on('response', (h) => (status = h[':status']));
  r.on('data', (d) => (body += d));
  r.on('end', () => { c.close(); done({ status, body }); });
  r.on('error', fail);
  r.end();
} else if (mode === 'tcp') {
  const s = net.connect(port, host, () => s.write(arg));
  let data = '';
  s.on('data', (d) => { data += d; if (data.includes(arg)) { s.destroy(); done({ data }); } });
  s.on('error', fail);
} else if (mode === 'greet') {
  const s = net.connect(port, host);
  let data = '', greeting;
  s.on('data', (d) => {
    data += d;
    if (greeting === undefined && data.includes('\\r\\n')) { greeting = data; data = ''; s.write('ping'); }
    else if (greeting !== undefined && data.includes('ping')) { s.destroy(); done({ greeting, echo: data }); }
  });
  s.on('error', fail);
} else if (mode === 'read' || mode === 'send') {
  const s = net.connect({ port, host }, () => { if (mode === 'send') s.write(arg); });
  let data = '';
  const t = setTimeout(() => { s.destroy(); done({ data, closed: false }); }, 3000);
  s.on('data', (d) => (data += d));
  s.on('close', () => { clearTimeout(t); done({ data, closed: true }); });
  s.on('error', () => {});
} else fail('unknown mode ' + mode);
`;
