/** The URL at which the other server of a pair reaches this one, when ADVERTISE_URL does not say. */
import { isIP } from 'node:net';
import type { networkInterfaces } from 'node:os';

/** Addresses that mean "every interface": they name no one address another machine could reach. */
const WILDCARDS = new Set(['', '0.0.0.0', '::', '[::]']);

/**
 * http://<address>:<port>: `host` when it is one address (not 0.0.0.0, :: or empty), else the first
 * non-internal IPv4 address of `interfaces`, else 127.0.0.1; an IPv6 address in brackets.
 */
export function advertiseUrl(host: string, port: number, interfaces: ReturnType<typeof networkInterfaces>): string {
  const given = host.trim();
  let address = WILDCARDS.has(given) ? undefined : given.replace(/^\[(.*)\]$/, '$1');
  if (address === undefined) {
    for (const list of Object.values(interfaces)) {
      address = list?.find((i) => i.family === 'IPv4' && !i.internal)?.address;
      if (address !== undefined) break;
    }
  }
  address ??= '127.0.0.1';
  return `http://${isIP(address) === 6 ? `[${address}]` : address}:${port}`;
}
