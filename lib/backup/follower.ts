/**
 * The standby's side of replication: one loop that keeps this server's world and log equal to the leader's.
 * It streams the leader's changes directly (lowest lag) and acks each once its log holds it and its world
 * shows it; whenever the stream is down or cannot start where this server stands, it catches up from the
 * store's commits instead, which is also where it learns of snapshots (history) and how far the store holds
 * the log (what its own log may release).
 */
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Change } from './change.js';
import { readChangeSet } from './change-set.js';
import { refOf, type Core } from './core.js';
import { FrameReader, encodeAck } from './replication-wire.js';
import type { WritePath } from './writes.js';

export interface FollowerOptions {
  core: Core;
  writes: WritePath;
  /** The leader's advertised URL as the lease names it now, or undefined. */
  leaderUrl: () => string | undefined;
  /** This server's lease id and advertised URL, sent to the leader. */
  self: () => { id: string; url: string };
  /** The Authorization header the leader takes (both servers share the credentials). */
  authorization: string;
  /** The leader sent HANDOVER: the lease is released to this server. */
  onHandover: () => void;
}

/** How often the loop tries again when the stream is down, and reads the store while streaming. */
const RETRY_MS = 250;
const STORE_EVERY_MS = 1000;

/** Keeps a standby's world following its leader. */
export class Follower {
  /** 'following' while the stream runs, 'seeking' while it does not. */
  state: 'following' | 'seeking' = 'seeking';
  /** When the last change arrived from the leader (ms, this server's clock), and that change's instant. */
  lastChange: { receivedAt: number; at: number } | undefined;
  private abort = new AbortController();
  private running: Promise<void> | undefined;
  private stream: { req: ClientRequest; socket?: Socket } | undefined;
  /** Changes applied but not yet acked (the newest lsn the log has made durable is acked). */
  private ackDue = false;

  constructor(private readonly options: FollowerOptions) {}

  /** Starts the loop (once). */
  start(): void {
    this.running ??= this.loop(this.abort.signal);
  }

  /** Stops the loop and the stream; resolves once nothing it started is running. */
  async stop(): Promise<void> {
    this.abort.abort();
    this.closeStream();
    await this.running;
    this.running = undefined;
    this.abort = new AbortController();
  }

  /**
   * Applies the store's commits after the last one seen, in order: change sets past this log's position
   * (through the write path, so the log numbers them as the leader did), a new lineage where a takeover
   * began one, the kept snapshots. Returns once it has read everything committed when it began.
   */
  async catchUp(): Promise<void> {
    const { core, writes } = this.options;
    const seqs = (await core.commits.seqs()).filter((seq) => seq > core.commits.lastSeq);
    for await (const commit of core.commits.inOrder(seqs)) {
      if (commit.lineage !== core.changeLog.lineage && commit.lineage !== '') {
        // A server took over with a lineage of its own (a takeover commit), or this standby started before
        // the first commit: its changes are numbered from where the commit says the store stands.
        const from = commit.kind === 'changes' ? commit.fromLsn - 1 : commit.lsn;
        // The stream of the old lineage is a zombie's: closed before the switch, so nothing of it lands after,
        // and nobody sees the new lineage with the old stream still open.
        this.closeStream();
        await writes.settled();
        await writes.follow(commit.lineage, from);
        core.storeLsn = from;
      }
      if (commit.kind === 'changes') {
        if (commit.toLsn > writes.lastLsn) {
          for (const change of await readChangeSet(core.store, commit, core.cube.cells)) if (change.lsn > writes.lastLsn) await this.apply(change);
        }
        core.storeAt = Date.parse(commit.lastAt);
      } else if (commit.kind === 'snapshot') {
        core.kept = [refOf(commit), ...(commit.history ?? core.kept)].slice(0, core.retain);
        core.storeAt = Date.parse(commit.createdAt);
      }
      core.storeLsn = Math.max(core.storeLsn, commit.lsn);
      core.commits.lastSeq = Math.max(core.commits.lastSeq, commit.seq);
    }
    await core.changeLog.release(core.storeLsn).catch(() => undefined);
  }

  private apply(change: Change): Promise<void> {
    return new Promise((resolve, reject) => this.options.writes.replicate(change, (err) => (err ? reject(err) : resolve())));
  }

  private async loop(signal: AbortSignal): Promise<void> {
    const log = this.options.core.log;
    let lastStoreRead = 0;
    while (!signal.aborted) {
      try {
        if (this.stream === undefined || performance.now() - lastStoreRead >= STORE_EVERY_MS) {
          lastStoreRead = performance.now();
          await this.catchUp();
        }
        if (this.stream === undefined && !signal.aborted) {
          const url = this.options.leaderUrl();
          if (url) await this.connect(url, signal);
        }
      } catch (err) {
        if (!signal.aborted) log.warn('follow_failed', { err, message: 'the standby tries again' });
      }
      if (signal.aborted) break;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, this.stream ? STORE_EVERY_MS : RETRY_MS);
        signal.addEventListener('abort', () => { clearTimeout(timer); resolve(undefined); }, { once: true });
      });
    }
  }

  /** Opens the stream from this server's position; resolves once it runs, or failed to start (then there is none). */
  private connect(leaderUrl: string, signal: AbortSignal): Promise<void> {
    const { core, writes } = this.options;
    const self = this.options.self();
    const url = new URL('/replication', leaderUrl);
    url.searchParams.set('lineage', core.changeLog.lineage);
    url.searchParams.set('after', String(writes.lastLsn));
    url.searchParams.set('id', self.id);
    url.searchParams.set('url', self.url);
    return new Promise((resolve) => {
      const req = request(url, {
        method: 'GET', signal, timeout: 2000,
        headers: { Connection: 'Upgrade', Upgrade: 'cubecache-replication', Authorization: this.options.authorization },
      });
      this.stream = { req };
      const fail = () => {
        if (this.stream?.req === req) this.stream = undefined;
        this.state = 'seeking';
        resolve();
      };
      req.on('timeout', () => req.destroy(new Error('the leader did not answer')));
      req.on('error', fail);
      req.on('response', (res: IncomingMessage) => {
        res.resume(); // a refusal (409: catch up from the store first; 503: not the leader): the loop tries again
        res.on('end', fail);
        res.on('error', fail);
      });
      req.on('upgrade', (_res: IncomingMessage, socket: Socket, head: Buffer) => {
        if (this.stream?.req !== req) {
          socket.destroy();
          return;
        }
        this.stream.socket = socket;
        this.state = 'following';
        core.log.info('replication_following', { leader: leaderUrl, after: writes.lastLsn });
        this.follow(socket, head);
        socket.on('close', () => {
          if (this.stream?.req === req) this.stream = undefined;
          this.state = 'seeking';
        });
        resolve();
      });
      req.end();
    });
  }

  /** Applies the stream's changes in order and acks them once the log holds them. */
  private follow(socket: Socket, head: Buffer): void {
    const { core, writes } = this.options;
    socket.setNoDelay(true);
    socket.setTimeout(0);
    const reader = new FrameReader(core.cube.cells);
    const onData = (chunk: Buffer) => {
      try {
        for (const message of reader.push(chunk)) {
          if (message.kind === 'handover') {
            this.options.onHandover();
            continue;
          }
          const change = message.change;
          if (change.lsn <= writes.lastLsn) continue; // the store brought it first
          writes.replicate(change, (err) => {
            if (err) {
              socket.destroy();
              return;
            }
            this.lastChange = { receivedAt: Date.now(), at: change.at };
            this.scheduleAck(socket);
          });
        }
      } catch (err) {
        core.log.warn('replication_stream_broken', { err });
        socket.destroy();
      }
    };
    socket.on('data', onData);
    socket.on('error', () => undefined);
    socket.on('end', () => socket.destroy());
    if (head.byteLength > 0) onData(head);
  }

  /** One ack for the changes settled in this turn: the newest the log holds. */
  private scheduleAck(socket: Socket): void {
    if (this.ackDue) return;
    this.ackDue = true;
    queueMicrotask(() => {
      this.ackDue = false;
      if (!socket.destroyed) socket.write(encodeAck(this.options.core.changeLog.durableLsn));
    });
  }

  private closeStream(): void {
    const stream = this.stream;
    this.stream = undefined;
    stream?.socket?.destroy();
    stream?.req.destroy();
    this.state = 'seeking';
  }
}
