import { describe, expect, it } from 'vitest';
import { decodeListener, decodeSecret } from '../../proxy/config/envoy';
import { decodeRbac } from '../../proxy/config/envoy/rbac';
import { Issues, Reader } from '../../common/reader';
import { ctx, TCP_PROXY_TYPE, TYPE_PREFIX } from './helpers';

describe('decodeSecret', () => {
  it('decodes a tls_certificate secret', () => {
    const { value, errors, warnings } = decodeSecret(
      {
        name: 'default',
        tls_certificate: {
          certificate_chain: { filename: '/etc/certs/cert-chain.pem' },
          private_key: { inline_string: 'KEY' },
        },
      },
      ctx(),
    );
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
    expect(value).toEqual({
      name: 'default',
      tlsCertificate: {
        certificateChain: { kind: 'filename', value: '/etc/certs/cert-chain.pem' },
        privateKey: { kind: 'inline_string', value: 'KEY' },
      },
    });
  });

  it('decodes a validation_context secret, expanding legacy match_subject_alt_names to every SAN type', () => {
    const { value, errors } = decodeSecret(
      {
        name: 'ROOTCA',
        validation_context: {
          trusted_ca: { environment_variable: 'ROOT_CA' },
          match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { suffix: '.svc', ignore_case: true } }],
          match_subject_alt_names: [{ prefix: 'spiffe://cluster.local/' }],
          crl: { inline_bytes: Buffer.from('crl').toString('base64') },
          only_verify_leaf_cert_crl: true,
        },
      },
      ctx(),
    );
    expect(errors).toEqual([]);
    const legacy = { kind: 'prefix', value: 'spiffe://cluster.local/', ignoreCase: false };
    expect(value).toEqual({
      name: 'ROOTCA',
      validationContext: {
        trustedCa: { kind: 'environment_variable', value: 'ROOT_CA' },
        matchTypedSubjectAltNames: [
          { sanType: 'DNS', matcher: { kind: 'suffix', value: '.svc', ignoreCase: true } },
          { sanType: 'DNS', matcher: legacy },
          { sanType: 'URI', matcher: legacy },
          { sanType: 'EMAIL', matcher: legacy },
          { sanType: 'IP_ADDRESS', matcher: legacy },
        ],
        crl: { kind: 'inline_bytes', value: Buffer.from('crl').toString('base64') },
        onlyVerifyLeafCertCrl: true,
      },
    });
  });

  it.each([
    [
      { tls_certificate: {} },
      [
        { path: 'name', message: 'is required' },
        { path: 'tls_certificate.certificate_chain', message: 'is required' },
        { path: 'tls_certificate.private_key', message: 'is required' },
      ],
    ],
    [{ name: 's' }, [{ path: '(root)', message: 'one of tls_certificate, validation_context must be set' }]],
    [
      { name: 's', generic_secret: { secret: { inline_string: 'x' } } },
      [{ path: 'generic_secret', message: 'is not supported by meshlet' }],
    ],
    [
      {
        name: 's',
        tls_certificate: {
          certificate_chain: { filename: 'a', inline_string: 'b' },
          private_key: { inline_string: 'k' },
        },
      },
      [
        {
          path: 'tls_certificate.certificate_chain.inline_string',
          message:
            'only one of filename, inline_string, inline_bytes, environment_variable may be set (also found filename)',
        },
      ],
    ],
    [
      {
        name: 's',
        tls_certificate: {
          certificate_chain: { filename: '' },
          private_key: { inline_string: 'k' },
          private_key_provider: {},
        },
      },
      [
        { path: 'tls_certificate.certificate_chain.filename', message: 'must not be empty' },
        { path: 'tls_certificate.private_key_provider', message: 'is not supported by meshlet' },
      ],
    ],
    [
      { name: 's', validation_context: { verify_certificate_spki: ['abc'] } },
      [
        {
          path: 'validation_context.verify_certificate_spki',
          message: 'certificate pinning is not supported by meshlet',
        },
      ],
    ],
    [
      {
        name: 's',
        validation_context: { match_typed_subject_alt_names: [{ matcher: { exact: 'a' } }, { san_type: 'URI' }] },
      },
      [
        {
          path: 'validation_context.match_typed_subject_alt_names[0].san_type',
          message: 'must be one of EMAIL, DNS, URI, IP_ADDRESS, OTHER_NAME',
        },
        { path: 'validation_context.match_typed_subject_alt_names[1].matcher', message: 'is required' },
      ],
    ],
    [
      { name: 's', validation_context: { allow_expired_certificate: true } },
      [{ path: 'validation_context.allow_expired_certificate', message: 'is not supported by meshlet' }],
    ],
  ])('reports secret error %#', (raw, expected) => {
    const res = decodeSecret(raw, ctx());
    expect(res.errors).toEqual(expected);
    expect(res.warnings).toEqual([]);
    expect(res.value).toBeUndefined();
  });
});

const RBAC_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.network.rbac.v3.RBAC`;

function rbacListener(rbac: Record<string, unknown>) {
  return {
    name: 'l',
    address: { socket_address: { address: '0.0.0.0', port_value: 1 } },
    filter_chains: [
      {
        filters: [
          { name: 'rbac', typed_config: { '@type': RBAC_TYPE, stat_prefix: 'tcp.', ...rbac } },
          { name: 'tcp', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: 't', cluster: 'c' } },
        ],
      },
    ],
  };
}
const P = 'filter_chains[0].filters[0].typed_config';

describe('RBAC', () => {
  it('decodes every permission and principal kind', () => {
    const rules = {
      action: 'ALLOW',
      policies: {
        'ns[default]-policy[allow-frontend]': {
          permissions: [
            {
              and_rules: {
                rules: [
                  {
                    or_rules: {
                      rules: [
                        { destination_port: 8080 },
                        { destination_ip: { address_prefix: '10.0.0.0', prefix_len: 8 } },
                      ],
                    },
                  },
                  { not_rule: { url_path: { path: { prefix: '/admin' } } } },
                  { header: { name: ':method', string_match: { exact: 'GET' } } },
                  { requested_server_name: { suffix: '.example.com' } },
                ],
              },
            },
            { any: true },
          ],
          principals: [
            { authenticated: { principal_name: { exact: 'spiffe://cluster.local/ns/default/sa/frontend' } } },
            { authenticated: {} },
            {
              and_ids: {
                ids: [
                  { remote_ip: { address_prefix: '192.168.0.0', prefix_len: 16 } },
                  { not_id: { direct_remote_ip: { address_prefix: '192.168.1.1', prefix_len: 32 } } },
                ],
              },
            },
            {
              or_ids: {
                ids: [
                  { source_ip: { address_prefix: '::1', prefix_len: 128 } },
                  { header: { name: 'x-user', present_match: true } },
                ],
              },
            },
            { url_path: { path: { exact: '/healthz' } } },
            { any: true },
          ],
        },
      },
    };
    const { value, errors, warnings } = decodeListener(
      rbacListener({ rules, shadow_rules: { action: 'DENY', policies: {} } }),
      ctx(),
    );
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
    const f = value!.filterChains[0]!.filters[0]!;
    if (f.kind !== 'rbac') throw new Error('expected rbac');
    expect(f.rbac.statPrefix).toBe('tcp.');
    expect(f.rbac.shadowRules).toEqual({ action: 'DENY', policies: [] });
    const [policy] = f.rbac.rules!.policies;
    expect(policy!.name).toBe('ns[default]-policy[allow-frontend]');
    expect(policy!.permissions).toEqual([
      {
        kind: 'and',
        rules: [
          {
            kind: 'or',
            rules: [
              { kind: 'destination_port', port: 8080 },
              { kind: 'destination_ip', cidr: { addressPrefix: '10.0.0.0', prefixLen: 8 } },
            ],
          },
          { kind: 'not', rule: { kind: 'url_path', matcher: { kind: 'prefix', value: '/admin', ignoreCase: false } } },
          {
            kind: 'header',
            header: {
              name: ':method',
              match: { kind: 'string', matcher: { kind: 'exact', value: 'GET', ignoreCase: false } },
              invert: false,
              treatMissingAsEmpty: false,
            },
          },
          { kind: 'requested_server_name', matcher: { kind: 'suffix', value: '.example.com', ignoreCase: false } },
        ],
      },
      { kind: 'any' },
    ]);
    expect(policy!.principals).toEqual([
      {
        kind: 'authenticated',
        principalName: { kind: 'exact', value: 'spiffe://cluster.local/ns/default/sa/frontend', ignoreCase: false },
      },
      { kind: 'authenticated' },
      {
        kind: 'and',
        ids: [
          { kind: 'remote_ip', cidr: { addressPrefix: '192.168.0.0', prefixLen: 16 } },
          { kind: 'not', id: { kind: 'direct_remote_ip', cidr: { addressPrefix: '192.168.1.1', prefixLen: 32 } } },
        ],
      },
      {
        kind: 'or',
        ids: [
          { kind: 'source_ip', cidr: { addressPrefix: '::1', prefixLen: 128 } },
          {
            kind: 'header',
            header: {
              name: 'x-user',
              match: { kind: 'present', present: true },
              invert: false,
              treatMissingAsEmpty: false,
            },
          },
        ],
      },
      { kind: 'url_path', matcher: { kind: 'exact', value: '/healthz', ignoreCase: false } },
      { kind: 'any' },
    ]);
  });

  it('no rules means allow everything (rules undefined)', () => {
    const { value, errors } = decodeListener(rbacListener({}), ctx());
    expect(errors).toEqual([]);
    const f = value!.filterChains[0]!.filters[0]!;
    expect(f.kind === 'rbac' && f.rbac.rules).toBeUndefined();
  });

  it('fails closed on anything it cannot enforce', () => {
    const rules = {
      action: 'DENY',
      policies: {
        a: {
          permissions: [{ metadata: { filter: 'x' } }],
          principals: [{ filter_state: { key: 'k' } }],
          condition: { call_expr: {} },
        },
        b: { permissions: [], principals: [] },
        c: { permissions: [{ any: false }], principals: [{ and_ids: { ids: [] } }] },
        d: { permissions: [{ and_rules: { rules: [{ typo: true }] } }], principals: [{ any: true }] },
      },
    };
    const { value, errors } = decodeListener(rbacListener({ rules, matcher: {} }), ctx());
    expect(value).toBeUndefined();
    expect(errors).toEqual([
      { path: `${P}.rules.policies.a.permissions[0].metadata.path`, message: 'at least one path segment is required' },
      { path: `${P}.rules.policies.a.permissions[0].metadata.value`, message: 'is required' },
      {
        path: `${P}.rules.policies.a.principals[0].filter_state.string_match`,
        message: 'is required (meshlet matches filter state as a string)',
      },
      {
        path: `${P}.rules.policies.a.principals[0].filter_state.key`,
        message: 'filter state key "k" is not supported (meshlet provides io.istio.peer_principal and io.istio.local_principal)',
      },
      { path: `${P}.rules.policies.a.condition`, message: 'CEL conditions are not supported by meshlet' },
      { path: `${P}.rules.policies.b.permissions`, message: 'at least one permission is required' },
      { path: `${P}.rules.policies.b.principals`, message: 'at least one principal is required' },
      { path: `${P}.rules.policies.c.permissions[0].any`, message: 'must be true' },
      { path: `${P}.rules.policies.c.principals[0].and_ids.ids`, message: 'at least one principal is required' },
      {
        path: `${P}.rules.policies.d.permissions[0].and_rules.rules[0]`,
        message:
          'a permission rule must be set (any, and_rules, or_rules, not_rule, header, url_path, destination_ip, destination_port, requested_server_name)',
      },
      { path: `${P}.matcher`, message: 'the matcher API is not supported by meshlet; use rules' },
    ]);
  });

  it('the network filter requires stat_prefix; decodeRbac serves the HTTP filter with another key', () => {
    const l = rbacListener({});
    delete (l.filter_chains[0]!.filters[0]!.typed_config as Record<string, unknown>).stat_prefix;
    expect(decodeListener(l, ctx()).errors).toEqual([{ path: `${P}.stat_prefix`, message: 'is required' }]);
    const issues = new Issues();
    const r = new Reader({ rules_stat_prefix: 'http.', rules: { action: 'LOG', policies: {} } }, '', issues);
    const cfg = decodeRbac(r, ctx(), { statPrefixKey: 'rules_stat_prefix' });
    r.done();
    expect(issues.errors).toEqual([]);
    expect(issues.warnings).toEqual([]);
    expect(cfg).toEqual({ rules: { action: 'LOG', policies: [] }, statPrefix: 'http.' });
  });
});
