/** Test fixtures: fresh stores and real servers on port 0, each cleaned up when its test ends. */
import type { S3Client } from '@aws-sdk/client-s3';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { createApp, type App, type AppOptions } from '../../lib/app.js';
import { RestoreError } from '../../lib/backup/backups.js';
import { CommitLog } from '../../lib/backup/commit-log.js';
import { loadConfig } from '../../lib/config.js';
import { silentLog } from './log.js';
import { own, stopOwned } from './owned.js';
import type { BlobStore } from '../../lib/store.js';
import { FileStore } from '../../lib/store-file.js';
import { S3Store } from '../../lib/store-s3.js';
import { call, waitFor, type Answer, type CallOptions } from './http.js';
import { createTestBucket, sharedS3Server, testS3Client, type S3TestServer } from './s3-server.js';

export const AUTH = { user: 'tester', password: 'correct horse battery staple' };
/** A small world keeps tests fast; the size is not what they test. */
export const TEST_CELLS = 4096;

/**
 * Removes `dir` when `t` ends, once every server and server process the test started has stopped (see
 * ./owned.ts); a removal that fails still leaves nothing running.
 */
function removeAfterServers(t: TestContext, dir: string): void {
  t.after(async () => {
    try {
      await stopOwned(t);
    } finally {
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    }
  });
}

/** A fresh folder for a write-ahead log (WAL_DIR), removed after the test. */
export async function openWalDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cubecache-wal-'));
  removeAfterServers(t, dir);
  return join(dir, 'wal');
}

/** A store and a prefix of its own. */
export interface StoreFixture { store: BlobStore; prefix: string; kind: 'file' | 's3' }

/** A FileStore in a fresh temp folder, removed after the test. */
export async function openFileStore(t: TestContext): Promise<StoreFixture & { dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'cubecache-test-'));
  removeAfterServers(t, dir);
  return { store: new FileStore(dir), prefix: 'world/', kind: 'file', dir };
}

let bucket: Promise<{ server: S3TestServer; client: S3Client; bucket: string }> | undefined;

/** The shared S3 test server with one bucket for this test file. */
export function s3Bucket(): Promise<{ server: S3TestServer; client: S3Client; bucket: string }> {
  bucket ??= (async () => {
    const server = await sharedS3Server();
    const client = testS3Client(server);
    return { server, client, bucket: await createTestBucket(server, client) };
  })();
  return bucket;
}

/** An S3Store on the shared test server, with a prefix no other test uses. */
export async function openS3Store(): Promise<StoreFixture & { client: S3Client; bucket: string; server: S3TestServer }> {
  const { server, client, bucket } = await s3Bucket();
  return { store: new S3Store(client, bucket), prefix: `t-${randomBytes(6).toString('hex')}/`, kind: 's3', client, bucket, server };
}

/** The environment of a server process (test/support/process.ts) on a folder store and a log of its own. */
export async function fileStoreEnv(t: TestContext): Promise<Record<string, string>> {
  const { dir } = await openFileStore(t);
  return { DATA_DIR: dir, S3_PREFIX: 'world/', WAL_DIR: join(dir, 'wal') };
}

/** The environment of a server process on the shared S3 test server, with a prefix and a log of its own. */
export async function s3StoreEnv(t: TestContext): Promise<Record<string, string>> {
  const f = await openS3Store();
  return {
    S3_BUCKET: f.bucket, S3_PREFIX: f.prefix, S3_FORCE_PATH_STYLE: 'true', AWS_ENDPOINT_URL_S3: f.server.endpoint, AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: f.server.accessKeyId, AWS_SECRET_ACCESS_KEY: f.server.secretAccessKey, WAL_DIR: await openWalDir(t),
  };
}

/** A running app on 127.0.0.1, port 0, and a client bound to it. */
export interface Running {
  app: App;
  url: string;
  call(path: string, options?: CallOptions): Promise<Answer>;
  /** POST with the test credentials; the parsed JSON answer. */
  post(path: string, body?: unknown): Promise<Answer>;
}

/** What a server runs with when nothing is set: the configuration of an empty environment. */
export const PRODUCTION = loadConfig({}, () => 'unused');

/**
 * The app options a server has in production, over `fixture`, with a small world: the write-ahead log on in a
 * folder of its own (`walDir`), changes shipped every SHIP_INTERVAL_SECONDS, snapshots every
 * BACKUP_INTERVAL_SECONDS, the default retention, connection cap, login throttle and proxy trust.
 * `overrides` are what a test needs otherwise; `{ wal: undefined }` turns the log off.
 */
export function productionOptions(fixture: StoreFixture, walDir: string, overrides: Partial<AppOptions> = {}): AppOptions {
  return {
    cells: TEST_CELLS, auth: AUTH, store: fixture.store, prefix: fixture.prefix, legacyKey: `${fixture.prefix}data.bin`,
    backupRetain: PRODUCTION.backupRetain,
    backupIntervalMs: PRODUCTION.backupIntervalSeconds * 1000,
    shipIntervalMs: PRODUCTION.shipIntervalSeconds * 1000,
    putBudget: PRODUCTION.shipPutBudget,
    wal: { dir: walDir, sync: PRODUCTION.wal!.sync },
    trustedProxies: PRODUCTION.trustedProxies,
    maxConnections: PRODUCTION.maxConnections,
    maxLoginFailures: PRODUCTION.authFailureLimit,
    logRequests: PRODUCTION.logRequests,
    // Tests close servers often: two seconds is plenty for their requests in flight.
    log: silentLog, drainMs: 2000,
    ...overrides,
  };
}

/**
 * Starts an app over `fixture` (restore included) on production defaults (see productionOptions; its log in a
 * fresh temp folder unless `overrides.wal` names one) and closes it after the test if the test did not.
 */
export async function startServer(t: TestContext, fixture: StoreFixture, overrides: Partial<AppOptions> = {}): Promise<Running> {
  const temp = 'wal' in overrides ? undefined : await mkdtemp(join(tmpdir(), 'cubecache-wal-'));
  const app = createApp(productionOptions(fixture, join(temp ?? '', 'wal'), overrides));
  own(t, () => app.close());
  // The log's folder goes only once the app has closed it.
  t.after(async () => {
    await app.close();
    if (temp) await rm(temp, { recursive: true, force: true });
  });
  const address = await app.start(0, '127.0.0.1');
  const url = `http://127.0.0.1:${address.port}`;
  return {
    app,
    url,
    call: (path, options) => call(url, path, options),
    post: (path, body = {}) => call(url, path, { method: 'POST', body: body as object, auth: AUTH }),
  };
}

/** `started` (an app's start()) rejects with the boot's refusal, a RestoreError naming `cause`, and `app` serves nothing. */
export async function assertBootRefusal(app: App, started: Promise<unknown>, cause: RegExp): Promise<void> {
  await assert.rejects(started, (err: unknown) => {
    assert.ok(err instanceof RestoreError, String(err));
    assert.match(err.message, cause);
    assert.match(err.message, /does not start with an empty world/);
    return true;
  });
  assert.equal(app.server.listening, false, 'nothing served');
}

/** Waits until the store holds every change `server` made: its health shows no unsaved changes. */
export async function waitForShipped(server: Pick<Running, 'call'>, what = 'shipped'): Promise<void> {
  await waitFor(what, async () => !(await server.call('/healthcheck')).json.backup.unsavedChanges);
}

/**
 * Another writer takes the next seq of `fixture`'s commit chain, as a server that took over would: the server
 * on the prefix is fenced at its next commit. (A second server started on a live prefix is its standby now,
 * so a test that needs a fenced server makes the foreign commit itself.)
 */
export async function commitFromElsewhere(fixture: StoreFixture): Promise<void> {
  const commits = new CommitLog(fixture.store, fixture.prefix, silentLog, Date.now);
  await waitFor('a foreign commit claimed', async () => {
    const seqs = await commits.seqs();
    return commits.claim({ format: 2, kind: 'takeover', seq: (seqs.at(-1) ?? 0) + 1, writer: commits.writer, committedAt: new Date().toISOString(), reason: 'takeover', lineage: randomBytes(8).toString('hex'), lsn: 0 });
  });
}
