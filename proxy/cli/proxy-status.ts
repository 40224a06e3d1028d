/**
 * `meshlet proxy-status [--xds HOST:PORT] [NODE_ID]`: istioctl proxy-status over Envoy's CSDS
 * (ClientStatusDiscoveryService.FetchClientStatus), against the embedded control plane or any xDS
 * server that answers CSDS. One row per connected proxy; per type (CDS, LDS, EDS, RDS, SDS) the
 * status — SYNCED, NOT SENT, STALE, NACKED — with the version the proxy ACKed; the reason of
 * each NACK is printed under the table.
 */
import * as grpc from '@grpc/grpc-js';
import { parseArgs } from 'node:util';
import { stringify as toYaml } from 'yaml';
import {
  type ClientConfigProto,
  type ClientStatusRequestProto,
  type ClientStatusResponseProto,
  csdsServiceDefinition,
  type GenericXdsConfigProto,
} from '../../xds-client/csds';
import { renderTable, stdoutTableOptions } from './table';

const USAGE = `meshlet proxy-status [--xds HOST:PORT] [-o short|json|yaml] [NODE_ID]

      --xds HOST:PORT     the xDS server answering CSDS (default 127.0.0.1:15010, the embedded control plane)
      --timeout SECONDS   give up after this long (default 10)
  -o, --output FORMAT     short (table, default), json or yaml (the ClientStatusResponse)`;

const COLUMNS: readonly [string, string][] = [
  ['CDS', '.Cluster'],
  ['LDS', '.Listener'],
  ['EDS', '.ClusterLoadAssignment'],
  ['RDS', '.RouteConfiguration'],
  ['SDS', '.Secret'],
];

function fetchClientStatus(address: string, req: ClientStatusRequestProto, timeoutMs: number): Promise<ClientStatusResponseProto> {
  const def = csdsServiceDefinition().FetchClientStatus!;
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      req,
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err: grpc.ServiceError | null, res?: unknown) => {
        client.close();
        if (err) reject(new Error(`CSDS FetchClientStatus at ${address}: ${err.code === grpc.status.UNIMPLEMENTED ? 'the server does not answer CSDS' : err.details || err.message}`));
        else resolve((res ?? {}) as ClientStatusResponseProto);
      },
    );
  });
}

function cell(g: GenericXdsConfigProto | undefined): string {
  if (!g) return '-';
  const v = g.version_info ? ` (${g.version_info})` : '';
  switch (g.config_status) {
    case 'SYNCED':
      return `SYNCED${v}`;
    case 'NOT_SENT':
      return 'NOT SENT';
    case 'STALE':
      return `STALE${v}`;
    case 'ERROR':
      return `NACKED${g.error_state?.version_info ? ` (${g.error_state.version_info})` : ''}`;
    default:
      return g.config_status ?? 'UNKNOWN';
  }
}

export function statusTable(configs: readonly ClientConfigProto[]): { headers: string[]; rows: string[][]; nacks: string[] } {
  const rows: string[][] = [];
  const nacks: string[] = [];
  for (const c of [...configs].sort((a, b) => (a.node?.id ?? '').localeCompare(b.node?.id ?? ''))) {
    const id = c.node?.id ?? '?';
    const gs = c.generic_xds_configs ?? [];
    const row = [id];
    for (const [col, suffix] of COLUMNS) {
      // Per-resource answers (Envoy's own CSDS) have one entry per resource: any NACK wins, then
      // any not-yet-synced one.
      const of = gs.filter((g) => g.type_url.endsWith(suffix));
      const worst = of.find((g) => g.config_status === 'ERROR' || g.client_status === 'NACKED') ?? of.find((g) => g.config_status !== 'SYNCED') ?? of[0];
      row.push(cell(worst));
      for (const g of of) {
        if (g.config_status === 'ERROR' || g.error_state?.details) {
          nacks.push(`${id} ${col}${g.name ? ` ${g.name}` : ''}: NACKED version ${g.error_state?.version_info ?? '?'}: ${g.error_state?.details ?? '(no detail)'}`);
        }
      }
    }
    row.push(c.client_scope || '-');
    rows.push(row);
  }
  return { headers: ['NAME', ...COLUMNS.map(([c]) => c), 'STREAM'], rows, nacks };
}

export async function runProxyStatus(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        xds: { type: 'string', default: '127.0.0.1:15010' },
        timeout: { type: 'string', default: '10' },
        output: { type: 'string', short: 'o', default: 'short' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`meshlet proxy-status: ${(err as Error).message}\n\nUsage: ${USAGE}\n`);
    return 1;
  }
  const v = parsed.values;
  if (v.help) {
    process.stdout.write(`Usage: ${USAGE}\n`);
    return 0;
  }
  const timeoutS = Number(v.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) {
    process.stderr.write('meshlet proxy-status: --timeout must be a positive number of seconds\n');
    return 1;
  }
  if (parsed.positionals.length > 1) {
    process.stderr.write(`meshlet proxy-status: one NODE_ID at most\n`);
    return 1;
  }
  const node = parsed.positionals[0];
  try {
    const res = await fetchClientStatus(String(v.xds).replace(/^https?:\/\//, ''), node ? { node: { id: node } } : {}, timeoutS * 1000);
    const configs = res.config ?? [];
    if (v.output === 'json' || v.output === 'yaml') {
      process.stdout.write(v.output === 'yaml' ? toYaml(res) : `${JSON.stringify(res, null, 2)}\n`);
      return 0;
    }
    if (configs.length === 0) {
      process.stdout.write(node ? `no connected proxy with node id "${node}"\n` : 'no connected proxies\n');
      return node ? 1 : 0;
    }
    const t = statusTable(configs);
    process.stdout.write(renderTable(t.headers, t.rows, stdoutTableOptions()));
    if (t.nacks.length > 0) process.stdout.write(`\n${t.nacks.join('\n')}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`meshlet proxy-status: ${(err as Error).message}\n`);
    return 1;
  }
}
