/** Throttles repeated failed logins per client address, and finds that address behind trusted proxies. */
import type { IncomingMessage } from 'node:http';

export interface LoginGuardOptions {
  /** Failed logins allowed per address within `windowMs` before it is refused; 0 never refuses. */
  maxFailures: number;
  windowMs: number;
  /** How long an address is refused once over the limit. */
  blockMs: number;
  /** Addresses remembered at most; the oldest are forgotten first, so a flood of addresses cannot exhaust memory. */
  maxTracked?: number;
  now?: () => number;
}

/** Counts failed logins by address; blocked() says for how many more milliseconds an address is refused. */
export class LoginGuard {
  private readonly entries = new Map<string, { failures: number; since: number; blockedUntil: number }>();
  private readonly now: () => number;

  constructor(private readonly options: LoginGuardOptions) {
    this.now = options.now ?? Date.now;
  }

  /** False while no address has a failed login on record: then blocked() is 0 and succeed() does nothing for any address. */
  get tracking(): boolean {
    return this.entries.size > 0;
  }

  /** Milliseconds the address is still refused, or 0. */
  blocked(address: string): number {
    const entry = this.entries.get(address);
    if (!entry) return 0;
    return Math.max(0, entry.blockedUntil - this.now());
  }

  /** Records a failed login; true when this failure puts the address over the limit. */
  fail(address: string): boolean {
    if (this.options.maxFailures <= 0) return false; // throttling off
    const now = this.now();
    let entry = this.entries.get(address);
    if (!entry || now - entry.since > this.options.windowMs) {
      this.entries.delete(address);
      entry = { failures: 0, since: now, blockedUntil: 0 };
      this.entries.set(address, entry);
      this.evict();
    }
    entry.failures++;
    if (entry.failures >= this.options.maxFailures) {
      entry.blockedUntil = now + this.options.blockMs;
      entry.failures = 0;
      entry.since = now;
      return true;
    }
    return false;
  }

  /** A successful login clears the address's failures. */
  succeed(address: string): void {
    if (this.entries.size > 0) this.entries.delete(address);
  }

  private evict(): void {
    const max = this.options.maxTracked ?? 10_000;
    for (const key of this.entries.keys()) {
      if (this.entries.size <= max) break;
      this.entries.delete(key);
    }
  }
}

/**
 * The client's address. With `trustedProxies` = n > 0, the server sits behind n proxies that each append
 * the address they saw to X-Forwarded-For, so the client is the n-th address from the right of
 * [...X-Forwarded-For, socket address] (Elastic Beanstalk with a load balancer: 2, the load balancer and nginx).
 */
export function clientAddress(req: IncomingMessage, trustedProxies: number): string {
  const socketAddress = req.socket.remoteAddress ?? 'unknown';
  if (trustedProxies <= 0) return socketAddress;
  const header = req.headers['x-forwarded-for'];
  const forwarded = (Array.isArray(header) ? header.join(',') : header ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const chain = [...forwarded, socketAddress];
  return chain[Math.max(0, chain.length - 1 - trustedProxies)]!;
}
