// Generates, at run time, the certificates the mesh-hop scenarios use for mTLS: one CA, an inbound
// (server) and an outbound (client) workload certificate carrying SPIFFE URI SANs as Istio issues
// them. Uses openssl with ECDSA P-256 (what Istio's CA issues by default). Nothing is checked in.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const TRUST_DOMAIN = 'cluster.local';

/**
 * @param {string} dir an existing private directory
 * @returns {{ca: string, server: {cert: string, key: string, pem: string, spiffe: string}, client: {cert: string, key: string, pem: string, spiffe: string}}}
 */
export function makeCerts(dir) {
  const p = (f) => path.join(dir, f);
  const ossl = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  ossl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', p('ca.key'));
  ossl(
    'req',
    '-x509',
    '-new',
    '-key',
    p('ca.key'),
    '-sha256',
    '-days',
    '2',
    '-subj',
    '/O=meshlet-bench/CN=meshlet bench CA',
    '-out',
    p('ca.crt'),
  );
  const issue = (name, sa) => {
    const spiffe = `spiffe://${TRUST_DOMAIN}/ns/bench/sa/${sa}`;
    writeFileSync(
      p(`${name}.ext`),
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage=serverAuth,clientAuth',
        `subjectAltName=URI:${spiffe},DNS:localhost,IP:127.0.0.1`,
        '',
      ].join('\n'),
    );
    ossl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', p(`${name}.ec.key`));
    // PKCS#8 key: accepted by nginx, HAProxy, Node and Envoy-style loaders alike.
    ossl('pkcs8', '-topk8', '-nocrypt', '-in', p(`${name}.ec.key`), '-out', p(`${name}.key`));
    ossl('req', '-new', '-key', p(`${name}.key`), '-subj', `/O=meshlet-bench/CN=${sa}`, '-out', p(`${name}.csr`));
    ossl(
      'x509',
      '-req',
      '-in',
      p(`${name}.csr`),
      '-CA',
      p('ca.crt'),
      '-CAkey',
      p('ca.key'),
      '-CAcreateserial',
      '-days',
      '2',
      '-sha256',
      '-extfile',
      p(`${name}.ext`),
      '-out',
      p(`${name}.crt`),
    );
    writeFileSync(p(`${name}.pem`), readFileSync(p(`${name}.crt`), 'utf8') + readFileSync(p(`${name}.key`), 'utf8'));
    return { cert: p(`${name}.crt`), key: p(`${name}.key`), pem: p(`${name}.pem`), spiffe };
  };
  return { ca: p('ca.crt'), server: issue('inbound', 'inbound'), client: issue('outbound', 'outbound') };
}
