/** The PUT budget: a token bucket that stretches the shipping cadence so shipping spends at most N PUTs a month. */

const MONTH_MS = 30 * 24 * 3600 * 1000;

/** Tokens for PUT requests, refilled at `perMonth` a month (0: no bound), holding up to an hour's share. */
export class PutBudget {
  private tokens: number;
  private at: number;

  constructor(private readonly perMonth: number, private readonly now: () => number) {
    this.at = now();
    this.tokens = this.capacity();
  }

  /** One PUT spent (the bucket may go below zero: the cadence then waits longer). */
  spend(): void {
    this.refill();
    this.tokens--;
  }

  /** The cadence in force: `intervalMs`, stretched while the bucket is empty. */
  cadenceMs(intervalMs: number): number {
    if (this.perMonth <= 0) return intervalMs;
    this.refill();
    const wait = this.tokens >= 1 ? 0 : ((1 - this.tokens) * MONTH_MS) / this.perMonth;
    return Math.max(intervalMs, Math.ceil(wait));
  }

  private capacity(): number {
    return this.perMonth > 0 ? Math.max(2, (this.perMonth / MONTH_MS) * 3_600_000) : Infinity; // bursts of up to an hour's share
  }

  private refill(): void {
    if (this.perMonth <= 0) return;
    const now = this.now();
    this.tokens = Math.min(this.capacity(), this.tokens + ((now - this.at) * this.perMonth) / MONTH_MS);
    this.at = now;
  }
}
