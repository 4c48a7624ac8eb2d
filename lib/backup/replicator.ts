/**
 * The leader's side of replication: streams every durable change of its log to the connected standby and
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
  wake: (() => void) | undefined;
}

/** Streams the leader's log to its standby and gates acknowledgements on it. */
export class Replicator {
  state: LinkState = 'none';
  private link: Link | undefined;
  /** When the oldest durable change the sync standby has not acked became durable (monotonic ms). */
  private waitingSince: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly clock: () => number;
  private readonly stopListening: () => void;
  private stopped = false;

  constructor(private readonly options: ReplicatorOptions) {
    this.clock = options.clock ?? (() => performance.now());
    options.writes.gate = () => this.gate();
    this.stopListening = options.writes.onDurable((lsn) => this.durable(lsn));
  }

  /** The newest lsn that may be acknowledged now (see the file comment). */
  gate(): number {
    const acked = this.link?.acked ?? 0;
    if (this.state === 'sync' && this.options.mode === 'sync') return acked;
    return this.options.holds() ? Number.POSITIVE_INFINITY : acked;
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

  /** Takes `socket` (upgraded, with `head` already read) as the standby's stream; a standby connected before is dropped. */
  attach(socket: Socket, head: Buffer, hello: StandbyHello): void {
    this.detach('replaced by a new connection');
    const link: Link = { socket, hello, acked: hello.after, closed: false, wake: undefined };
    this.link = link;
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
      if (last !== undefined && link === this.link && last > link.acked) this.ack(link, last);
    };
    socket.on('data', onData);
    if (head.byteLength > 0) onData(head);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      link.closed = true;
      link.wake?.();
      if (this.link === link) this.detach('the standby disconnected');
    });
    this.setState(link.acked >= this.options.changeLog().durableLsn ? 'sync' : 'catching-up', 'connected');
    this.options.log.info('replication_connected', { standby: hello.url, after: hello.after, lineage: hello.lineage });
    this.timer ??= setInterval(() => this.checkLag(), Math.max(10, Math.floor(this.options.timeoutMs / 4))).unref();
    void this.send(link).catch((err: unknown) => {
      this.options.log.warn('replication_send_failed', { err });
      socket.destroy();
    });
  }

  /** The connected standby's id and address, if one is connected. */
  get standby(): { id: string; url: string } | undefined {
    return this.link && !this.link.closed ? { id: this.link.hello.id, url: this.link.hello.url } : undefined;
  }

  /** The standby's lag behind this log (changes, and ms since the oldest unacked one became durable). */
  lag(): { lagLsn: number; lagMs: number } | undefined {
    if (!this.link) return undefined;
    const lagLsn = Math.max(0, this.options.changeLog().durableLsn - this.link.acked);
    return { lagLsn, lagMs: lagLsn === 0 || this.waitingSince === undefined ? 0 : Math.round(this.clock() - this.waitingSince) };
  }

  /**
   * A planned handover: resolves with the standby once it acked every durable change (within `deadlineMs`),
   * after sending it HANDOVER; undefined when none is connected or it did not catch up in time.
   */
  async handover(deadlineMs: number): Promise<{ id: string; url: string } | undefined> {
    const until = this.clock() + deadlineMs;
    for (;;) {
      const link = this.link;
      if (!link || link.closed) return undefined;
      if (link.acked >= this.options.changeLog().durableLsn) return { id: link.hello.id, url: link.hello.url };
      if (this.clock() >= until) return undefined;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Tells the standby the lease is released to it (after Lease.release). */
  sendHandover(): void {
    if (this.link && !this.link.closed) this.link.socket.write(HANDOVER);
  }

  /** Drops the standby and stops streaming (a leader that stops or stops leading). */
  close(): void {
    this.stopped = true;
    this.detach('this server stopped leading');
    clearInterval(this.timer);
    this.timer = undefined;
    this.stopListening();
    this.options.writes.gate = undefined;
  }

  status(): { state: LinkState; standbyUrl?: string; lagMs?: number; lagLsn?: number } {
    return { state: this.state, standbyUrl: this.standby?.url, ...this.lag() };
  }

  private ack(link: Link, lsn: number): void {
    link.acked = lsn;
    const durable = this.options.changeLog().durableLsn;
    if (lsn >= durable) this.waitingSince = undefined;
    else if (this.state === 'sync') this.waitingSince = this.clock(); // the next unacked one waits from now
    if (this.state !== 'sync' && lsn >= durable) this.setState('sync', 'caught up');
    this.options.writes.reconsider();
  }

  private durable(_lsn: number): void {
    const link = this.link;
    if (!link) return;
    if (this.state === 'sync' && this.waitingSince === undefined && link.acked < this.options.changeLog().durableLsn) this.waitingSince = this.clock();
    link.wake?.();
  }

  /** A sync standby whose ack is more than timeoutMs behind is left behind: writes go on without it. */
  private checkLag(): void {
    if (this.state === 'sync' && this.waitingSince !== undefined && this.clock() - this.waitingSince > this.options.timeoutMs) {
      this.setState('alone', `the standby did not confirm within ${this.options.timeoutMs} ms`);
      this.options.writes.reconsider();
    }
    if (!this.link) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private detach(reason: string): void {
    const link = this.link;
    if (!link) return;
    this.link = undefined;
    link.closed = true;
    link.wake?.();
    link.socket.destroy();
    this.waitingSince = undefined;
    if (this.state !== 'none') this.setState('none', reason);
    this.options.writes.reconsider();
  }

  private setState(state: LinkState, reason: string): void {
    if (state === this.state) return;
    const was = this.state;
    this.state = state;
    if (state === 'sync') this.options.log.info('replication_sync', { reason });
    else if (was === 'sync' || state === 'alone') this.options.log.warn('replication_alone', { reason, message: 'the leader goes on without its standby until it catches up' });
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
        for (const change of read.changes) {
          if (change.lsn <= sent || link.closed) continue;
          link.socket.write(encodeChangeFrame(change));
          sent = change.lsn;
        }
        if (link.socket.writableNeedDrain && !link.closed) await Promise.race([once(link.socket, 'drain'), once(link.socket, 'close')]);
        if (read.changes.length > 0 || read.more) continue;
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
