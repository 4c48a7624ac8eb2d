/** Two apps in one process on one store prefix, each with its own log folder: a leader and its standby. */
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp, type AppOptions } from '../../lib/app.js';
import type { ReplicationStatus } from '../../lib/role.js';
import { call } from './http.js';
import { AUTH, openWalDir, PRODUCTION, productionOptions, startServer, type Running, type StoreFixture } from './app.js';
import { waitFor } from './http.js';
import { memoryLog } from './log.js';
import { own } from './owned.js';

/** A running app with a log that keeps its events, and its own WAL_DIR. */
export interface Member extends Running {
  log: ReturnType<typeof memoryLog>;
  walDir: string;
}

/** Starts an app over `fixture` on production defaults, with a recording log and a log folder of its own. */
export async function startMember(t: TestContext, fixture: StoreFixture, overrides: Partial<AppOptions> = {}): Promise<Member> {
  const log = memoryLog();
  const walDir = await openWalDir(t);
  const running = await startServer(t, fixture, { log, wal: { dir: walDir, sync: PRODUCTION.wal!.sync }, ...overrides });
  return Object.assign(running, { log, walDir });
}

/** startMember on a given port (127.0.0.1), for an app whose advertised address must be known before it starts. */
export async function startMemberAt(t: TestContext, fixture: StoreFixture, port: number, overrides: Partial<AppOptions> = {}): Promise<Member> {
  const log = memoryLog();
  const dir = await mkdtemp(join(tmpdir(), 'cubecache-wal-'));
  const walDir = join(dir, 'wal');
  const app = createApp(productionOptions(fixture, walDir, { log, ...overrides }));
  own(t, () => app.close());
  t.after(async () => {
    await app.close();
    await rm(dir, { recursive: true, force: true });
  });
  await app.start(port, '127.0.0.1');
  const url = `http://127.0.0.1:${port}`;
  return {
    app, url, log, walDir,
    call: (path, options) => call(url, path, options),
    post: (path, body = {}) => call(url, path, { method: 'POST', body: body as object, auth: AUTH }),
  };
}

/** The authenticated /healthcheck's role and replication. */
export async function roleOf(m: Pick<Running, 'call'>): Promise<{ role: string; replication: ReplicationStatus; lastLsn: number; lineage: string }> {
  const health = await m.call('/healthcheck', { auth: AUTH });
  return { role: health.json.role, replication: health.json.replication, lastLsn: health.json.backup.log.lastLsn, lineage: health.json.backup.log.lineage };
}

/** Waits until `leader` leads with `standby` in sync and the standby streams from it. */
export async function waitInSync(leader: Member, standby: Member): Promise<void> {
  await waitFor('the standby in sync', async () => {
    const [l, s] = await Promise.all([roleOf(leader), roleOf(standby)]);
    return l.role === 'leader' && l.replication.state === 'sync' && s.role === 'standby' && s.replication.state === 'following';
  });
}

/** A leader, then a standby on the same prefix, in sync. */
export async function startPair(t: TestContext, fixture: StoreFixture, overrides: Partial<AppOptions> = {}): Promise<{ leader: Member; standby: Member }> {
  const leader = await startMember(t, fixture, overrides);
  const standby = await startMember(t, fixture, overrides);
  await waitInSync(leader, standby);
  return { leader, standby };
}

/** Writes `category` into cell `index` through POST /request. */
export function write(m: Pick<Running, 'post'>, index: number, category: number) {
  return m.post('/request', { action: 1, index, category });
}

/** Cell `index`'s category as `m` answers it. */
export async function categoryAt(m: Pick<Running, 'post'>, index: number): Promise<number> {
  const answer = await m.post('/request', { index });
  if (answer.status !== 200) throw new Error(`read ${index}: ${answer.status} ${answer.text}`);
  return answer.json.category as number;
}

/** True when both apps' worlds hold the same bytes. */
export function sameWorld(a: Running, b: Running): boolean {
  return Buffer.compare(a.app.cube.bytes, b.app.cube.bytes) === 0;
}

/** Resolves with the first event named `event` in `m`'s log after index `from`, polling with a deadline. */
export function logged(m: Member, event: string, from = 0, timeoutMs = 20_000) {
  return waitFor(`${event} in the log`, () => m.log.events.slice(from).find((e) => e.event === event), timeoutMs, 5);
}

/** A port free on 127.0.0.1 now (for an app whose advertised address must be known before it starts). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** `promise`, or a rejection naming `what` once `ms` passed without an answer (a write that should be answered, or refused, and hangs). */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms); }),
  ]);
}
