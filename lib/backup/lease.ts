/**
 * Leadership of a prefix: a lease object in the store, `<prefix>lease.json`, held with conditional writes
 * (issue 18). The store is the only coordinator; no two servers' clocks are compared, and none is assumed in
 * sync: each server measures only durations, on its own monotonic clock, and the clocks' rates differ by a
 * bounded amount.
 *
 * The object: { holder, url, termMs, count, epoch, released?, successor? }. The first server creates it with
 * putIfAbsent; later holders replace it with putIfMatch on the version they read. `count` goes up on every
 * renewal, so every write changes the object; `epoch` goes up with each new holder.
 *
 * The two rules that keep a paused or cut-off holder harmless:
 * 1. A holder counts its lease valid until `sentAt + termMs - marginMs` on ITS clock, where sentAt is when it
 *    SENT the write that succeeded (read before sending: the store applied the write after that). A reply that
 *    comes late, or a holder paused after sending, only shortens what it counts. Past that instant it must
 *    acknowledge nothing (holds() is false) until a renewal succeeds again.
 * 2. A contender takes over only once the object has stayed at one version for `termMs + driftMs` on ITS
 *    clock, counted from when it first RECEIVED that version (the write happened before that read). Then it
 *    swaps the object from that version, so a renewal that landed meanwhile makes the takeover fail.
 * The holder's last successful write was sent before the contender saw it; the holder stops at most
 * (termMs - marginMs) / rateH after that send and the contender starts no sooner than (termMs + driftMs) /
 * rateC after it. With termMs 2000, marginMs 200, driftMs 100 that holds while rateC / rateH < 2100 / 1800,
 * i.e. the contender's clock runs up to 16% faster than the holder's: crystal clocks differ by 0.01%, and the
 * margin also absorbs a renewal timer that fires late on a busy event loop.
 *
 * The terms: term 2000 ms, renewed every 600 ms (a little under a third, so that two renewals may fail and the
 * third still lands before the holder stops at 1800 ms), a contender polling every 250 ms. A crash is taken
 * over at most poll + term + drift = 2.35 s after the holder's last renewal, plus a read, a swap and a read
 * back, within the 3 s. The folder store adds at most its LOCK_STALE_MS when a process dies inside
 * a swap. Each renewal is two requests (a swap and a read back for the new ETag): about 3.3 a second.
 *
 * Not yet wired into boot or the app: the caller checks holds() before acknowledging each write, and treats
 * onLost as "stop, become a standby". The commit chain keeps fencing as before (commits/<seq>.json).
 *
 * A planned handover: release() stops the holder counting itself first, then writes the lease as released
 * (optionally naming a successor), so a contender (the successor, or anyone if none is named) takes it at
 * once. The key is never deleted: a fenced writer's putIfAbsent could then create it again (SlateDB's bug).
 *
 * A write whose answer is an error may still have landed (a lost reply); the holder reads the object back and
 * counts the write as its own if the bytes are exactly what it sent (they carry its id and count).
 */
import type { BlobStore } from '../store.js';

/** One server's monotonic time and timers, injected so tests drive time (and clock-rate skew) deterministically. */
export interface LeaseClock {
  /** Milliseconds on a monotonic clock; only differences of two readings of one clock mean anything. */
  now(): number;
  /** Runs `fn` once `ms` of this clock have passed; returns a function that cancels it. A test's clock may await what fn returns. */
  after(ms: number, fn: () => Promise<void>): () => void;
}

/** performance.now() and unref'd timers: a pending renewal never keeps a process alive on its own. */
export const systemClock: LeaseClock = {
  now: () => performance.now(),
  after: (ms, fn) => {
    const timer = setTimeout(() => void fn(), ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

/** The lease object as stored. */
export interface LeaseRecord {
  format: 1;
  /** The holder's id (random per start of a server). */
  holder: string;
  /** Where the other servers reach the holder (ADVERTISE_URL). */
  url: string;
  /** The term the holder promises to keep to: a contender waits this (plus its drift margin) after the last change. */
  termMs: number;
  /** Bumped on every renewal, so that each write changes the object. */
  count: number;
  /** 1 for the first holder of the prefix, then one more for each new holder. */
  epoch: number;
  /** Set by a holder that let go: a contender may take it at once (only `successor`, when named). */
  released?: boolean;
  successor?: string;
}

/** Settings of a Lease; the defaults are the terms argued in this file's opening comment. */
export interface LeaseOptions {
  store: BlobStore;
  /** The lease object's key, e.g. `${prefix}lease.json`. */
  key: string;
  /** This server's id, unique per start. */
  id: string;
  /** This server's advertised address. */
  url: string;
  clock?: LeaseClock;
  termMs?: number;
  marginMs?: number;
  driftMs?: number;
  renewMs?: number;
  pollMs?: number;
  /** Called once when a holder learns that another server holds the lease (or its own release went through); it has stopped counting itself holder before. */
  onLost?: (current: LeaseRecord | undefined) => void;
  /** Called after each renewal that went through (validUntil moved): writes waiting on a lapsed lease may go now. */
  onRenewed?: () => void;
}

const encoder = new TextEncoder();

/** The lease of one prefix, as one server holds or contends for it. */
export class Lease {
  /** Until when (on this server's clock) it counts itself the holder; -Infinity when it does not hold. */
  validUntil = -Infinity;
  /** The epoch of this server's holding (0 before it first held). */
  epoch = 0;
  /** The last lease object this server read or wrote. */
  current: LeaseRecord | undefined;

  readonly termMs: number;
  readonly marginMs: number;
  readonly driftMs: number;
  readonly renewMs: number;
  readonly pollMs: number;
  private readonly clock: LeaseClock;
  private holding = false;
  private stopped = false;
  /** What this server last wrote as holder, and that object's version once known. */
  private written: { bytes: Uint8Array; record: LeaseRecord; version?: string } | undefined;
  /** The version a contender watches, and when (its clock) it first received it. */
  private seen: { version: string; at: number } | undefined;
  private cancelTimer: (() => void) | undefined;
  private renewing: Promise<boolean> | undefined;
  private won: (() => void) | undefined;
  /** The address written into the lease from the next write on (advertise()). */
  private url: string;

  constructor(private readonly options: LeaseOptions) {
    this.url = options.url;
    this.clock = options.clock ?? systemClock;
    this.termMs = options.termMs ?? 2000;
    this.marginMs = options.marginMs ?? 200;
    this.driftMs = options.driftMs ?? 100;
    this.renewMs = options.renewMs ?? 600;
    this.pollMs = options.pollMs ?? 250;
    if (!(this.marginMs < this.termMs && this.renewMs < this.termMs - this.marginMs)) throw new Error('lease: renewMs must be shorter than termMs - marginMs');
  }

  /** True while this server may act as the holder at `now` (its clock): acknowledge writes only when this is. */
  holds(now = this.clock.now()): boolean {
    return this.holding && now < this.validUntil;
  }

  /** How long (this server's clock) its holding has been lapsed: 0 while it holds, or when it does not hold at all. */
  lapsedMs(now = this.clock.now()): number {
    return this.holding ? Math.max(0, now - this.validUntil) : 0;
  }

  /**
   * One attempt to take the lease: creates it if there is none; takes it over if it was released (to us or to
   * anyone), or once it has not changed for its term plus driftMs on our clock. True if we hold it now (then
   * renewals run on their own). A contender calls this every pollMs (acquire() does).
   */
  async tryAcquire(): Promise<boolean> {
    if (this.stopped) return false;
    if (this.holding) return this.holds();
    const { store, key, id } = this.options;
    const found = await store.getVersioned(key);
    const receivedAt = this.clock.now();
    if (found === undefined) {
      const next = this.record(1);
      const bytes = encode(next);
      const sentAt = this.clock.now();
      await store.putIfAbsent(key, bytes).catch(() => false);
      return this.took(next, bytes, sentAt); // reads back: a write whose reply was lost (its retry then refused) is still ours
    }
    if (this.seen?.version !== found.version) this.seen = { version: found.version, at: receivedAt };
    const record = decode(found.body);
    this.current = record;
    const free = record !== undefined && (record.holder === id || (record.released === true && (record.successor === undefined || record.successor === id)));
    const term = record !== undefined && record.termMs > 0 ? record.termMs : this.termMs;
    if (!free && receivedAt - this.seen.at < term + this.driftMs) return false;
    const next = this.record((record?.epoch ?? 0) + 1);
    const bytes = encode(next);
    const sentAt = this.clock.now();
    await store.putIfMatch(key, bytes, found.version).catch(() => false);
    return this.took(next, bytes, sentAt); // reads back, as above
  }

  /** Contends every pollMs until this server holds the lease; resolves then (never, if stop() comes first). */
  acquire(): Promise<void> {
    return new Promise((resolve) => {
      this.won = resolve;
      this.schedule(0, () => this.campaign()); // on the clock, so that a test's clock runs it
    });
  }

  /**
   * Renews the lease now (the timer does it every renewMs): true if the renewal went through. False if it failed
   * (validUntil then runs out on its own, and the timer tries again) or another server holds the lease (onLost).
   */
  renew(): Promise<boolean> {
    this.renewing ??= this.renewOnce().finally(() => { this.renewing = undefined; });
    return this.renewing;
  }

  /**
   * A planned handover: stops counting itself holder at once, then writes the lease as released (to `successor`
   * if named), so that a contender takes it without waiting a term. True if the release was written.
   */
  async release(successor?: string): Promise<boolean> {
    if (!this.holding) return false;
    this.holding = false;
    this.validUntil = -Infinity;
    this.cancelTimer?.();
    await this.renewing?.catch(() => false); // a renewal in flight changes the version the release must swap from
    const written = this.written;
    if (!written) return false;
    const next: LeaseRecord = { ...written.record, count: written.record.count + 1, released: true, ...(successor === undefined ? {} : { successor }) };
    const version = written.version ?? (await this.versionOf(written.bytes));
    if (version === undefined) return false;
    const released = await this.options.store.putIfMatch(this.options.key, encode(next), version);
    if (released) this.current = next;
    return released;
  }

  /** This server's address as written from the next renewal on (known only once it listens, with PORT=0). */
  advertise(url: string): void {
    this.url = url;
  }

  /** Stops timers and contending, without writing (a holder that stops so lets its lease run out). */
  stop(): void {
    this.stopped = true;
    this.holding = false;
    this.validUntil = -Infinity;
    this.cancelTimer?.();
  }

  private record(epoch: number): LeaseRecord {
    return { format: 1, holder: this.options.id, url: this.url, termMs: this.termMs, count: 0, epoch };
  }

  /** After a write of `record` that succeeded: holder from sentAt on, renewing on the timer. */
  private async took(record: LeaseRecord, bytes: Uint8Array, sentAt: number): Promise<boolean> {
    const version = await this.versionOf(bytes);
    if (version === undefined || this.stopped) return false; // replaced already: never held
    this.written = { bytes, record, version };
    this.holding = true;
    this.epoch = record.epoch;
    this.current = record;
    this.validUntil = sentAt + this.termMs - this.marginMs;
    this.schedule(this.renewMs, () => this.renewTick());
    this.won?.();
    this.won = undefined;
    return true;
  }

  private async renewOnce(): Promise<boolean> {
    const previous = this.written;
    if (!this.holding || !previous) return false;
    const { store, key } = this.options;
    const record: LeaseRecord = { ...previous.record, url: this.url, count: previous.record.count + 1 };
    const bytes = encode(record);
    let sentAt = this.clock.now();
    let answer: boolean | undefined; // undefined: an error, after which the write may or may not have landed
    try {
      previous.version ??= await this.versionOf(previous.bytes);
      if (previous.version === undefined) return this.lost();
      sentAt = this.clock.now(); // the write's own send: the version read before it may have taken long
      answer = await store.putIfMatch(key, bytes, previous.version);
    } catch {
      answer = undefined;
    }
    // Read back: the version to swap from next time, and the truth when the answer was an error (or a lost reply).
    let found: { body: Uint8Array; version: string } | undefined;
    try {
      found = await store.getVersioned(key);
    } catch {
      if (answer !== true) return false;
      this.written = { bytes, record }; // ours, at a version the next renewal reads first
      return this.extend(record, sentAt);
    }
    if (found !== undefined && equal(found.body, bytes)) {
      this.written = { bytes, record, version: found.version };
      return this.extend(record, sentAt);
    }
    if (found !== undefined && equal(found.body, previous.bytes)) {
      previous.version = found.version; // our renewal did not land; the lease is still ours, running out
      return false;
    }
    this.current = found === undefined ? undefined : decode(found.body);
    return this.lost();
  }

  /** A write of `record` sent at `sentAt` is the stored lease: valid from then (unless released meanwhile). */
  private extend(record: LeaseRecord, sentAt: number): boolean {
    if (!this.holding) return false;
    this.current = record;
    this.validUntil = Math.max(this.validUntil, sentAt + this.termMs - this.marginMs);
    this.options.onRenewed?.();
    return true;
  }

  private async renewTick(): Promise<void> {
    let ok = false;
    try {
      ok = await this.renew();
    } catch {
      ok = false; // a store error: the lease runs out on its own unless a retry succeeds
    }
    if (this.holding && !this.stopped) this.schedule(ok ? this.renewMs : Math.min(this.pollMs, this.renewMs), () => this.renewTick());
  }

  private async campaign(): Promise<void> {
    let held = false;
    try {
      held = await this.tryAcquire();
    } catch {
      held = false; // the store failed: try again at the next poll
    }
    if (!held && !this.stopped) this.schedule(this.pollMs, () => this.campaign());
  }

  /** The version of the stored object if its bytes are exactly `bytes`; undefined if it is anything else or gone. */
  private async versionOf(bytes: Uint8Array): Promise<string | undefined> {
    const found = await this.options.store.getVersioned(this.options.key);
    if (found !== undefined && equal(found.body, bytes)) return found.version;
    this.current = found === undefined ? undefined : decode(found.body);
    return undefined;
  }

  private lost(): false {
    if (!this.holding) return false;
    this.holding = false;
    this.validUntil = -Infinity;
    this.cancelTimer?.();
    this.options.onLost?.(this.current);
    return false;
  }

  private schedule(ms: number, fn: () => Promise<void>): void {
    this.cancelTimer?.();
    this.cancelTimer = this.clock.after(ms, fn);
  }
}

function encode(record: LeaseRecord): Uint8Array {
  return encoder.encode(JSON.stringify(record));
}

/** The record in `bytes`, or undefined if it is not a lease object (a contender then treats it as held, and waits a term). */
function decode(bytes: Uint8Array): LeaseRecord | undefined {
  try {
    const value = JSON.parse(new TextDecoder().decode(bytes)) as LeaseRecord;
    return value && value.format === 1 && typeof value.holder === 'string' && typeof value.epoch === 'number' ? value : undefined;
  } catch {
    return undefined;
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((byte, i) => byte === b[i]);
}
