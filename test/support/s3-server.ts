// A real S3 endpoint for tests: a throw-away single-node Ceph RADOS Gateway when
// the Debian ceph packages are installed, else the in-process s3rver fake.
// Recipe and quirks: /work/shared/notes/s3-test-server.md.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { accessSync, constants as fsConstants, closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

// On a node older than 22 (a machine's own node 20, when the suite is not run through
// .ci/with-node24) the SDK warns that its later releases need Node 22: noise in test
// output. The SDK reads this when a client is constructed, so here is early enough.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

export interface S3TestServer {
  kind: 'ceph' | 's3rver';
  endpoint: string; // e.g. http://127.0.0.1:PORT
  region: 'us-east-1';
  accessKeyId: string;
  secretAccessKey: string;
  /** true where the server honours If-None-Match: * on PutObject (Ceph yes, s3rver no) */
  conditionalWrites: boolean;
  /** Stops the server and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
}

const LOG_PREFIX = '[s3-test-server]';
const STARTUP_DEADLINE_MS = 60_000;
const STOP_GRACE_MS = 5_000;
const REGION = 'us-east-1' as const;
/** Every program the Ceph recipe runs; all come with radosgw, ceph-mon and ceph-osd. */
const CEPH_PROGRAMS = ['ceph-mon', 'ceph-osd', 'radosgw', 'ceph', 'monmaptool', 'ceph-authtool', 'radosgw-admin'];

// ---------------------------------------------------------------------------
// Public API

/** Starts Ceph RGW (memstore, single node, 127.0.0.1, free ports) if radosgw/ceph-mon/ceph-osd are on PATH, else s3rver (TEST_S3_SERVER=s3rver forces s3rver, =ceph requires Ceph); says loudly on stderr which one. */
export async function startS3Server(): Promise<S3TestServer> {
  const wanted = process.env.TEST_S3_SERVER?.trim() ?? '';
  if (wanted !== '' && wanted !== 'ceph' && wanted !== 's3rver') {
    throw new Error(`${LOG_PREFIX} TEST_S3_SERVER must be 'ceph' or 's3rver', not ${JSON.stringify(wanted)}`);
  }
  const missing = CEPH_PROGRAMS.filter((p) => !onPath(p));
  if (wanted === 's3rver') {
    return startS3rver('TEST_S3_SERVER=s3rver');
  }
  if (missing.length > 0) {
    if (wanted === 'ceph') {
      throw new Error(`${LOG_PREFIX} TEST_S3_SERVER=ceph but not on PATH: ${missing.join(', ')}`);
    }
    return startS3rver(`not on PATH: ${missing.join(', ')}`);
  }
  return startCephRetrying();
}

const CEPH_START_ATTEMPTS = 3;

/** startCeph, tried again from scratch (new temp dir, new ports) when a start fails: a single-node Ceph on a busy machine sometimes trips over its own start-up. */
async function startCephRetrying(): Promise<S3TestServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startCeph();
    } catch (err) {
      if (attempt >= CEPH_START_ATTEMPTS) throw err;
      const msg = err instanceof Error ? err.message : String(err);
      process.stderr.write(`${LOG_PREFIX} attempt ${attempt} of ${CEPH_START_ATTEMPTS} failed, starting again: ${lastLines(msg, 3)}\n`);
    }
  }
}

/** A test-client S3Client for a server (forcePathStyle, WHEN_REQUIRED checksums, region us-east-1, the keys). */
export function testS3Client(server: Pick<S3TestServer, 'endpoint' | 'accessKeyId' | 'secretAccessKey'>): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: REGION,
    forcePathStyle: true,
    // The SDK's default (WHEN_SUPPORTED) sends stream bodies as aws-chunked with a
    // CRC32 trailer: Ceph answers 411 and s3rver stores the framing in the object.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
}

let shared: Promise<S3TestServer> | undefined;

/** The runner's server from TEST_S3_ENDPOINT/_ACCESS_KEY/_SECRET_KEY/_KIND, else a private one stopped at process exit; memoised per process. */
export function sharedS3Server(): Promise<S3TestServer> {
  shared ??= resolveShared().catch((err: unknown) => {
    shared = undefined; // let a later caller retry instead of caching the failure
    throw err;
  });
  return shared;
}

/** Creates a fresh, uniquely named bucket (lowercase, DNS-valid) on the server and returns its name. */
export async function createTestBucket(server: S3TestServer, client?: S3Client): Promise<string> {
  // <= 63 chars, [a-z0-9-], starts and ends alphanumeric.
  const name = `test-${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
  const c = client ?? testS3Client(server);
  try {
    await c.send(new CreateBucketCommand({ Bucket: name }));
  } finally {
    if (!client) c.destroy();
  }
  return name;
}

// ---------------------------------------------------------------------------
// Shared server

async function resolveShared(): Promise<S3TestServer> {
  const names = ['TEST_S3_ENDPOINT', 'TEST_S3_ACCESS_KEY', 'TEST_S3_SECRET_KEY', 'TEST_S3_KIND'] as const;
  const set = names.filter((n) => (process.env[n] ?? '') !== '');
  if (set.length === 0) {
    // A private server: the exit hook registered by startS3Server stops it.
    return startS3Server();
  }
  if (set.length < names.length) {
    throw new Error(`${LOG_PREFIX} set all of ${names.join(', ')} or none (set: ${set.join(', ')})`);
  }
  const [endpoint, accessKeyId, secretAccessKey, kind] = names.map((n) => process.env[n] as string);
  if (kind !== 'ceph' && kind !== 's3rver') {
    throw new Error(`${LOG_PREFIX} TEST_S3_KIND must be 'ceph' or 's3rver', not ${JSON.stringify(kind)}`);
  }
  return {
    kind,
    endpoint,
    region: REGION,
    accessKeyId,
    secretAccessKey,
    conditionalWrites: kind === 'ceph',
    // The runner owns this server; a test file must not stop it.
    stop: async () => {},
  };
}

// ---------------------------------------------------------------------------
// Last-resort cleanup. Ceph daemons run in their own process groups, so neither
// our exit nor a Ctrl-C on the terminal reaches them: kill them synchronously
// when this process exits or is signalled, for servers nobody stop()ped.

const liveCleanups = new Set<() => void>();
let hooksInstalled = false;

function registerCleanup(fn: () => void): () => void {
  if (!hooksInstalled) {
    hooksInstalled = true;
    process.on('exit', runCleanupsSync);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      const onSignal = (): void => {
        runCleanupsSync();
        process.removeListener(sig, onSignal);
        // If nobody else handles the signal, die of it as we would have without us.
        if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
      };
      process.on(sig, onSignal);
    }
  }
  liveCleanups.add(fn);
  return () => liveCleanups.delete(fn);
}

function runCleanupsSync(): void {
  for (const fn of liveCleanups) {
    try {
      fn();
    } catch {
      // best effort: we are exiting
    }
  }
  liveCleanups.clear();
}

// ---------------------------------------------------------------------------
// s3rver

// s3rver ships no type declarations (and @types/s3rver is not installed): load
// it through require with the little of its API we use. Loading it lazily also
// keeps it out of processes that use Ceph.
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: Server;
}
type S3rverCtor = new (options: Record<string, unknown>) => S3rverInstance;

async function startS3rver(reason: string): Promise<S3TestServer> {
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverCtor;
  const dir = await mkdtemp(join(tmpdir(), 'cubecache-s3rver-'));
  const s3rver = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: true,
    directory: dir,
    resetOnClose: true,
    allowMismatchedSignatures: true,
  });
  let address: AddressInfo;
  try {
    address = await s3rver.run();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  // Do not let a forgotten server keep the test process alive; in-flight
  // connections still hold the event loop open.
  s3rver.httpServer?.unref();
  const endpoint = `http://127.0.0.1:${address.port}`;
  const unregister = registerCleanup(() => rmSync(dir, { recursive: true, force: true }));

  process.stderr.write(
    [
      '',
      '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
      `!! ${LOG_PREFIX} USING s3rver (a FAKE S3) at ${endpoint}`,
      `!! reason: ${reason}`,
      '!! s3rver ignores If-None-Match / If-Match (it silently overwrites) and does',
      '!! not check signatures: CONDITIONAL-WRITE CASES CANNOT BE CHECKED (treat them as unverified).',
      '!! For the real thing: apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd',
      '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
      '',
    ].join('\n'),
  );

  let stopping: Promise<void> | undefined;
  return {
    kind: 's3rver',
    endpoint,
    region: REGION,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    conditionalWrites: false,
    stop() {
      stopping ??= (async () => {
        try {
          await s3rver.close();
        } finally {
          unregister();
          await rm(dir, { recursive: true, force: true });
        }
      })();
      return stopping;
    },
  };
}

// ---------------------------------------------------------------------------
// Ceph

interface Daemon {
  name: string; // ceph entity name: mon.a, osd.0, client.rgw
  child: ChildProcess;
  exited: Promise<void>;
  logFile: string; // ceph's own log
  outFile: string; // the daemon's stdout/stderr
}

async function startCeph(): Promise<S3TestServer> {
  const t0 = Date.now();
  const deadline = t0 + STARTUP_DEADLINE_MS;
  const dir = await mkdtemp(join(tmpdir(), 'cubecache-ceph-'));
  const conf = join(dir, 'ceph.conf');
  const daemons: Daemon[] = [];

  // Only what the daemons and the python `ceph` CLI need; HOME points into the
  // temp dir so nothing is read from or written to the real one.
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: dir,
    LANG: 'C.UTF-8',
    CEPH_CONF: conf,
  };

  const killAllSync = (): void => {
    for (const d of daemons) killGroup(d.child, 'SIGKILL');
  };
  const unregister = registerCleanup(() => {
    killAllSync();
    rmSync(dir, { recursive: true, force: true });
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await stopDaemons(daemons);
      unregister();
      await rm(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  // Which daemon a failure is about, for the log tail in the error.
  let stage: 'setup' | 'mon' | 'osd' | 'rgw' = 'setup';
  try {
    const [monPort, rgwPort] = await freePorts(2);
    const fsid = randomUUID();
    const monAddr = `v1:127.0.0.1:${monPort}`;
    for (const sub of ['run', 'log', 'mon', 'osd', 'rgw', 'crash']) await mkdir(join(dir, sub));
    await writeFile(conf, cephConf({ dir, fsid, monAddr, rgwPort }));

    const cli = (program: string, args: string[], timeoutMs = 20_000): Promise<string> =>
      run(program, ['-c', conf, ...args], env, Math.max(1, Math.min(timeoutMs, deadline - Date.now())));
    const ceph = (args: string[], timeoutMs?: number): Promise<string> =>
      cli('ceph', ['--connect-timeout', '5', ...args], timeoutMs);
    const startDaemon = (name: string, program: string, args: string[]): Daemon => {
      const d = spawnDaemon(dir, name, program, ['-f', '-c', conf, ...args], env);
      daemons.push(d);
      return d;
    };

    // 1. monitor
    stage = 'mon';
    const monmap = join(dir, 'monmap');
    const keyring = join(dir, 'keyring');
    await run('monmaptool', ['--create', '--fsid', fsid, '--add', 'a', monAddr, monmap], env, 10_000);
    await run('ceph-authtool', ['--create-keyring', keyring, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *'], env, 10_000);
    await cli('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', monmap, '--keyring', keyring]);
    const mon = startDaemon('mon.a', 'ceph-mon', ['-i', 'a']);
    await waitFor('ceph mon stat', deadline, [mon], async () => {
      await ceph(['mon', 'stat'], 6_000);
      return true;
    });

    // 2. OSD (memstore). Placed in the CRUSH map by us: its own on-start update
    // is sometimes refused with 'wrong fsid'.
    stage = 'osd';
    // A monitor that answers 'mon stat' may still refuse the next command for a
    // moment ('EPERM: problem getting command descriptions from mon', seen once
    // in CI): both commands are idempotent (the same uuid gets the same id), so
    // they are retried until the deadline.
    const osdUuid = randomUUID();
    let osdId = '';
    await waitFor('ceph osd new', deadline, [mon], async () => {
      osdId = (await ceph(['osd', 'new', osdUuid], 6_000)).trim();
      return true;
    });
    if (!/^\d+$/.test(osdId)) throw new Error(`'ceph osd new' printed ${JSON.stringify(osdId)}, not an id`);
    await cli('ceph-osd', ['-i', osdId, '--mkfs', '--osd-uuid', osdUuid]);
    await waitFor('ceph osd crush add', deadline, [mon], async () => {
      await ceph(['osd', 'crush', 'add', `osd.${osdId}`, '1.0', 'host=local', 'root=default'], 6_000);
      return true;
    });
    const osd = startDaemon(`osd.${osdId}`, 'ceph-osd', ['-i', osdId]);
    await waitFor('ceph osd stat: 1 up', deadline, [mon, osd], async () => {
      const stat = JSON.parse(await ceph(['osd', 'stat', '-f', 'json'], 6_000)) as { num_up_osds?: number };
      return stat.num_up_osds === 1;
    });

    // 3. gateway: the user first (radosgw-admin creates the zone's pools), then radosgw.
    stage = 'rgw';
    const accessKeyId = randomBytes(10).toString('hex');
    const secretAccessKey = randomBytes(20).toString('hex');
    await cli('radosgw-admin', [
      'user', 'create', '--uid=test', '--display-name=test',
      `--access-key=${accessKeyId}`, `--secret=${secretAccessKey}`,
    ]);
    const rgw = startDaemon('client.rgw', 'radosgw', ['-n', 'client.rgw']);
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    await waitFor(`anonymous GET ${endpoint}/ = 200`, deadline, [mon, osd, rgw], async () => {
      const res = await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      return res.status === 200;
    });

    const readyMs = Date.now() - t0;
    process.stderr.write(
      `${LOG_PREFIX} using Ceph RGW (memstore, single node) at ${endpoint}, ready in ${readyMs} ms; temp dir ${dir}\n`,
    );
    return {
      kind: 'ceph',
      endpoint,
      region: REGION,
      accessKeyId,
      secretAccessKey,
      conditionalWrites: true,
      stop,
    };
  } catch (err) {
    const tails = daemonTails(dir, daemons, stage);
    await stop().catch(() => {});
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(
      `${LOG_PREFIX} Ceph RGW failed to start (stage ${stage}, after ${Date.now() - t0} ms): ${msg}${tails}`,
    );
  }
}

function cephConf(o: { dir: string; fsid: string; monAddr: string; rgwPort: number }): string {
  const { dir } = o;
  return `[global]
fsid = ${o.fsid}
mon host = ${o.monAddr}
mon initial members = a
# v1 only: one port per monitor, no msgr2 negotiation
ms bind msgr2 = false
ms bind ipv4 = true
ms bind ipv6 = false
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none

run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
log file = ${dir}/log/$name.log
pid file = ${dir}/run/$name.pid
keyring = ${dir}/keyring
crash dir = ${dir}/crash
# one daemon of each kind, so no $name in the data paths
mon data = ${dir}/mon
osd data = ${dir}/osd
rgw data = ${dir}/rgw

# paxos defaults (1 s / 0.05 s) make every map change slow: ready in ~1.4 s instead of ~14 s
paxos propose interval = 0.05
paxos min wait = 0.01

osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true

osd objectstore = memstore
memstore device bytes = 4294967296
osd max object size = 134217728
osd class update on start = false
osd crush update on start = false

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${o.rgwPort}
rgw dns name = 127.0.0.1
# Without these, every overwritten object stays in (memstore) memory for 2 hours.
rgw gc obj min wait = 0
rgw gc processor period = 2
`;
}

/** Runs a short-lived program, resolving with stdout; the error carries stderr. */
function run(program: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      program,
      args,
      // SIGKILL: the python `ceph` CLI does not always die of SIGTERM while connecting.
      { env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) {
          const how = err.killed ? `timed out after ${timeoutMs} ms` : `exit ${err.code ?? '?'}`;
          // The tail only: a crashing daemon prints its backtrace several times.
          reject(new Error(`${program} ${args.join(' ')}: ${how}\n${lastLines(String(stderr), 15)}`));
        } else {
          resolve(String(stdout));
        }
      },
    );
  });
}

function spawnDaemon(dir: string, name: string, program: string, args: string[], env: NodeJS.ProcessEnv): Daemon {
  const outFile = join(dir, 'log', `${name}.out`);
  const fd = openSync(outFile, 'a');
  // detached: a new session and process group (setsid), so stop() can kill the
  // whole group. Output goes to a file, not a pipe, so nothing here keeps our
  // event loop alive or blocks the daemon when we stop reading.
  const child = spawn(program, args, { env, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    child.once('exit', () => resolve());
    child.once('error', () => resolve()); // spawn failure: there is nothing to wait for
  });
  return { name, child, exited, logFile: join(dir, 'log', `${name}.log`), outFile };
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal); // detached => pgid == pid
  } catch {
    // ESRCH: the group is gone
  }
}

function isRunning(child: ChildProcess): boolean {
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
}

/**
 * Stops the daemons in reverse start order (radosgw, OSD, monitor): SIGTERM to
 * each process group, SIGKILL after the grace period. In reverse order each
 * exits in ~50-200 ms; SIGTERM to all at once leaves radosgw waiting on an OSD
 * that is gone, and it then needs the SIGKILL.
 */
async function stopDaemons(daemons: Daemon[]): Promise<void> {
  const survivors: string[] = [];
  for (const d of [...daemons].reverse()) {
    if (isRunning(d.child)) {
      killGroup(d.child, 'SIGTERM');
      if (!(await settlesWithin(d.exited, STOP_GRACE_MS))) {
        process.stderr.write(`${LOG_PREFIX} ${d.name} ignored SIGTERM for ${STOP_GRACE_MS} ms: SIGKILL\n`);
        killGroup(d.child, 'SIGKILL');
        if (!(await settlesWithin(d.exited, STOP_GRACE_MS))) survivors.push(`${d.name} (pid ${d.child.pid})`);
      }
    }
    killGroup(d.child, 'SIGKILL'); // anything the daemon left behind in its group
  }
  if (survivors.length > 0) throw new Error(`${LOG_PREFIX} Ceph daemons survived SIGKILL: ${survivors.join(', ')}`);
}

async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls `check` until it returns true, failing at the deadline or as soon as
 * one of `daemons` exits (without waiting for a CLI call stuck on a dead
 * daemon to time out). A throwing check counts as "not yet".
 */
async function waitFor(what: string, deadline: number, daemons: Daemon[], check: () => Promise<boolean>): Promise<void> {
  const died = Promise.race(daemons.map((d) => d.exited.then(() => d)));
  const diedError = (d: Daemon): Error => {
    const { exitCode, signalCode } = d.child;
    return new Error(`${d.name} exited (${signalCode ?? `code ${exitCode}`}) while waiting for ${what}`);
  };
  let lastError: unknown;
  for (;;) {
    const attempt = check().then(
      (ok) => ({ ok, err: undefined as unknown }),
      (err: unknown) => ({ ok: false, err }),
    );
    const result = await Promise.race([attempt, died]);
    if ('child' in result) throw diedError(result);
    if (result.ok) return;
    lastError = result.err;
    if (Date.now() >= deadline) {
      const last = lastError instanceof Error ? `; last error: ${lastError.message}` : '';
      throw new Error(`timed out waiting for ${what}${last}`);
    }
    const pause = new Promise<undefined>((r) => setTimeout(r, 50));
    const d = await Promise.race([pause, died]);
    if (d) throw diedError(d);
  }
}

/** The last lines of the logs of the daemon a failure is about (all of them when unsure). */
function daemonTails(dir: string, daemons: Daemon[], stage: string): string {
  const files: string[] = [];
  const prefix = { mon: 'mon.', osd: 'osd.', rgw: 'client.rgw', setup: '' }[stage] ?? '';
  for (const d of daemons) {
    if (d.name.startsWith(prefix) || isRunning(d.child) === false) files.push(d.outFile, d.logFile);
  }
  if (stage === 'rgw') files.push(join(dir, 'log', 'client.admin.log')); // radosgw-admin
  let out = '';
  for (const f of [...new Set(files)]) {
    const tail = tailOf(f, 40);
    if (tail) out += `\n--- tail of ${f} ---\n${tail}`;
  }
  return out;
}

function tailOf(file: string, lines: number): string {
  try {
    return lastLines(readFileSync(file, 'utf8'), lines);
  } catch {
    return '';
  }
}

function lastLines(text: string, n: number): string {
  return text.trimEnd().split('\n').slice(-n).join('\n');
}

/** n distinct free TCP ports on 127.0.0.1, none in 6800-7300 (the range the OSD binds). */
async function freePorts(n: number): Promise<number[]> {
  // Hold every picked port open until all are picked, so they are distinct.
  const servers: ReturnType<typeof createServer>[] = [];
  const ports: number[] = [];
  try {
    for (let tries = 0; ports.length < n; tries++) {
      if (tries > 100) throw new Error('could not find free ports outside 6800-7300');
      const srv = createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => resolve());
      });
      const { port } = srv.address() as AddressInfo;
      if (port < 6800 || port > 7300) ports.push(port);
    }
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
  return ports;
}

function onPath(program: string): boolean {
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    if (!d) continue;
    try {
      accessSync(join(d, program), fsConstants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}
