/**
 * The leader's side of replication: streams every durable change of its log to the connected standbys and
 * reads its acks, and decides which changes may be acknowledged (the write path's gate). In sync mode a
 * change settles once the standby acked it; a standby that goes away, or whose ack falls more than
 * timeoutMs behind, leaves the leader alone (as a single server) until it has caught up again. Whatever the
 * mode, a change the standby did not ack settles only while the lease holds: a paused or cut-off leader
 * acknowledges nothing that the next leader will not have.
 */
import { once } from 'node:events';
import type { Socket } from 'node:net';
import type { Log } from '../log.js';
import type { ChangeLog, LogCursor } from './change-log.js';
import { AckReader, encodeChangeFrame, HANDOVER } from './replication-wire.js';
import type { WritePath } from './writes.js';

/** Where a standby stands and who it is, from its request to stream. */
export interface StandbyHello { lineage: string; after: number; id: string; url: string }

/** The replication's state as the leader sees it. */
export type LinkState = 'none' | 'catching-up' | 'sync' | 'alone';

export interface ReplicatorOptions {
  writes: WritePath;
  /** The log now (read at each use: a takeover switches lineage). */
  changeLog: () => ChangeLog;
  /** The lowest lsn after which the log still holds every change (what the store holds). */
  floor: () => number;
  mode: 'sync' | 'async';
  timeoutMs: number;
  /** True while this server's lease holds. */
  holds: () => boolean;
  log: Log;
  /** Milliseconds on a monotonic clock. */
  clock?: () => number;
}

/** Bytes of changes read from the log at once for the stream. */
const READ_BYTES = 4 * 1024 * 1024;

/** One connected standby. */
interface Link {
  socket: Socket;
  hello: StandbyHello;
  acked: number;
  closed: boolean;
  state: Exclude<LinkState, 'none'>;
  /** When the oldest durable change this sync standby has not acked became durable (monotonic ms). */
  waitingSince: number | undefined;
  wake: (() => void) | undefined;
}

/**
 * Streams the leader's log to its standbys and gates acknowledgements on them. Usually one standby; during an
 * immutable deploy or a platform update a few more servers start on the prefix, each its own link: in sync
 * mode a change waits for every standby in sync (any of them may be the next leader).
 */
export class Replicator {
  private readonly links = new Map<string, Link>();
  private timer: NodeJS.Timeout | undefined;
  private readonly clock: () => number;
  private readonly stopListening: () => void;
  private stopped = false;
  /** A standby has been connected: without one now, the leader is alone (not merely unpaired). */
  private hadStandby = false;

  constructor(private readonly options: ReplicatorOptions) {
    this.clock = options.clock ?? (() => performance.now());
    options.writes.gate = () => this.gate();
    this.stopListening = options.writes.onDurable(() => this.durable());
  }

  /** The state as health reports it: the best of the links; without one, 'alone' once a standby was connected, else 'none'. */
  get state(): LinkState {
    let best: LinkState = this.hadStandby ? 'alone' : 'none';
    for (const link of this.links.values()) {
      if (link.state === 'sync') return 'sync';
      if (link.state === 'catching-up' || best !== 'catching-up') best = link.state;
    }
    return best;
  }

  /** The newest lsn that may be acknowledged now (see the file comment). */
  gate(): number {
    let inSync = Number.POSITIVE_INFINITY;
    let anyInSync = false;
    for (const link of this.links.values()) {
      if (link.state !== 'sync') continue;
      anyInSync = true;
      inSync = Math.min(inSync, link.acked);
    }
    if (this.options.holds()) return anyInSync && this.options.mode === 'sync' ? inSync : Number.POSITIVE_INFINITY;
    // The lease lapsed: only what every standby in sync holds (whichever takes over has it).
    return anyInSync ? inSync : Number.NEGATIVE_INFINITY;
  }

  /** Why a standby at `hello` cannot stream from here (409), or undefined when it can. */
  refusal(hello: StandbyHello): string | undefined {
    const log = this.options.changeLog();
    if (this.stopped) return 'this server is stopping';
    if (hello.lineage !== log.lineage) return `this leader's log continues lineage ${log.lineage}, not ${hello.lineage}: catch up from the store`;
    if (hello.after < this.options.floor()) return `this leader's log holds changes after ${this.options.floor()} only: catch up from the store`;
    if (hello.after > log.durableLsn) return `the standby is ahead of this leader (${hello.after} > ${log.durableLsn})`;
    return undefined;
  }

  /** Takes `socket` (upgraded, with `head` already read) as the stream of the standby `hello.id` (replacing its earlier one). */
  attach(socket: Socket, head: Buffer, hello: StandbyHello): void {
    this.drop(this.links.get(hello.id), 'replaced by a new connection');
    const caughtUp = hello.after >= this.options.changeLog().durableLsn;
    const link: Link = { socket, hello, acked: hello.after, closed: false, state: caughtUp ? 'sync' : 'catching-up', waitingSince: undefined, wake: undefined };
    this.links.set(hello.id, link);
    this.hadStandby = true;
    socket.setNoDelay(true);
    const acks = new AckReader();
    const onData = (chunk: Buffer) => {
      let lsns: number[];
      try {
        lsns = acks.push(chunk);
      } catch (err) {
        this.options.log.warn('replication_bad_ack', { err });
        socket.destroy();
        return;
      }
      const last = lsns.at(-1);
      if (last !== undefined && !link.closed && last > link.acked) this.ack(link, last);
    };
    socket.on('data', onData);
    if (head.byteLength > 0) onData(head);
    socket.on('error', () => undefined);
    // node:http's server allows half-open sockets: a standby that went would otherwise hold this one (and the
    // server's close) forever.
    socket.on('end', () => socket.destroy());
    socket.on('close', () => this.drop(link, 'the standby disconnected'));
    this.options.log.info('replication_connected', { standby: hello.url, after: hello.after, lineage: hello.lineage });
    if (caughtUp) this.options.log.info('replication_sync', { standby: hello.url, reason: 'connected' });
    this.timer ??= setInterval(() => this.checkLag(), Math.max(10, Math.floor(this.options.timeoutMs / 4))).unref();
    void this.send(link).catch((err: unknown) => {
      this.options.log.warn('replication_send_failed', { err });
      socket.destroy();
    });
  }

  /** A connected standby's id and address (the most caught-up one), if any is connected. */
  get standby(): { id: string; url: string } | undefined {
    const link = this.best();
    return link && { id: link.hello.id, url: link.hello.url };
  }

  /** The lag of the most caught-up standby behind this log (changes, and ms since the oldest it lacks became durable). */
  lag(): { lagLsn: number; lagMs: number } | undefined {
    const link = this.best();
    if (!link) return undefined;
    const lagLsn = Math.max(0, this.options.changeLog().durableLsn - link.acked);
    return { lagLsn, lagMs: lagLsn === 0 || link.waitingSince === undefined ? 0 : Math.round(this.clock() - link.waitingSince) };
  }

  /**
   * A planned handover: resolves with the most caught-up standby once it acked every durable change (within
   * `deadlineMs`); undefined when none is connected or none caught up in time.
   */
  async handover(deadlineMs: number): Promise<{ id: string; url: string } | undefined> {
    const until = this.clock() + deadlineMs;
    for (;;) {
      const link = this.best();
      if (!link) return undefined;
      if (link.acked >= this.options.changeLog().durableLsn) return { id: link.hello.id, url: link.hello.url };
      if (this.clock() >= until) return undefined;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Tells the standby `id` the lease is released to it (after Lease.release), and ends its stream. */
  sendHandover(id: string): void {
    const link = this.links.get(id);
    if (!link || link.closed) return;
    this.links.delete(id);
    link.closed = true;
    link.wake?.();
    link.socket.end(HANDOVER);
  }

  /** Drops every standby and stops streaming (a leader that stops or stops leading). */
  close(): void {
    this.stopped = true;
    for (const link of [...this.links.values()]) this.drop(link, 'this server stopped leading');
    clearInterval(this.timer);
    this.timer = undefined;
    this.stopListening();
    this.options.writes.gate = undefined;
  }

  status(): { state: LinkState; standbyUrl?: string; lagMs?: number; lagLsn?: number } {
    return { state: this.state, standbyUrl: this.standby?.url, ...this.lag() };
  }

  private best(): Link | undefined {
    let best: Link | undefined;
    for (const link of this.links.values()) if (!link.closed && (!best || link.acked > best.acked)) best = link;
    return best;
  }

  private ack(link: Link, lsn: number): void {
    link.acked = lsn;
    const durable = this.options.changeLog().durableLsn;
    if (lsn >= durable) link.waitingSince = undefined;
    else if (link.state === 'sync') link.waitingSince = this.clock(); // the next unacked one waits from now
    if (link.state !== 'sync' && lsn >= durable) this.setState(link, 'sync', 'caught up');
    this.options.writes.reconsider();
  }

  private durable(): void {
    const durable = this.options.changeLog().durableLsn;
    for (const link of this.links.values()) {
      if (link.state === 'sync' && link.waitingSince === undefined && link.acked < durable) link.waitingSince = this.clock();
      link.wake?.();
    }
  }

  /** A sync standby whose ack is more than timeoutMs behind is left behind: writes go on without it. */
  private checkLag(): void {
    const now = this.clock();
    for (const link of this.links.values()) {
      if (link.state === 'sync' && link.waitingSince !== undefined && now - link.waitingSince > this.options.timeoutMs) {
        this.setState(link, 'alone', `the standby did not confirm within ${this.options.timeoutMs} ms`);
        this.options.writes.reconsider();
      }
    }
    if (this.links.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private drop(link: Link | undefined, reason: string): void {
    if (!link || this.links.get(link.hello.id) !== link) return;
    this.links.delete(link.hello.id);
    link.closed = true;
    link.wake?.();
    link.socket.destroy();
    if (link.state === 'sync') this.options.log.warn('replication_alone', { standby: link.hello.url, reason, message: 'the leader goes on without this standby until it catches up' });
    this.options.writes.reconsider();
  }

  private setState(link: Link, state: Link['state'], reason: string): void {
    if (state === link.state) return;
    const was = link.state;
    link.state = state;
    if (state === 'sync') this.options.log.info('replication_sync', { standby: link.hello.url, reason });
    else if (was === 'sync') this.options.log.warn('replication_alone', { standby: link.hello.url, reason, message: 'the leader goes on without this standby until it catches up' });
  }

  /** The stream: every durable change after the standby's position, in order, as the log makes them durable. */
  private async send(link: Link): Promise<void> {
    let cursor: LogCursor | undefined;
    let sent = link.hello.after;
    const lineage = link.hello.lineage;
    while (!link.closed) {
      const log = this.options.changeLog();
      if (log.lineage !== lineage) {
        link.socket.destroy(); // a takeover or a demotion switched lineage: the standby starts over
        return;
      }
      if (log.durableLsn > sent) {
        const read = await log.unshipped(cursor, sent, READ_BYTES);
        if (read.gap) {
          link.socket.destroy();
          return;
        }
        cursor = read.next;
        for (const change of read.changes.list()) {
          if (change.lsn <= sent || link.closed) continue;
          link.socket.write(encodeChangeFrame(change));
          sent = change.lsn;
        }
        if (link.socket.writableNeedDrain && !link.closed) await Promise.race([once(link.socket, 'drain'), once(link.socket, 'close')]);
        if (read.changes.count > 0 || read.more) continue;
      }
      // Nothing more is readable yet: wait for the log to make more durable (or a moment, should a wake be missed).
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, 100);
        function done() {
          clearTimeout(timer);
          link.wake = undefined;
          resolve();
        }
        link.wake = done;
      });
    }
  }
}
