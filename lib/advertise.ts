/** TEMPORARY stand-in for branch forward's lib/advertise.ts (same export); replaced at merge. */
import type { networkInterfaces } from 'node:os';

export function advertiseUrl(host: string, port: number, interfaces: ReturnType<typeof networkInterfaces>): string {
  if (host && host !== '0.0.0.0' && host !== '::') return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  for (const list of Object.values(interfaces)) for (const i of list ?? []) if (i.family === 'IPv4' && !i.internal) return `http://${i.address}:${port}`;
  return `http://127.0.0.1:${port}`;
}
