/**
 * Standby rounds (issue 18): two real server processes on one store, a leader and its standby, concurrent
 * single-cell writers that pick either server per request, a fault done to the leader at a random moment,
 * and a check of both worlds against the writers' model of every acknowledged write. Used by
 * test/standby.test.ts (a few rounds), scripts/standby-rounds.ts (as many as asked) and bench/standby.ts
 * (takeover and handover times).
 *
 * The model: each writer owns a block of cells and writes one cell at a time with a value no write used
 * before (a global counter), so a cell's acknowledged value is the last 200 it got. A write whose outcome is
 * unknown (a 502, a reset or a timeout: it may have been applied, now or later) taints its cell: nothing
 * more is written to it this round, and its value may be either the acknowledged one or the unknown one.
 * A refused connection or a 503 changed nothing: the same write goes to the other server.
 */
import { request } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { spawnServer, type Owner } from './process.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';

/** What a round does to the leader. */
export type StandbyFault = 'kill' | 'kill-wal' | 'stop' | 'term';
export const STANDBY_FAULTS: readonly StandbyFault[] = ['kill', 'kill-wal', 'stop', 'term'];

/** How each fault reads in a round's line and a test's name. */
export const FAULT_NAMES: Record<StandbyFault, string> = {
  kill: 'kill -9',
  'kill-wal': 'kill -9 with its WAL_DIR deleted',
  stop: 'SIGSTOP, SIGCONT once the standby leads',
  term: 'SIGTERM (handover)',
};

/** A running server process as the rounds need it: test/support/process.ts's, or the bench's (dist build). */
export interface Launched {
  child: ChildProcess;
  exited: Promise<number | null>;
  /** The first log event named `event`, or a rejection if the process exits first or the time runs out. */
  waitForEvent(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Every JSON log line so far. */
  events: Array<Record<string, unknown>>;
  output(): string;
}

/** Starts a server process with exactly this environment (plus PATH), without waiting for it to listen. */
export type Launcher = (env: Record<string, string>, name: string) => Launched | Promise<Launched>;

/** Cells at the end of the world that no writer owns: the zombie's probes and writeDirect's (the last). */
const RESERVED = 32;

export const ROUND_AUTH = { user: 'standby', password: 'standby-rounds-password' };
/** The Authorization header value for Basic credentials. */
export function basicAuth(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}
const ROUND_AUTH_HEADER = basicAuth(ROUND_AUTH.user, ROUND_AUTH.password);

/** One of the two servers: its log folder and port stay across restarts, its process does not. */
export class Member {
  proc?: Launched;
  url?: string;
  /** The fault proxy the other server reaches this one through (its ADVERTISE_URL), when the pair has proxies. */
  proxy?: FaultProxy;
  /** The port it listens on when proxied (the proxy needs to know it before the start); else 0. */
  port = 0;
  /** Starts of this member, for its log lines. */
  starts = 0;
  /** Its earlier processes (killed, stopped), whose log events still tell what happened. */
  readonly previous: Launched[] = [];
  constructor(readonly name: string, readonly walDir: string) {}

  /** The log events of every process of this member, oldest first. */
  allEvents(): Array<Record<string, unknown>> {
    return [...this.previous.flatMap((p) => p.events), ...(this.proc?.events ?? [])];
  }

  /** True while its process runs (a stopped process counts: it may come back). */
  get running(): boolean { return this.proc !== undefined && this.proc.child.exitCode === null && this.proc.child.signalCode === null; }
}

/** How the pair is set up. */
export interface PairOptions {
  owner: Owner;
  /** The store's settings: DATA_DIR, or S3_* and AWS_*. A WAL_DIR in it is ignored: each server gets its own. */
  storeEnv: Record<string, string>;
  cells: number;
  /** More settings for both servers (REPLICATION, REPLICATION_TIMEOUT_MS, ...). */
  env?: Record<string, string>;
  /** Each server behind a fault proxy of its own, which it advertises (ADVERTISE_URL): all traffic between the servers crosses a proxy. */
  proxies?: boolean;
  /** Defaults to spawnServer (node --import tsx server.ts). */
  launch?: Launcher;
  log?: (line: string) => void;
  /** Longest wait for a role change, a sync, a restart (default 30 s). */
  deadlineMs?: number;
  /** The servers' credentials (ROUND_AUTH). */
  auth?: { user: string; password: string };
}

/** The model of every acknowledged write, kept across the rounds of one pair. */
export interface Model {
  /** Each cell's acknowledged value (0: never written). */
  value: Uint32Array;
  /** Cells whose last write's outcome is unknown, and that write's value; nothing more is written to them this round. */
  unknown: Map<number, number>;
  /** When each cell's acknowledged value was acknowledged (performance.now()). */
  ackedAt: Float64Array;
  /** Every acknowledgement's time (performance.now()), in order. */
  acks: number[];
  counter: number;
}

/** What one round saw. */
export interface RoundReport {
  round: number;
  fault: StandbyFault;
  /** Which member led when the fault came. */
  leader: string;
  /** The leader's replication state (its health) just before the fault. */
  stateAtFault: string;
  /** Which member led when the worlds were compared (the other one, unless leadership moved again without a fault). */
  leaderAfter: string;
  /** ms of writes before the fault. */
  runMs: number;
  /** Writes acknowledged (200) in this round. */
  acked: number;
  /** Writes whose outcome was unknown (a 502, a reset, a timeout). */
  unknown: number;
  /** Answers other than 200 / 502 / 503 and refusals: a harness or server bug. */
  odd: string[];
  /** Acknowledged writes missing from the world after the round (cells whose value is neither the acknowledged one nor an unknown later one). Must be 0 in sync mode. */
  lost: number;
  /** The first few lost cells: cell, acknowledged value, found value, ms since its ack when the fault came. */
  lostCells: Array<{ cell: number; acked: number; found: number; ackedBeforeFaultMs: number }>;
  /** Oldest lost write: ms between its acknowledgement and the fault (async mode's bound). */
  maxLossAgeMs: number;
  /** The longest time without an acknowledgement, from the last ack before the fault until the dead server restarts. */
  windowMs: number;
  /** Whether an ack came after the fault before the restart (else windowMs runs to the restart). */
  recovered: boolean;
  /** The longest time without an acknowledgement while the dead server restarted and caught up. */
  rejoinGapMs: number;
  /** From the fault until the survivor's health said leader. */
  takeoverSeenMs: number;
  /** Both servers' worlds were equal (the standby polled until it matched). */
  standbyEqual: boolean;
  /** SIGSTOP rounds: the zombie's answers to writes sent to it directly while it was stopped, by status or error code. */
  zombie?: Record<string, number>;
  /** Log events of interest from both servers during the round. */
  events: string[];
}

/** Options of runStandbyRounds. */
export interface RoundsOptions {
  rounds: number;
  /** One fault for every round, or a list taken in turn. */
  faults: StandbyFault | readonly StandbyFault[];
  /** Writers in parallel (4). */
  writers?: number;
  /** Random time of writes before the fault, ms ([300, 1200]). */
  runMs?: [number, number];
  /** A client's timeout per write, ms (1500): past it the outcome is unknown and the writer tries the other server. */
  timeoutMs?: number;
  /** Writes sent straight to a SIGSTOPped leader while it is stopped (answered once it resumes), at most RESERVED - 1 (20). */
  zombieProbes?: number;
  log?: (line: string) => void;
  /** Called after each round, e.g. to fail a test early. */
  onRound?: (report: RoundReport) => void;
}

/** A leader and its standby on one store, and the model of the writes acknowledged through them. */
export class StandbyPair {
  readonly members: [Member, Member];
  readonly model: Model;
  private readonly launch: Launcher;
  /** Says something in the pair's log (a test's diagnostics, the script's output). */
  readonly note: (line: string) => void;
  readonly deadlineMs: number;
  /** Per member, how many of its log events the last round had seen when it ended. */
  readonly marks = new Map<Member, number>();
  /** The Authorization header of every request the rounds send. */
  readonly authHeader: string;
  private readonly dirs: string[] = [];

  private constructor(readonly options: PairOptions, members: [Member, Member]) {
    this.members = members;
    this.model = { value: new Uint32Array(options.cells), ackedAt: new Float64Array(options.cells), unknown: new Map(), acks: [], counter: 0 };
    this.launch = options.launch ?? ((env) => spawnServer(options.owner, env));
    this.note = options.log ?? (() => {});
    this.deadlineMs = options.deadlineMs ?? 30_000;
    const auth = options.auth ?? ROUND_AUTH;
    this.authHeader = basicAuth(auth.user, auth.password);
  }

  /** Starts A (it leads) and then B (its standby), and waits until B is in sync; everything goes when `owner` ends. */
  static async start(options: PairOptions): Promise<StandbyPair> {
    const dirs = await Promise.all(['A', 'B'].map(() => mkdtemp(join(tmpdir(), 'cubecache-standby-'))));
    const pair = new StandbyPair(options, [new Member('A', join(dirs[0]!, 'wal')), new Member('B', join(dirs[1]!, 'wal'))]);
    pair.dirs.push(...dirs);
    options.owner.after(() => pair.close());
    if (options.proxies) {
      for (const member of pair.members) {
        member.port = await freePort();
        member.proxy = await startFaultProxy(`http://127.0.0.1:${member.port}`);
      }
    }
    await pair.startMember(pair.members[0]);
    await pair.waitForRole(pair.members[0], 'leader');
    await pair.startMember(pair.members[1]);
    await pair.waitForRole(pair.members[1], 'standby');
    await pair.waitForSync();
    return pair;
  }

  /** The environment of a member's process. */
  envOf(member: Member): Record<string, string> {
    const { WAL_DIR: _ignored, ...store } = this.options.storeEnv;
    return {
      HOST: '127.0.0.1', PORT: String(member.port), CUBE_CELLS: String(this.options.cells),
      AUTH_USER: (this.options.auth ?? ROUND_AUTH).user, AUTH_PASSWORD: (this.options.auth ?? ROUND_AUTH).password,
      ...store, ...this.options.env, WAL_DIR: member.walDir,
      ...(member.proxy ? { ADVERTISE_URL: member.proxy.endpoint } : {}),
    };
  }

  /** Starts a member's process and waits until it listens. */
  async startMember(member: Member): Promise<void> {
    member.starts++;
    const proc = await this.launch(this.envOf(member), `${member.name}${member.starts}`);
    if (member.proc) member.previous.push(member.proc);
    member.proc = proc;
    member.url = undefined;
    const listening = await proc.waitForEvent('listening', this.deadlineMs);
    member.url = `http://127.0.0.1:${listening.port as number}`;
    this.note(`${member.name} (pid ${proc.child.pid}) listens at ${member.url} as ${String(listening.role ?? '?')}`);
  }

  /** The member whose health says leader now, or undefined. */
  async leader(): Promise<Member | undefined> {
    for (const member of this.members) {
      if (member.url && (await health(member.url, this.authHeader))?.role === 'leader') return member;
    }
    return undefined;
  }

  /** The other member. */
  other(member: Member): Member { return member === this.members[0] ? this.members[1] : this.members[0]; }

  /** Polls `member`'s health until it says `role`; returns the ms it took. */
  async waitForRole(member: Member, role: 'leader' | 'standby'): Promise<number> {
    const from = performance.now();
    await poll(`${member.name} to report role ${role}`, async () => member.url !== undefined && (await health(member.url, this.authHeader))?.role === role, this.deadlineMs, 10);
    return performance.now() - from;
  }

  /** Waits until the leader says its standby is in sync (sync mode) or the standby says it follows (async). */
  async waitForSync(): Promise<void> {
    await poll('the standby to be in sync with the leader', async () => {
      const leader = await this.leader();
      if (!leader) return false;
      const standby = this.other(leader);
      if (!standby.url) return false;
      const [l, s] = await Promise.all([health(leader.url!, this.authHeader), health(standby.url, this.authHeader)]);
      if (s?.role !== 'standby') return false;
      return this.options.env?.REPLICATION === 'async' ? s.replication?.state === 'following' : l?.replication?.state === 'sync';
    }, this.deadlineMs, 20);
  }

  /** Every member's whole world, read with GET /cells. */
  async worlds(): Promise<Map<Member, Uint32Array>> {
    const out = new Map<Member, Uint32Array>();
    for (const member of this.members) if (member.url) out.set(member, await readWorld(member.url, this.options.cells, this.authHeader));
    return out;
  }

  /** The log events of both members' current processes that say something about roles and replication. */
  eventsSince(marks: Map<Member, number>): string[] {
    const lines: string[] = [];
    for (const member of this.members) {
      for (const e of member.allEvents().slice(marks.get(member) ?? 0)) {
        if (INTERESTING.has(String(e.event))) lines.push(`${member.name}: ${JSON.stringify(e)}`);
      }
    }
    return lines;
  }

  /** The last `lines` lines of each member's current process output, for a failure's message. */
  tails(lines = 60): string {
    return this.members.map((m) => `--- ${m.name} (pid ${m.proc?.child.pid}, ${m.running ? 'running' : `exited ${m.proc?.child.exitCode ?? m.proc?.child.signalCode}`}) ---\n${(m.proc?.output() ?? '').trimEnd().split('\n').slice(-lines).join('\n')}`).join('\n');
  }

  /** Stops both processes (SIGKILL: a test's end needs no final backup) and the proxies, removes the log folders. */
  async close(): Promise<void> {
    for (const member of this.members) {
      if (member.running) {
        member.proc!.child.kill('SIGCONT');
        member.proc!.child.kill('SIGKILL');
        await member.proc!.exited;
      }
      await member.proxy?.close();
    }
    await Promise.all(this.dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  }
}

const INTERESTING = new Set(['listening', 'role_changed', 'replication_connected', 'replication_alone', 'replication_sync', 'replication_following', 'replication_stream_broken', 'lease_lost', 'handover_finished', 'handover_skipped', 'takeover_failed', 'signal']);

/** A write's outcome as the model counts it. */
type Outcome = 'ok' | 'refused' | 'unavailable' | 'unknown' | 'odd';

/** Writers that write through both members of `pair` until stop() is called. */
export class Writers {
  private running = true;
  private readonly loops: Promise<void>[];
  /** Counts since the start. */
  readonly counts = { acked: 0, unknown: 0, refused: 0, unavailable: 0 };
  readonly odd: string[] = [];

  constructor(private readonly pair: StandbyPair, writers = 4, private readonly timeoutMs = 1500) {
    const cells = pair.options.cells;
    // The last RESERVED cells are for writes sent to one member on purpose; every writer owns a block of the rest.
    const block = Math.floor((cells - RESERVED) / writers);
    this.loops = Array.from({ length: writers }, (_, w) => this.loop(w * block, block));
  }

  private async loop(from: number, block: number): Promise<void> {
    const { model } = this.pair;
    while (this.running) {
      const cell = from + Math.floor(Math.random() * block);
      if (model.unknown.has(cell)) {
        // Tainted for this round; yield so that a block full of them cannot starve the event loop.
        await new Promise((r) => setImmediate(r));
        continue;
      }
      const value = ++model.counter;
      // Start at a random server; on a refusal or a 503 (nothing changed) the same write goes to the other.
      let member = this.pair.members[Math.random() < 0.5 ? 0 : 1];
      let tries = 0;
      for (;;) {
        if (!this.running) return;
        const outcome = member.url ? await this.write(member.url, cell, value) : 'refused';
        if (outcome === 'ok') {
          const at = performance.now();
          model.value[cell] = value;
          model.ackedAt[cell] = at;
          model.acks.push(at);
          this.counts.acked++;
          break;
        }
        if (outcome === 'unknown' || outcome === 'odd') {
          model.unknown.set(cell, value);
          this.counts.unknown++;
          break;
        }
        this.counts[outcome]++;
        member = this.pair.other(member);
        // Both refused: no leader yet. A client backs off a little before the next pair of tries.
        if (++tries % 2 === 0) await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  /** Sends one single-cell write to `url`; how it ended. */
  async write(url: string, cell: number, value: number): Promise<Outcome> {
    try {
      const answer = await send(url, 'POST', '/request', JSON.stringify(command(cell, value)), this.timeoutMs, false, this.pair.authHeader);
      if (answer.status === 200) return 'ok';
      if (answer.status === 503) return 'unavailable';
      if (answer.status === 502) return 'unknown';
      this.odd.push(`${url} answered ${answer.status}: ${answer.text.slice(0, 200)}`);
      return 'odd';
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? 'refused' : 'unknown';
    }
  }

  /** Waits until `n` more writes were acknowledged (or the deadline passes: then throws). */
  async waitForAcks(n: number, what: string, timeoutMs = this.pair.deadlineMs): Promise<void> {
    const target = this.counts.acked + n;
    await poll(`${n} acknowledged writes ${what}`, () => this.counts.acked >= target, timeoutMs, 5);
  }

  /** Stops the writers and waits for their last writes to end. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/**
 * Runs `options.rounds` rounds on `pair`: writers through both servers, the fault to the leader, the dead one
 * restarted as the standby, then both worlds checked against the model. Returns each round's report.
 */
export async function runStandbyRounds(pair: StandbyPair, options: RoundsOptions): Promise<RoundReport[]> {
  const log = options.log ?? (() => {});
  const [minRun, maxRun] = options.runMs ?? [300, 1200];
  const reports: RoundReport[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    const fault = typeof options.faults === 'string' ? options.faults : options.faults[(round - 1) % options.faults.length]!;
    const report = await runRound(pair, round, fault, { ...options, runMs: [minRun, maxRun] });
    const before = reports.at(-1);
    // Leadership should move only when a round makes it: say so when it moved between two rounds.
    if (before && before.leaderAfter !== report.leader) log(`!! leadership moved from ${before.leaderAfter} to ${report.leader} between rounds ${before.round} and ${round}, without a fault (the round's events below show it)`);
    reports.push(report);
    log(roundLine(report));
    options.onRound?.(report);
  }
  return reports;
}

/** One line per round, for the test's diagnostics and the script. */
export function roundLine(r: RoundReport): string {
  const zombie = r.zombie ? `, zombie answered ${JSON.stringify(r.zombie)}` : '';
  const lost = r.lost ? ` (oldest ${Math.round(r.maxLossAgeMs)} ms before the fault; e.g. ${JSON.stringify(r.lostCells.slice(0, 3))})` : '';
  const moved = r.leaderAfter === r.leader ? ` !! ${r.leader} leads again at the end of the round` : '';
  return `round ${r.round} ${FAULT_NAMES[r.fault]} of ${r.leader}${moved} (${r.stateAtFault}) after ${Math.round(r.runMs)} ms: ${r.acked} acknowledged, ${r.unknown} unknown, ${r.lost} lost${lost}; ` +
    `writes failed for ${Math.round(r.windowMs)} ms${r.recovered ? '' : ' (no ack before the restart)'} (health said leader after ${Math.round(r.takeoverSeenMs)} ms), ` +
    `longest gap during the rejoin ${Math.round(r.rejoinGapMs)} ms, standby ${r.standbyEqual ? 'equal' : 'NOT EQUAL'}${zombie}${r.odd.length ? `, odd answers: ${r.odd.slice(0, 3).join(' | ')}` : ''}` +
    // A round that went wrong shows what the servers said about roles and replication meanwhile.
    (r.lost || !r.standbyEqual || moved ? `\n  events of the round:\n  ${r.events.join('\n  ')}` : '');
}

async function runRound(pair: StandbyPair, round: number, fault: StandbyFault, options: RoundsOptions & { runMs: [number, number] }): Promise<RoundReport> {
  const { model } = pair;
  // The round's events start at the end of the last round, so a move of leadership in between shows.
  const marks = new Map(pair.members.map((m) => [m, pair.marks.get(m) ?? 0] as const));
  // Every round starts from a standby in sync: the promise of 0 lost is about that state (a move of leadership
  // between rounds, or a slow rejoin, would otherwise start a round with the leader alone).
  await pair.waitForSync();
  const leader = await pair.leader();
  if (!leader) throw new Error(`round ${round}: no member reports role leader`);
  const survivor = pair.other(leader);
  const acksBefore = model.acks.length;
  const writers = new Writers(pair, options.writers ?? 4, options.timeoutMs ?? 1500);
  try {
    return await faultRound(pair, round, fault, options, { leader, survivor, marks, acksBefore, writers });
  } catch (err) {
    // The writers must not outlive a failed round (they would keep the process alive), and the servers' logs say why.
    await writers.stop();
    throw new Error(`round ${round} (${FAULT_NAMES[fault]} of ${leader.name}) failed: ${(err as Error).message}\n${pair.tails()}`, { cause: err });
  }
}

async function faultRound(pair: StandbyPair, round: number, fault: StandbyFault, options: RoundsOptions & { runMs: [number, number] },
  { leader, survivor, marks, acksBefore, writers }: { leader: Member; survivor: Member; marks: Map<Member, number>; acksBefore: number; writers: Writers }): Promise<RoundReport> {
  const { model } = pair;
  const runMs = options.runMs[0] + Math.random() * (options.runMs[1] - options.runMs[0]);
  // The moment of the fault is the experiment's input (random), not synchronisation.
  await new Promise((r) => setTimeout(r, runMs));
  // What the leader said of its standby just before the fault: a loss is a broken promise only from 'sync'.
  const stateAtFault = (await health(leader.url!, pair.authHeader))?.replication?.state ?? 'unknown';
  const faultAt = performance.now();
  const child = leader.proc!.child;
  const deadline = pair.deadlineMs;
  let zombie: Record<string, number> | undefined;
  let takeoverSeenMs: number;
  if (fault === 'kill' || fault === 'kill-wal') {
    child.kill('SIGKILL');
    await leader.proc!.exited;
    if (fault === 'kill-wal') await rm(leader.walDir, { recursive: true, force: true });
    leader.url = undefined;
    await pair.waitForRole(survivor, 'leader');
    takeoverSeenMs = performance.now() - faultAt;
  } else if (fault === 'term') {
    child.kill('SIGTERM');
    await pair.waitForRole(survivor, 'leader');
    takeoverSeenMs = performance.now() - faultAt;
    await withDeadline(leader.proc!.exited, 30_000, `${leader.name} to exit after SIGTERM`);
    leader.url = undefined;
  } else {
    child.kill('SIGSTOP');
    await pair.waitForRole(survivor, 'leader');
    takeoverSeenMs = performance.now() - faultAt;
    // The zombie: writes sent straight to it while it is stopped wait in its sockets and are the first thing it
    // reads when it resumes, before it can have learnt that its lease is gone. Each must be forwarded or refused.
    zombie = await probeZombie(pair, leader, writers, Math.min(options.zombieProbes ?? 20, RESERVED - 1), () => child.kill('SIGCONT'));
    pair.note(`${leader.name}, the zombie, answered the writes sent to it while stopped: ${JSON.stringify(zombie)}`);
    // A 200 from the zombie is fine only if it was forwarded: then the new leader already has the value.
    const now = await readWorld(survivor.url!, pair.options.cells, pair.authHeader);
    const missing = [...Array(RESERVED - 1).keys()].map((i) => pair.options.cells - RESERVED + i).filter((cell) => model.ackedAt[cell]! > faultAt && now[cell] !== model.value[cell]);
    if (missing.length > 0) throw new Error(`the zombie acknowledged ${missing.length} writes the new leader lacks (cells ${missing.join(', ')}); its answers: ${JSON.stringify(zombie)}`);
  }
  // A few acknowledgements after the takeover, so the window has its end (or the deadline says it never came).
  let recovered = true;
  await writers.waitForAcks(20, `after ${FAULT_NAMES[fault]}`, deadline).catch(() => { recovered = false; });
  const restartAt = performance.now();
  if (fault !== 'stop') await pair.startMember(leader);
  await pair.waitForRole(leader, 'standby');
  await pair.waitForSync();
  await writers.waitForAcks(20, 'after the rejoin', deadline).catch(() => undefined);
  await writers.stop();

  // The windows: the longest gaps between consecutive acknowledgements.
  const acks = model.acks.slice(acksBefore).sort((a, b) => a - b);
  const lastBefore = acks.filter((t) => t <= faultAt).at(-1) ?? faultAt;
  const windowMs = maxGap(acks, lastBefore, restartAt, faultAt);
  const rejoinGapMs = maxGap(acks, restartAt, performance.now(), restartAt);

  const { equal, world, leader: leaderAfter } = await settledWorlds(pair);
  for (const m of pair.members) pair.marks.set(m, m.allEvents().length);
  const lostCells: RoundReport['lostCells'] = [];
  let lost = 0;
  let maxLossAgeMs = 0;
  for (let cell = 0; cell < world.length; cell++) {
    const found = world[cell]!;
    const acked = model.value[cell]!;
    if (found === acked || found === model.unknown.get(cell)) continue;
    lost++;
    const age = faultAt - model.ackedAt[cell]!;
    maxLossAgeMs = Math.max(maxLossAgeMs, age);
    if (lostCells.length < 10) lostCells.push({ cell, acked, found, ackedBeforeFaultMs: Math.round(age) });
  }
  // What the world holds is the model from here on: an unknown write's outcome is now known.
  model.value.set(world);
  model.unknown.clear();
  return {
    round, fault, leader: leader.name, leaderAfter: leaderAfter.name, stateAtFault, runMs, acked: writers.counts.acked, unknown: writers.counts.unknown, odd: writers.odd,
    lost, lostCells, maxLossAgeMs, windowMs, recovered, rejoinGapMs, takeoverSeenMs, standbyEqual: equal, zombie,
    events: pair.eventsSince(marks),
  };
}

/** The longest stretch without an acknowledgement between `from` and `to` that ends after `after`. */
function maxGap(sortedAcks: number[], from: number, to: number, after: number): number {
  const inside = [from, ...sortedAcks.filter((t) => t > from && t < to), to];
  let gap = 0;
  for (let i = 1; i < inside.length; i++) if (inside[i]! > after) gap = Math.max(gap, inside[i]! - inside[i - 1]!);
  return gap;
}

/**
 * Sends `n` writes straight to the stopped zombie, one to each of n reserved cells, waits until each request
 * is written to its socket, calls `resume` (SIGCONT), and collects the answers; a 200 goes into the model
 * like any ack, a 503 or a refusal changed nothing, anything else is unknown. Counts by status or error code.
 */
async function probeZombie(pair: StandbyPair, zombie: Member, writers: Writers, n: number, resume: () => void): Promise<Record<string, number>> {
  const { model } = pair;
  const probes = Array.from({ length: n }, (_, i) => {
    const cell = pair.options.cells - RESERVED + i;
    const value = ++model.counter;
    let written!: () => void;
    const sent = new Promise<void>((r) => { written = r; });
    const answer = new Promise<string>((resolve) => {
      const body = JSON.stringify(command(cell, value));
      const req = request(new URL('/request', zombie.url!), { method: 'POST', agent: false, timeout: 30_000, headers: { Authorization: pair.authHeader, 'Content-Length': Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on('end', () => resolve(String(res.statusCode)));
        res.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
      });
      req.on('finish', written);
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      req.on('error', (err: NodeJS.ErrnoException) => { written(); resolve(err.code ?? 'error'); });
      req.end(body);
    });
    return { cell, value, sent, answer };
  });
  await Promise.all(probes.map((p) => p.sent));
  resume();
  const answers: Record<string, number> = {};
  for (const probe of probes) {
    const outcome = await probe.answer;
    answers[outcome] = (answers[outcome] ?? 0) + 1;
    if (outcome === '200') {
      const at = performance.now();
      model.value[probe.cell] = probe.value;
      model.ackedAt[probe.cell] = at;
      model.acks.push(at);
      writers.counts.acked++;
    } else if (outcome !== '503' && outcome !== 'ECONNREFUSED') {
      model.unknown.set(probe.cell, probe.value);
    }
  }
  return answers;
}

/**
 * Writes the next value to the last cell (no writer's: kept for writes sent to one member on purpose) through
 * `member`, and keeps the model: a 200 is acknowledged, a 503 or a refusal changed nothing, anything else is
 * unknown. The answer's status, or the error's code.
 */
export async function writeDirect(pair: StandbyPair, member: Member, timeoutMs = 3000): Promise<string> {
  const cell = pair.options.cells - 1;
  if (pair.model.unknown.has(cell)) throw new Error(`cell ${cell} has an unknown write this round: no more direct writes to it`);
  const value = ++pair.model.counter;
  let outcome: string;
  try {
    outcome = String((await send(member.url!, 'POST', '/request', JSON.stringify(command(cell, value)), timeoutMs, false, pair.authHeader)).status);
  } catch (err) {
    outcome = (err as NodeJS.ErrnoException).code ?? 'error';
  }
  if (outcome === '200') {
    const at = performance.now();
    pair.model.value[cell] = value;
    pair.model.ackedAt[cell] = at;
    pair.model.acks.push(at);
  } else if (outcome !== '503' && outcome !== 'ECONNREFUSED') {
    pair.model.unknown.set(cell, value);
  }
  return outcome;
}

/** Both worlds, polled until the standby's equals the leader's or the deadline passes; the leader's world. */
async function settledWorlds(pair: StandbyPair): Promise<{ equal: boolean; world: Uint32Array; leader: Member }> {
  const leader = await pair.leader();
  if (!leader) throw new Error('no member reports role leader after the round');
  const standby = pair.other(leader);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const lead = await readWorld(leader.url!, pair.options.cells, pair.authHeader);
    const follow = await readWorld(standby.url!, pair.options.cells, pair.authHeader);
    const equal = Buffer.compare(Buffer.from(lead.buffer), Buffer.from(follow.buffer)) === 0;
    if (equal || Date.now() > deadline) return { equal, world: lead, leader };
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The fields of GET /healthcheck (authenticated) the rounds read. */
export interface Health {
  role?: 'leader' | 'standby';
  replication?: { role?: string; state?: string; leaderUrl?: string; lagMs?: number; lagLsn?: number; mode?: string };
  [key: string]: unknown;
}

/** A member's authenticated health, or undefined when it does not answer (in 1 s). */
export async function health(url: string, authHeader = ROUND_AUTH_HEADER): Promise<Health | undefined> {
  try {
    const answer = await send(url, 'GET', '/healthcheck', undefined, 1000, false, authHeader);
    return answer.status === 200 || answer.status === 503 ? (JSON.parse(answer.text) as Health) : undefined;
  } catch {
    return undefined;
  }
}

/** A single-cell write command whose four bytes spell `value` little-endian (category is the low byte). */
export function command(index: number, value: number) {
  return { action: 1, index, category: value & 255, rotation: (value >>> 8) & 255, sideA: (value >>> 16) & 255, sideB: value >>> 24 };
}

/** Every cell's 4 bytes as one little-endian 32-bit value, read with GET /cells. */
export async function readWorld(url: string, cells: number, authHeader = ROUND_AUTH_HEADER): Promise<Uint32Array> {
  const answer = await send(url, 'GET', '/cells', undefined, 60_000, true, authHeader);
  if (answer.status !== 200) throw new Error(`GET /cells at ${url} answered ${answer.status}: ${answer.text.slice(0, 200)}`);
  if (answer.body.length !== cells * 4) throw new Error(`GET /cells gave ${answer.body.length} bytes, expected ${cells * 4}`);
  return new Uint32Array(new Uint8Array(answer.body).buffer);
}

/** One request on a fresh connection (no pool: a dead server's kept sockets would blur refused into reset). */
export function send(url: string, method: string, path: string, body: string | Buffer | undefined, timeoutMs: number, binary = false, authHeader = ROUND_AUTH_HEADER): Promise<{ status: number; text: string; body: Buffer; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { Authorization: authHeader };
    if (body !== undefined) headers['Content-Length'] = Buffer.byteLength(body);
    const req = request(new URL(path, url), { method, agent: false, headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const whole = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, text: binary ? '' : whole.toString('utf8'), body: whole, headers: res.headers });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`timeout after ${timeoutMs} ms: ${method} ${url}${path}`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end(body);
  });
}

/** Polls `check` every `everyMs` until it is true; throws naming `what` at the deadline. */
export async function poll(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

/** A free TCP port on 127.0.0.1 (for a server whose proxy must know its port before it starts). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}
