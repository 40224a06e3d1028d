/**
 * Reading an envoy.config.core.v3.DataSource (inline string/bytes, file, environment variable).
 * Control-plane side only: called when a context or channel is (re)built, never per request.
 */
import { readFileSync } from 'node:fs';
import type { DataSource } from './types';

/** The DataSource's content as UTF-8 text. Throws a readable error (missing file, unset variable). */
export function readDataSource(ds: DataSource): string {
  switch (ds.kind) {
    case 'inline_string':
      return ds.value;
    case 'inline_bytes':
      return Buffer.from(ds.value, 'base64').toString('utf8');
    case 'filename':
      return readFileSync(ds.value, 'utf8');
    case 'environment_variable': {
      const v = process.env[ds.value];
      if (v === undefined) throw new Error(`environment variable ${ds.value} is not set`);
      return v;
    }
  }
}
