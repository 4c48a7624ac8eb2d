/**
 * Who leads a prefix, decided through the store alone: the lease (lease.ts). This server leads while it holds
 * the lease, and is the standby otherwise. The transitions: start (one try at the lease decides the boot),
 * takeover (a standby wins the lease: it catches up from the store, ships the old lineage's tail, begins a
 * lineage of its own with a takeover commit), demotion (a leader that learns another holds the lease reloads
 * as a standby), and handover (SIGTERM: the leader waits for its standby to hold every change, releases the
 * lease to it and forwards what comes meanwhile). It is the routes' RoleView.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Log } from '../log.js';
import type { ReplicationStatus, RoleView } from '../role.js';
import type { Booted } from './boot.js';
import { FencedError } from './commit-log.js';
import type { Core } from './core.js';
import { Follower } from './follower.js';
import { Lease } from './lease.js';
import { Replicator, type StandbyHello } from './replicator.js';
import type { Shipper } from './shipper.js';
import { LeadershipLostError, WritesRefusedError, type WritePath } from './writes.js';

/** What leadership works with: the core, its write path and shipper, and the boots and loops backups.ts owns. */
export interface LeadershipParts {
  core: Core;
  writes: WritePath;
  shipper: Shipper;
  /** Boots as leader (replays the log, claims) or as a standby (claims nothing). */
  boot(standby: boolean): Promise<Booted>;
  startLoops(): void;
  stopLoops(): Promise<void>;
}

export interface LeadershipOptions {
  /** The lease id: the log's own (the same after a restart on the same WAL_DIR), or random without one. */
  id: string;
  mode: 'sync' | 'async';
  timeoutMs: number;
  /** The Authorization header both servers accept (for the standby's stream). */
  authorization: string;
  log: Log;
}

type Phase = 'starting' | 'leader' | 'standby' | 'promoting' | 'handing-over' | 'demoting' | 'stopped';

/** How long a write waits for a takeover or handover under way before it is refused (503, Retry-After). */
const TRANSITION_WAIT_MS = 5000;
/** Tries at a lease that names this server before a start gives up on it (a poll apart: about 5 s). */
const START_ATTEMPTS = 20;
/** How long a handover waits for the standby to hold every change before the leader stops alone. */
const HANDOVER_CATCH_UP_MS = 5000;

/** The role of this server on its prefix, and its transitions. */
export class Leadership implements RoleView {
  readonly lease: Lease;
  private phase: Phase = 'starting';
  private url = '';
  private replicator: Replicator | undefined;
  private readonly follower: Follower;
  /** Resolves when the transition under way ends (writes wait on it). */
  private transition: { done: Promise<void>; end: () => void } | undefined;
  /** Where writes go after this server handed over. */
  private successorUrl: string | undefined;

  constructor(private readonly parts: LeadershipParts, private readonly options: LeadershipOptions) {
    const { core } = parts;
    this.lease = new Lease({
      store: core.store, key: `${core.prefix}lease.json`, id: options.id, url: '',
      onLost: () => void this.demote('another server holds the lease'),
      onRenewed: () => parts.writes.reconsider(),
    });
    this.follower = new Follower({
      core, writes: parts.writes, authorization: options.authorization,
      leaderUrl: () => (this.lease.current && !this.lease.current.released ? this.lease.current.url || undefined : undefined),
      self: () => ({ id: options.id, url: this.url }),
      onHandover: () => void this.tryTakeOver(),
    });
  }

  get kind(): 'leader' | 'standby' {
    return this.phase === 'leader' ? 'leader' : 'standby';
  }

  /** True while this server leads and its lease holds: writes may be taken. */
  get leading(): boolean {
    return this.phase === 'leader';
  }

  /**
   * Why a write cannot be taken here now (the write path's refusal), or undefined. A lease that lapsed (a slow
   * or unreachable store) does not refuse at once: the write is applied and waits in the gate until a renewal
   * lands (or the lease is lost: 503). Only once it has stayed lapsed for a whole term are new writes refused.
   */
  refusal(): WritesRefusedError | undefined {
    if (this.phase === 'starting') return undefined; // boot's own writes (none yet) and the first snapshot
    if (this.phase !== 'leader') return new WritesRefusedError('this server does not lead this world now; retry (a standby forwards writes to the leader)');
    if (this.lease.lapsedMs() > this.lease.termMs) return new WritesRefusedError('this server has not renewed its lease for a whole term (the store does not answer): writes are refused until it does, or another server takes over; retry');
    return undefined;
  }

  /** True while this server may commit to the store (ship, snapshot): it leads and its lease holds. */
  get mayCommit(): boolean {
    return this.phase === 'leader' && this.lease.holds();
  }

  /**
   * Start: one try at the lease decides the boot. Held (a new prefix, a released lease, or this server's own
   * from before a restart): boot as leader. Else boot as a standby; contending starts in begin().
   */
  async start(): Promise<Booted> {
    // The role is never guessed: a standby sets its log aside, so a server whose log holds acknowledged
    // changes must know the lease is another's before it becomes one. An unreadable lease refuses the start
    // (its error is the boot's refusal, as an unreachable store's is).
    let held = false;
    for (let attempt = 1; ; attempt++) {
      held = await this.lease.tryAcquire();
      // Lost to a lease that names this very server (this WAL_DIR's earlier process, whose last renewal landed
      // late): it is ours to take back; try again rather than become a standby and set the log aside.
      if (held || this.lease.current?.holder !== this.options.id || attempt >= START_ATTEMPTS) break;
      await new Promise((resolve) => setTimeout(resolve, this.lease.pollMs));
    }
    if (held) {
      const booted = await this.parts.boot(false);
      this.becomeLeader();
      return booted;
    }
    this.phase = 'standby';
    return this.parts.boot(true);
  }

  /** After listening: the address the other server reaches this one at; a standby starts following and contending. */
  begin(url: string): void {
    this.url = url;
    this.lease.advertise(url);
    if (this.phase === 'leader') {
      void this.lease.renew().catch(() => undefined); // the address goes into the lease now, not at the next renewal
      this.parts.startLoops();
    } else if (this.phase === 'standby') {
      this.followAndContend();
    }
    this.options.log.info('role', { role: this.kind, url });
  }

  async writeTarget(forwarded: boolean): Promise<'local' | string | undefined> {
    const until = performance.now() + TRANSITION_WAIT_MS;
    // A forwarded write reached a standby: the leader may be handing over to it, so wait for its takeover.
    while (performance.now() < until) {
      if (this.phase === 'leader') return 'local';
      if (this.transition) {
        await Promise.race([this.transition.done, new Promise((resolve) => setTimeout(resolve, until - performance.now()))]);
        continue;
      }
      if (this.successorUrl !== undefined) return forwarded ? undefined : this.successorUrl;
      if (!forwarded) return this.leaderUrl();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return undefined;
  }

  status(): ReplicationStatus {
    if (this.phase === 'leader' || this.phase === 'handing-over') {
      const s = this.replicator?.status();
      const lapsed = Math.round(this.lease.lapsedMs());
      return {
        role: this.kind, mode: this.options.mode, leaderUrl: this.url, state: s?.state ?? 'none', ...(s?.standbyUrl ? { standbyUrl: s.standbyUrl } : {}),
        ...(s?.lagMs !== undefined ? { lagMs: s.lagMs, lagLsn: s.lagLsn } : {}), ...(lapsed > 0 ? { leaseLapsedMs: lapsed } : {}),
      };
    }
    const last = this.follower.lastChange;
    return {
      role: 'standby', mode: this.options.mode, leaderUrl: this.leaderUrl(), state: this.follower.state,
      ...(last ? { lagMs: Math.max(0, last.receivedAt - last.at) } : {}),
    };
  }

  /**
   * A standby's request to stream (GET /replication, upgraded): refused with an HTTP status and reason, or
   * taken (then the socket is the replicator's).
   */
  acceptReplication(req: IncomingMessage, socket: Socket, head: Buffer): { status: number; error: string } | undefined {
    if (this.phase !== 'leader' || !this.replicator) return { status: 503, error: 'this server does not lead' };
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    const after = Number(query.get('after'));
    const hello: StandbyHello = { lineage: query.get('lineage') ?? '', after, id: query.get('id') ?? '', url: query.get('url') ?? '' };
    if (!Number.isSafeInteger(after) || after < 0 || !hello.id) return { status: 400, error: 'lineage, after, id and url are required' };
    const refused = this.replicator.refusal(hello);
    if (refused) return { status: 409, error: refused };
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: cubecache-replication\r\n\r\n');
    this.replicator.attach(socket, head, hello);
    return undefined;
  }

  /**
   * SIGTERM: hands the lease to a standby that holds every change, and forwards writes to it from then on;
   * true if it did. False (no standby in sync): the caller ships as a single server does, and the lease is
   * released to anyone.
   */
  async handover(): Promise<boolean> {
    if (this.phase !== 'leader') {
      if (this.phase === 'standby') await this.follower.stop();
      return false;
    }
    this.phase = 'handing-over';
    this.beginTransition();
    try {
      await this.parts.writes.settled();
      const successor = await this.replicator!.handover(HANDOVER_CATCH_UP_MS);
      await this.parts.stopLoops();
      if (!successor) {
        this.options.log.info('handover_skipped', { message: 'no standby holds every change: this server ships and lets go of the lease' });
        // A standby still connected would hold the server's close() open (an upgraded socket is no request to drain).
        this.replicator?.close();
        return false;
      }
      const released = await this.lease.release(successor.id).catch(() => false);
      if (!released) return false;
      this.replicator!.sendHandover(successor.id);
      this.successorUrl = successor.url;
      this.options.log.info('handover_finished', { successor: successor.url });
      return true;
    } finally {
      this.replicator?.close(); // the server is stopping: no stream outlives it (the standby catches up from the store)
      this.endTransition();
    }
  }

  /** Stops; `release` lets go of the lease held (to anyone: a later start takes it at once), `keep` lets it run out. */
  async stop(lease: 'release' | 'keep'): Promise<void> {
    this.phase = 'stopped';
    this.replicator?.close();
    if (lease === 'release') await this.lease.release().catch(() => false);
    this.lease.stop();
    await this.follower.stop();
  }

  private leaderUrl(): string | undefined {
    const current = this.lease.current;
    return current && current.holder !== this.options.id && current.url ? current.url : undefined;
  }

  private becomeLeader(): void {
    const { core, writes } = this.parts;
    this.replicator = new Replicator({
      writes, changeLog: () => core.changeLog, floor: () => core.storeLsn, mode: this.options.mode, timeoutMs: this.options.timeoutMs,
      holds: () => this.lease.holds(), log: this.options.log,
    });
    this.phase = 'leader';
  }

  private followAndContend(): void {
    this.follower.start();
    void this.lease.acquire().then(() => this.takeOver());
  }

  private async tryTakeOver(): Promise<void> {
    try {
      await this.lease.tryAcquire(); // the released lease, at once; acquire() resolves and takes over
    } catch {
      // the next poll tries again
    }
  }


  /** The lease is ours: catch up from the store, ship the old lineage's tail, begin a lineage of our own, lead. */
  private async takeOver(): Promise<void> {
    if (this.phase !== 'standby') return;
    const { core, writes, shipper } = this.parts;
    const started = performance.now();
    this.phase = 'promoting';
    this.beginTransition();
    try {
      await this.follower.stop();
      const lineage = randomBytes(8).toString('hex');
      for (let attempt = 0; ; attempt++) {
        await this.follower.catchUp();
        await writes.settled();
        core.commits.fenced = null;
        try {
          await shipper.shipAll('takeover');
          const claimed = await core.commits.claim({
            format: 2, kind: 'takeover', seq: core.commits.lastSeq + 1, writer: core.commits.writer, committedAt: new Date(core.now()).toISOString(),
            reason: 'takeover', lineage, lsn: 0,
          });
          if (claimed) break;
        } catch (err) {
          if (!(err instanceof FencedError) || attempt >= 20) throw err;
        }
      }
      await writes.follow(lineage, 0);
      core.storeLsn = 0;
      core.storeAt = core.now();
      this.becomeLeader();
      this.parts.startLoops();
      this.options.log.info('role_changed', { role: 'leader', reason: 'took over the lease', ms: Math.round(performance.now() - started) });
    } catch (err) {
      this.options.log.error('takeover_failed', { err, message: 'this server lets the lease go and stays a standby' });
      this.lease.stop();
      this.phase = 'standby';
    } finally {
      this.endTransition();
    }
  }

  /** The lease went to another server: acknowledge nothing more, reload as its standby. */
  private async demote(reason: string): Promise<void> {
    if (this.phase !== 'leader' && this.phase !== 'handing-over') return;
    const handingOver = this.phase === 'handing-over';
    this.phase = 'demoting';
    this.options.log.warn('lease_lost', { reason, message: 'this server stops leading: it reloads the world as the standby' });
    this.parts.writes.abandon(new LeadershipLostError('this server lost its lease before the write was confirmed: it may or may not have been applied; read it back, and retry if it is missing'));
    this.replicator?.close();
    this.replicator = undefined;
    if (handingOver) return; // the handover's own path stops this server
    this.beginTransition();
    try {
      await this.parts.stopLoops();
      await this.parts.writes.settled();
      this.parts.core.commits.fenced = null;
      await this.parts.boot(true); // backups.ts tells the write path where the reloaded log stands (WritePath.replayed)
      this.phase = 'standby';
      this.options.log.info('role_changed', { role: 'standby', reason });
      this.followAndContend();
    } catch (err) {
      this.phase = 'standby';
      this.options.log.error('demotion_failed', { err });
    } finally {
      this.endTransition();
    }
  }

  private beginTransition(): void {
    let end!: () => void;
    const done = new Promise<void>((resolve) => { end = resolve; });
    this.transition = { done, end };
  }

  private endTransition(): void {
    const transition = this.transition;
    this.transition = undefined;
    transition?.end();
  }
}
