/**
 * PKCS#10 certificate signing requests (RFC 2986) as the CA reads them: RSA and EC keys alike.
 *
 * Owns decoding and verifying a PEM CSR: the DER structure is walked with node-forge's generic
 * ASN.1 reader (forge's own CSR decoder only knows RSA keys), the self-signature is checked with
 * node:crypto, and the result is the subject public key (SPKI DER, for the certificate) and the
 * URI SANs requested in the extensionRequest attribute. Leans strict: anything it does not
 * recognise (an unknown signature algorithm, a weak key, trailing bytes) is refused with a reason.
 */
import { createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import forge from 'node-forge';
import { MeshletError } from '../common/errors';

/** What the CA needs from a verified CSR. */
export interface ParsedCsr {
  /** SubjectPublicKeyInfo, DER: goes into the certificate unchanged. */
  readonly spkiDer: Buffer;
  readonly publicKey: KeyObject;
  /** `rsa-2048`, `ec-prime256v1`, … for logs. */
  readonly keyDescription: string;
  readonly keyType: 'rsa' | 'ec';
  readonly uriSans: readonly string[];
}

/** Signature algorithm OIDs accepted on CSRs → node:crypto digest. */
const SIG_ALGS: Readonly<Record<string, string>> = {
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
};
const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const SUBJECT_ALT_NAME = '2.5.29.17';
/** Curves accepted for EC keys (Istio's agent uses P-256; P-384 costs little more). */
const CURVES = new Set(['prime256v1', 'secp384r1']);
/** Larger than any CSR a workload sends; bounds the work done on untrusted input. */
const MAX_CSR_BYTES = 16 * 1024;

type Asn1 = forge.asn1.Asn1;

function denied(message: string): MeshletError {
  return new MeshletError('MESHLET_ERR_DENIED', message);
}
function malformed(message: string, cause?: unknown): MeshletError {
  return new MeshletError('MESHLET_ERR_CONFIG', `CSR could not be parsed (PEM PKCS#10 expected): ${message}`, { cause });
}

function seq(node: Asn1 | undefined, what: string): Asn1[] {
  if (!node || !Array.isArray(node.value)) throw malformed(`${what} is not a constructed value`);
  return node.value as Asn1[];
}

function oidOf(node: Asn1 | undefined, what: string): string {
  if (!node || node.type !== forge.asn1.Type.OID || typeof node.value !== 'string') throw malformed(`${what} is not an OID`);
  return forge.asn1.derToOid(node.value);
}

function der(node: Asn1): Buffer {
  return Buffer.from(forge.asn1.toDer(node).getBytes(), 'binary');
}

/** URI SANs (GeneralName [6]) from the extensionRequest attribute, if any. */
function requestedUris(attributes: Asn1 | undefined): string[] {
  const out: string[] = [];
  if (!attributes || !Array.isArray(attributes.value)) return out;
  for (const attr of attributes.value as Asn1[]) {
    const [type, values] = seq(attr, 'attribute');
    if (oidOf(type, 'attribute type') !== EXTENSION_REQUEST) continue;
    for (const exts of seq(values, 'attribute values')) {
      for (const ext of seq(exts, 'extensions')) {
        const parts = seq(ext, 'extension');
        if (oidOf(parts[0], 'extension id') !== SUBJECT_ALT_NAME) continue;
        const value = parts[parts.length - 1];
        if (!value || typeof value.value !== 'string') throw malformed('subjectAltName value is not an OCTET STRING');
        const names = forge.asn1.fromDer(value.value);
        for (const gn of seq(names, 'GeneralNames')) {
          if (gn.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && gn.type === 6 && typeof gn.value === 'string') {
            out.push(Buffer.from(gn.value, 'binary').toString('utf8'));
          }
        }
      }
    }
  }
  return out;
}

/**
 * Decode and verify a PEM CSR. Throws MeshletError: MESHLET_ERR_CONFIG when it cannot be
 * decoded, MESHLET_ERR_DENIED when it decodes but must not be signed (bad signature, weak key).
 */
export function parseCsr(pem: string): ParsedCsr {
  if (pem.length > MAX_CSR_BYTES) throw malformed(`larger than ${MAX_CSR_BYTES} bytes`);
  const m = /-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----([\s\S]+?)-----END (?:NEW )?CERTIFICATE REQUEST-----/.exec(pem);
  if (!m) throw malformed('no CERTIFICATE REQUEST block');
  let root: Asn1;
  try {
    const bytes = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64').toString('binary');
    // @types/node-forge declares only the boolean form of the options.
    const fromDer = forge.asn1.fromDer as unknown as (b: string, o: { strict: boolean; parseAllBytes: boolean; decodeBitStrings: boolean }) => Asn1;
    root = fromDer(bytes, { strict: true, parseAllBytes: true, decodeBitStrings: false });
  } catch (err) {
    throw malformed(String((err as Error).message ?? err), err);
  }
  const [info, sigAlg, sig] = seq(root, 'CertificationRequest');
  const infoParts = seq(info, 'certificationRequestInfo');
  const spkiNode = infoParts[2];
  if (!spkiNode) throw malformed('no subjectPKInfo');
  const algOid = oidOf(seq(sigAlg, 'signatureAlgorithm')[0], 'signature algorithm');
  const digest = SIG_ALGS[algOid];
  if (!digest) throw denied(`CSR signature algorithm ${algOid} is not accepted (RSA or ECDSA with SHA-256/384/512)`);
  if (!sig || sig.type !== forge.asn1.Type.BITSTRING || typeof sig.value !== 'string') throw malformed('signature is not a BIT STRING');
  const signature = Buffer.from(sig.value, 'binary').subarray(1); // leading "unused bits" byte
  const spkiDer = der(spkiNode);
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
  } catch (err) {
    throw malformed(`subject public key: ${(err as Error).message}`, err);
  }
  const details = publicKey.asymmetricKeyDetails ?? {};
  let keyDescription: string;
  let keyType: 'rsa' | 'ec';
  if (publicKey.asymmetricKeyType === 'rsa') {
    keyType = 'rsa';
    keyDescription = `rsa-${details.modulusLength}`;
    if ((details.modulusLength ?? 0) < 2048) throw denied(`CSR key ${keyDescription} is too weak (RSA >= 2048 bits or EC P-256)`);
    if (algOid.startsWith('1.2.840.10045')) throw denied('CSR is signed with ECDSA but carries an RSA key');
  } else if (publicKey.asymmetricKeyType === 'ec') {
    keyType = 'ec';
    keyDescription = `ec-${details.namedCurve}`;
    if (!CURVES.has(details.namedCurve ?? '')) throw denied(`CSR key curve ${details.namedCurve} is not accepted (P-256 or P-384)`);
    if (!algOid.startsWith('1.2.840.10045')) throw denied('CSR carries an EC key but is not signed with ECDSA');
  } else {
    throw denied(`CSR key type ${publicKey.asymmetricKeyType} is not accepted (RSA or EC)`);
  }
  if (!verify(digest, der(info!), publicKey, signature)) throw denied('CSR signature does not verify');
  return { spkiDer, publicKey, keyDescription, keyType, uriSans: requestedUris(infoParts[3]) };
}

const SIGN_OID: Readonly<Record<'rsa' | 'ec', string>> = { rsa: '1.2.840.113549.1.1.11', ec: '1.2.840.10045.4.3.2' };

/**
 * A PEM PKCS#10 CSR with one URI SAN (a SPIFFE ID, as Istio's agent sends), empty subject, signed
 * with SHA-256 by `privateKey` (RSA or EC): the CA needs nothing else.
 */
export function buildCsr(spiffeId: string, privateKey: KeyObject): string {
  const { asn1 } = forge;
  const C = asn1.Class;
  const T = asn1.Type;
  const keyType = privateKey.asymmetricKeyType === 'ec' ? 'ec' : 'rsa';
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const san = asn1.create(C.UNIVERSAL, T.SEQUENCE, true, [asn1.create(C.CONTEXT_SPECIFIC, 6, false, spiffeId)]);
  const extensions = asn1.create(C.UNIVERSAL, T.SEQUENCE, true, [
    asn1.create(C.UNIVERSAL, T.SEQUENCE, true, [
      asn1.create(C.UNIVERSAL, T.OID, false, asn1.oidToDer(SUBJECT_ALT_NAME).getBytes()),
      asn1.create(C.UNIVERSAL, T.OCTETSTRING, false, asn1.toDer(san).getBytes()),
    ]),
  ]);
  const info = asn1.create(C.UNIVERSAL, T.SEQUENCE, true, [
    asn1.create(C.UNIVERSAL, T.INTEGER, false, '\x00'),
    asn1.create(C.UNIVERSAL, T.SEQUENCE, true, []),
    asn1.fromDer(spki.toString('binary')),
    asn1.create(C.CONTEXT_SPECIFIC, 0, true, [
      asn1.create(C.UNIVERSAL, T.SEQUENCE, true, [
        asn1.create(C.UNIVERSAL, T.OID, false, asn1.oidToDer(EXTENSION_REQUEST).getBytes()),
        asn1.create(C.UNIVERSAL, T.SET, true, [extensions]),
      ]),
    ]),
  ]);
  const signature = sign('sha256', der(info), privateKey);
  const algParams = keyType === 'rsa' ? [asn1.create(C.UNIVERSAL, T.NULL, false, '')] : [];
  const csr = asn1.create(C.UNIVERSAL, T.SEQUENCE, true, [
    info,
    asn1.create(C.UNIVERSAL, T.SEQUENCE, true, [asn1.create(C.UNIVERSAL, T.OID, false, asn1.oidToDer(SIGN_OID[keyType]).getBytes()), ...algParams]),
    asn1.create(C.UNIVERSAL, T.BITSTRING, false, `\x00${signature.toString('binary')}`),
  ]);
  const b64 = der(csr).toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}-----END CERTIFICATE REQUEST-----\n`;
}
