/**
 * Reading an envoy.config.core.v3.DataSource (inline string/bytes, file, environment variable):
 * the one implementation used by the decoders (direct_response bodies), the TLS layer, the
 * certificate store and the xDS client's channel credentials. Control-plane side only: called
 * when a context, channel or config is (re)built, never per request. Throws a readable error for
 * a missing file or an unset variable.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { DataSource } from './config-types';

function envValue(name: string): string {
  const v = process.env[name];
  if (v === undefined) throw new Error(`environment variable ${name} is not set`);
  return v;
}

/** The DataSource's bytes; `read` resolves file names (default: fs.readFileSync). */
export function dataSourceBytes(ds: DataSource, read: (path: string) => Buffer = readFileSync): Buffer {
  switch (ds.kind) {
    case 'inline_string':
      return Buffer.from(ds.value, 'utf8');
    case 'inline_bytes':
      return Buffer.from(ds.value, 'base64');
    case 'environment_variable':
      return Buffer.from(envValue(ds.value), 'utf8');
    case 'filename':
      return read(ds.value);
  }
}

/** The DataSource's content as UTF-8 text. */
export function readDataSource(ds: DataSource): string {
  return ds.kind === 'inline_string' ? ds.value : dataSourceBytes(ds).toString('utf8');
}

/** The same, reading files without blocking the event loop. */
export async function readDataSourceAsync(ds: DataSource): Promise<string> {
  return ds.kind === 'filename' ? readFile(ds.value, 'utf8') : readDataSource(ds);
}
