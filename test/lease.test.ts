/**
 * The lease (lib/backup/lease.ts) on both stores, with injected clocks: one true time that the test advances,
 * and each server's monotonic clock running at its own rate against it. Store calls are real; only time is
 * driven. What is asserted is the ordering the lease promises, on that shared true time.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import { Lease, type LeaseClock, type LeaseOptions } from '../lib/backup/lease.js';
import type { BlobStore } from '../lib/store.js';
import { openFileStore, openS3Store, s3Bucket, type StoreFixture } from './support/app.js';
import { waitFor } from './support/http.js';
import { storeWith } from './support/store.js';

interface Timer { at: number; fn: () => Promise<void>; owner: Server; cancelled: boolean }

/** True time, advanced by the test; timers fire in order of it, each awaited until it settles or a store call of it is held. */
class World {
  t = 0;
  private timers: Timer[] = [];
  private heldSignal!: () => void;
  private held = this.nextHeld();

  /** A server's clock: `rate` of its milliseconds per true millisecond. */
  server(rate = 1): Server {
    return new Server(this, rate);
  }

  schedule(owner: Server, trueMs: number, fn: () => Promise<void>): () => void {
    const timer: Timer = { at: this.t + trueMs, fn, owner, cancelled: false };
    this.timers.push(timer);
    return () => { timer.cancelled = true; };
  }

  /** Called by a held store call, so that the timer that made it does not hold up time. */
  holding(): void {
    this.heldSignal();
    this.held = this.nextHeld();
  }

  /** Advances true time by `ms`, firing the timers of servers that are not paused in order, then calls `check`. */
  async advance(ms: number, check: () => void = () => {}): Promise<void> {
    const to = this.t + ms;
    for (;;) {
      this.timers = this.timers.filter((timer) => !timer.cancelled);
      const due = this.timers.filter((timer) => timer.at <= to && !timer.owner.paused).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.timers.splice(this.timers.indexOf(due), 1);
      this.t = Math.max(this.t, due.at);
      check();
      const held = this.held; // taken first: the call may be held before fn returns
      await Promise.race([due.fn(), held]);
      check();
    }
    this.t = to;
    check();
  }

  /** Advances in steps of `step` until `done()` or `limit` true ms have passed; `check` runs at every step. */
  async until(done: () => boolean, limit: number, check: () => void = () => {}, step = 5): Promise<void> {
    const end = this.t + limit;
    while (!done()) {
      assert.ok(this.t < end, `not done after ${limit} ms of true time`);
      await this.advance(step, check);
    }
  }

  private nextHeld(): Promise<void> {
    return new Promise((resolve) => { this.heldSignal = resolve; });
  }
}

/** One server's monotonic clock (starting at an arbitrary offset: no two are comparable) and timers; paused, its timers wait. */
class Server implements LeaseClock {
  paused = false;
  private readonly offset = Math.floor(Math.random() * 1e6);
  constructor(private readonly world: World, private readonly rate: number) {}
  now(): number {
    return this.offset + this.world.t * this.rate;
  }
  after(ms: number, fn: () => Promise<void>): () => void {
    return this.world.schedule(this, ms / this.rate, fn);
  }
}

/** `store` whose calls can be held: 'stall' holds each call before it reaches the store, 'lose-replies' after (the write lands, the answer waits). */
function gated(store: BlobStore, world: World) {
  let open!: () => void;
  let gate = new Promise<void>((resolve) => { open = resolve; });
  const control = {
    mode: 'pass' as 'pass' | 'stall' | 'lose-replies',
    /** Lets every held call go on, and passes later ones. */
    release() { control.mode = 'pass'; open(); gate = new Promise<void>((resolve) => { open = resolve; }); },
    store: undefined as unknown as BlobStore,
  };
  const wrap = <A extends unknown[], R>(call: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
    const mode = control.mode;
    if (mode === 'stall') { const wait = gate; world.holding(); await wait; }
    const result = await call(...args);
    if (mode === 'lose-replies') { const wait = gate; world.holding(); await wait; }
    return result;
  };
  control.store = storeWith(store, {
    getVersioned: wrap((key) => store.getVersioned(key)),
    putIfMatch: wrap((key, body, version) => store.putIfMatch(key, body, version)),
    putIfAbsent: wrap((key, body) => store.putIfAbsent(key, body)),
  });
  return control;
}

const TERM = 2000;

function lease(fixture: StoreFixture, clock: Server, store: BlobStore = fixture.store, options: Partial<LeaseOptions> = {}) {
  const losses: unknown[] = [];
  const id = randomBytes(4).toString('hex');
  const l = new Lease({ store, key: `${fixture.prefix}lease.json`, id, url: `http://${id}.invalid:5000`, clock, onLost: (current) => losses.push(current), ...options });
  // Test-only fields, named unlike any of Lease's own (Object.assign would overwrite those).
  return Object.assign(l, { id, losses, server: clock, held: () => l.holds(clock.now()) });
}

/** Fails the moment two of `leases` count themselves holder at once. */
function oneHolder(...leases: Array<{ held(): boolean; id: string }>) {
  return () => {
    const holders = leases.filter((l) => l.held()).map((l) => l.id);
    assert.ok(holders.length <= 1, `two holders at once: ${holders}`);
  };
}

function leaseTests(name: string, open: (t: TestContext) => Promise<StoreFixture | undefined>) {
  describe(`Lease on ${name}`, () => {
    test('one holder at a time: the first takes it, renewals keep it for many terms, a contender never gets it', async (t) => {
      const fixture = await open(t);
      if (!fixture) return;
      const world = new World();
      const a = lease(fixture, world.server());
      const b = lease(fixture, world.server(1.01));
      t.after(() => { a.stop(); b.stop(); });
      const acquired = a.acquire();
      await world.until(() => a.held(), 50);
      await acquired;
      assert.equal(a.epoch, 1);
      void b.acquire();
      const check = () => { oneHolder(a, b)(); assert.ok(a.held(), 'the holder kept its lease'); };
      await world.until(() => world.t >= 10 * TERM, 11 * TERM, check, 20);
      assert.equal(b.held(), false);
      assert.ok(a.current!.count >= 25, `renewed ${a.current!.count} times in 10 terms`);
      assert.deepEqual(a.losses, []);
    });

    for (const [holderRate, contenderRate] of [[1, 1.01], [0.99, 1]]) {
      test(`a holder whose renewals stop answering stops counting itself holder before a contender takes over (holder clock ${holderRate}, contender ${contenderRate})`, async (t) => {
        const fixture = await open(t);
        if (!fixture) return;
        const world = new World();
        const gate = gated(fixture.store, world);
        t.after(() => gate.release());
        const h = lease(fixture, world.server(holderRate), gate.store);
        // Polling often, the contender sees each version soon after it lands: the tightest case for the holder.
        const c = lease(fixture, world.server(contenderRate), fixture.store, { pollMs: 20 });
        t.after(() => { h.stop(); c.stop(); });
        void h.acquire();
        await world.until(() => h.held(), 50);
        void c.acquire();
        await world.advance(TERM, oneHolder(h, c));
        // The next renewal lands in the store, but its answer comes 500 ms late; all renewals after it stall.
        const before = h.current!.count;
        gate.mode = 'lose-replies';
        await world.until(() => (c.current?.count ?? 0) > before, TERM, oneHolder(h, c), 1);
        const landed = world.t;
        await world.advance(500, oneHolder(h, c));
        gate.release();
        await waitFor('the late answer to reach the holder', () => h.current!.count > before); // true time stands still
        gate.mode = 'stall';
        let stoppedAt: number | undefined;
        let tookAt: number | undefined;
        await world.until(() => tookAt !== undefined, 3 * TERM, () => {
          oneHolder(h, c)();
          if (stoppedAt === undefined && !h.held()) stoppedAt = world.t;
          if (tookAt === undefined && c.held()) tookAt = world.t;
        }, 1);
        assert.ok(stoppedAt !== undefined && tookAt !== undefined && stoppedAt < tookAt, `holder stopped at ${stoppedAt}, contender took over at ${tookAt}`);
        assert.ok(stoppedAt <= landed + TERM / holderRate, `the holder counted from when it sent the renewal: stopped ${stoppedAt - landed} ms after it landed`);
        assert.equal(c.epoch, 2);
        gate.release(); // the held answers arrive (in real time; true time stands still): the holder must learn that it lost
        await waitFor('the holder to learn it lost', () => h.losses.length > 0);
        assert.equal(h.held(), false);
        assert.equal((h.losses[0] as { holder: string }).holder, c.id);
      });
    }

    test('a paused holder (its timers stopped while its clock runs) never counts itself holder after resuming, and learns it lost', async (t) => {
      const fixture = await open(t);
      if (!fixture) return;
      const world = new World();
      const h = lease(fixture, world.server());
      const c = lease(fixture, world.server(1.01));
      t.after(() => { h.stop(); c.stop(); });
      void h.acquire();
      await world.until(() => h.held(), 50);
      void c.acquire();
      await world.advance(TERM, oneHolder(h, c));
      h.server.paused = true; // SIGSTOP: its monotonic clock goes on, its code does not run
      await world.until(() => c.held(), 2 * TERM, oneHolder(h, c));
      h.server.paused = false;
      await world.until(() => h.losses.length > 0, TERM, () => { oneHolder(h, c)(); assert.equal(h.held(), false); });
      await world.advance(2 * TERM, () => { assert.equal(h.held(), false); assert.ok(c.held()); });
      assert.equal((h.losses[0] as { holder: string }).holder, c.id);
    });

    test('release hands the lease over at once, to anyone or to a named successor', async (t) => {
      const fixture = await open(t);
      if (!fixture) return;
      const world = new World();
      const h = lease(fixture, world.server());
      const b = lease(fixture, world.server());
      const d = lease(fixture, world.server());
      t.after(() => { h.stop(); b.stop(); d.stop(); });
      void h.acquire();
      await world.until(() => h.held(), 50);
      void d.acquire(); // d polls first, so only the named successor rule lets b take it
      void b.acquire();
      await world.advance(TERM, oneHolder(h, b, d));
      const released = h.release(b.id);
      assert.equal(h.held(), false, 'the holder stops counting itself before it writes the release');
      assert.equal(await released, true);
      const at = world.t;
      await world.until(() => b.held(), TERM, oneHolder(h, b, d), 1);
      assert.ok(world.t - at <= b.pollMs, `taken ${world.t - at} ms after the release, within one poll`);
      assert.equal(d.held(), false);
      assert.equal(b.epoch, 2);
      // Now b lets go to anyone: d takes it within a poll.
      assert.equal(await b.release(), true);
      const again = world.t;
      await world.until(() => d.held(), TERM, oneHolder(h, b, d), 1);
      assert.ok(world.t - again <= d.pollMs);
      assert.deepEqual([h.losses, b.losses], [[], []], 'a release is not a loss');
    });

    test('contenders racing for a free lease, or for one whose holder died: exactly one wins', async (t) => {
      const fixture = await open(t);
      if (!fixture) return;
      const world = new World();
      const racers = Array.from({ length: 4 }, () => lease(fixture, world.server()));
      t.after(() => { for (const r of racers) r.stop(); });
      const results = await Promise.all(racers.map((r) => r.tryAcquire()));
      assert.equal(results.filter(Boolean).length, 1, `${results}`);
      const dead = racers[results.indexOf(true)]!;
      dead.stop(); // a crash: it neither renews nor releases
      const rest = racers.filter((r) => r !== dead);
      for (const r of rest) void r.acquire();
      await world.until(() => rest.some((r) => r.held()), 2 * TERM, oneHolder(...rest), 1);
      await world.advance(TERM, oneHolder(...rest));
      assert.equal(rest.filter((r) => r.held()).length, 1);
      assert.equal(rest.find((r) => r.held())!.epoch, 2);
    });
  });
}

leaseTests('the folder store', (t) => openFileStore(t));
leaseTests('S3', async (t) => {
  const { server } = await s3Bucket();
  if (!server.conditionalWrites) {
    t.skip('this S3 server ignores conditional writes (not checked here)');
    return undefined;
  }
  return openS3Store();
});
