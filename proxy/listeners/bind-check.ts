/**
 * Can a listener's address be bound? Envoy binds a listener's socket when LDS adds it and NACKs
 * the update when the bind fails (EADDRINUSE, EACCES, an address not on this host). meshlet binds
 * later, when the listener has warmed, so LDS asks here first with a trial bind that is closed at
 * once; the real bind can still lose a race, and is then reported in the listener's error_state.
 */
import net from 'node:net';
import type { ListenerConfig } from '../config/types';
import { sameAddress } from './listener-manager';

/** Why `l` cannot be bound, or undefined. `previous`: the accepted version of the same listener. */
export function bindProblem(l: ListenerConfig, previous: ListenerConfig | undefined): Promise<string | undefined> {
  if (!l.bindToPort) return Promise.resolve(undefined);
  // Same address as the listener already serving: updated in place, nothing new to bind.
  if (previous?.bindToPort && sameAddress(previous.address, l.address)) return Promise.resolve(undefined);
  const a = l.address;
  if (a.kind === 'socket' && a.port === 0) return Promise.resolve(undefined);
  const where = a.kind === 'pipe' ? a.path : `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', (e: NodeJS.ErrnoException) => resolve(`cannot bind ${where}: ${e.code ?? e.message}${e.code ? ` (${describe(e.code)})` : ''}`));
    const done = (): void => {
      s.close(() => resolve(undefined));
    };
    // exclusive: a trial inside a node:cluster worker must not borrow the primary's handle.
    if (a.kind === 'pipe') s.listen({ path: a.path, exclusive: true }, done);
    else s.listen({ host: a.host, port: a.port, exclusive: true }, done);
  });
}

function describe(code: string): string {
  switch (code) {
    case 'EADDRINUSE':
      return 'address already in use';
    case 'EACCES':
      return 'permission denied';
    case 'EADDRNOTAVAIL':
      return 'address not available on this host';
    default:
      return 'bind failed';
  }
}
