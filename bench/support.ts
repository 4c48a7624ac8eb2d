/**
 * Shared benchmark helpers: build check, server processes (cubecache and the bare node:http baseline),
 * wrk runs with generated Lua scripts, /proc readers, the event-loop probe, S3 set-up, worlds, tables.
 *
 * Benchmarks are not tests: they print figures, ratios and PASS/MISS against targets and always exit 0
 * unless they could not run at all.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const AUTH = { user: 'bench', password: 'bench-password-4f2a9c' };
export const AUTH_HEADER = `Basic ${Buffer.from(`${AUTH.user}:${AUTH.password}`).toString('base64')}`;
export const WORLD_CELLS = 16_777_216;
export const WORLD_BYTES = WORLD_CELLS * 4;
export const MiB = 1024 * 1024;

/** Seconds per wrk run (BENCH_SECONDS overrides). */
export const RUN_SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
export const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
export const THREADS = Number(process.env.BENCH_THREADS ?? 2);

let workDirPath: string | undefined;
/** Temp dir for this bench run (scripts, transpiled helpers, data dirs), made on first use; removed by cleanup() unless BENCH_KEEP. */
export function workDir(): string {
  workDirPath ??= mkdtempSync(join(tmpdir(), 'cubecache-bench-'));
  return workDirPath;
}
const cleanups: Array<() => void | Promise<void>> = [];
export function onCleanup(fn: () => void | Promise<void>): void { cleanups.push(fn); }
export async function cleanup(): Promise<void> {
  for (const fn of cleanups.reverse()) {
    try { await fn(); } catch (err) { console.error('cleanup failed:', err); }
  }
  cleanups.length = 0;
  if (workDirPath === undefined) return;
  if (!process.env.BENCH_KEEP) rmSync(workDirPath, { recursive: true, force: true });
  else console.log(`(kept ${workDirPath})`);
}
// Last resort: kill server processes we started if the bench dies.
const children = new Set<ChildProcess>();
process.on('exit', () => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); });

/** Runs the bench body; cleans up; prints a failure to run (not a missed target) and exits 1 only then. */
export async function main(name: string, body: () => Promise<void>): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const started = Date.now();
  console.log(`# ${name}`);
  console.log(machineLine());
  let failed = false;
  try {
    await body();
  } catch (err) {
    failed = true;
    console.error(`\n${name} could not run:`, err);
  } finally {
    await cleanup();
  }
  console.log(`\n${name} took ${((Date.now() - started) / 1000).toFixed(1)} s; ${machineLine()}`);
  process.exit(failed ? 1 : 0);
}

export function machineLine(): string {
  const la = loadavg().map((v) => v.toFixed(2)).join(' ');
  return `machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}, load average ${la}`;
}

// ---------------------------------------------------------------------------
// Build

/** The command that runs the server: compiled dist (rebuilt when stale) or, if the build fails, tsx on server.ts. */
export interface ServerCommand { args: string[]; how: string }

let serverCommand: ServerCommand | undefined;

export function ensureBuilt(): ServerCommand {
  if (serverCommand) return serverCommand;
  const flags = productionStart().nodeArgs;
  if (process.env.BENCH_SERVER === 'tsx') return (serverCommand = { args: [...flags, '--import', 'tsx', 'server.ts'], how: `node ${flags.join(' ')} --import tsx server.ts (BENCH_SERVER=tsx)` });
  const out = join(ROOT, 'dist', 'server.js');
  // Every source the build compiles or copies: server.ts and lib/ with its folders (lib/backup/...), and the console's files.
  const sources = [join(ROOT, 'server.ts'), ...(readdirSync(join(ROOT, 'lib'), { recursive: true }) as string[]).filter((f) => f.endsWith('.ts') || f.startsWith('console/')).map((f) => join(ROOT, 'lib', f))];
  const newest = Math.max(...sources.map((f) => statSync(f).mtimeMs));
  const stale = !existsSync(out) || statSync(out).mtimeMs < newest;
  if (stale) {
    console.log('dist/ is older than the sources: npm run build');
    const result = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
    if (result.status !== 0) {
      console.log('!! build failed (sources being edited?): falling back to node --import tsx server.ts');
      return (serverCommand = { args: [...flags, '--import', 'tsx', 'server.ts'], how: 'node --import tsx server.ts (build failed)' });
    }
  }
  // As `npm start` runs it (the Procfile's node takes the same flags, and .ebextensions the same environment).
  const env = Object.entries(productionStart().env).map(([k, v]) => `${k}=${v} `).join('');
  return (serverCommand = { args: [...flags, 'dist/server.js'], how: `${env}node ${flags.join(' ')} dist/server.js${stale ? ' (rebuilt)' : ''}` });
}

/**
 * The environment and node flags of `npm start` (package.json): `VAR=value ... node <flags> dist/server.js`.
 * Benchmarks run the server with them, so they measure the process production runs.
 */
export function productionStart(root = ROOT): { env: Record<string, string>; nodeArgs: string[] } {
  const start = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const words = start.trim().split(/\s+/);
  const node = words.indexOf('node');
  if (node < 0 || words.at(-1) !== 'dist/server.js') throw new Error(`npm start is not "VAR=value node <flags> dist/server.js": ${start}`);
  const env = Object.fromEntries(words.slice(0, node).map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]));
  return { env, nodeArgs: words.slice(node + 1, -1) };
}

/** Transpiles a self-contained bench TS module (node: imports only) to an .mjs file in workDir(); returns its path. */
export function transpileToMjs(file: string): string {
  const source = readFileSync(join(ROOT, 'bench', file), 'utf8');
  const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
  const target = join(workDir(), file.replace(/\.ts$/, '.mjs'));
  writeFileSync(target, outputText);
  return target;
}

// ---------------------------------------------------------------------------
// Server processes

export interface LoopWindow { maxMs: number; p99Ms: number; p50Ms: number; count: number; windowMs: number }

export interface ServerProc {
  name: string;
  child: ChildProcess;
  pid: number;
  url: string;
  /** performance.now() when the process was spawned. */
  spawnedAt: number;
  /** JSON log events with the performance.now() they arrived at. */
  events: Array<{ at: number; event: Record<string, unknown> }>;
  output(): string;
  waitForEvent(name: string, timeoutMs?: number): Promise<{ at: number; event: Record<string, unknown> }>;
  /** Reads and resets the event-loop probe (only with `probe: true`). */
  loopWindow(): Promise<LoopWindow>;
  /** Runs a full GC in the process (only with `probe: true` and --expose-gc); memoryUsage() before and after. */
  forceGc(): Promise<{ gc: boolean; before: NodeJS.MemoryUsage; after: NodeJS.MemoryUsage }>;
  /** memoryUsage() and the size of each V8 heap space, as they are (only with `probe: true`). */
  memoryNow(): Promise<MemProbe>;
  /** SIGTERM, wait (final backup if dirty), SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<number | null>;
  exited: Promise<number | null>;
}

export interface StartOptions {
  env?: Record<string, string>;
  /** Extra node flags (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Preload the event-loop probe (bench/loop-probe.ts): windowed max delay on SIGUSR2. */
  probe?: boolean;
  /** Do not wait for `listening` (boot measurements poll themselves). */
  noWait?: boolean;
  /** Called right after spawn (RSS samplers). */
  onSpawn?: (pid: number) => void;
  /** How long to wait for `listening` (60 s): a restore of a large world on a busy machine takes longer. */
  listenTimeoutMs?: number;
  /** Another checkout to run instead of this one (its dist/server.js, built there): an earlier build to compare against. */
  root?: string;
}

/** The commit a checkout stands at, for the report (BENCH_AGAINST). */
export function gitHead(dir: string): string {
  try { return execFileSync('git', ['-C', dir, 'log', '-1', '--format=%h %s'], { encoding: 'utf8' }).trim().slice(0, 80); } catch { return 'not a git checkout'; }
}

/** What the probe's SIGURG prints: process.memoryUsage() and V8's heap spaces (name → bytes reserved). */
export interface MemProbe { usage: NodeJS.MemoryUsage; spaces: Record<string, number> }

let probePath: string | undefined;

/** Node flags from BENCH_PROFILE=cpu|heap: profiles of the server process go to $TMPDIR/cubecache-bench-profiles/<label>/ (kept). */
export function profileArgs(label: string): string[] {
  const kind = process.env.BENCH_PROFILE;
  if (!kind) return [];
  const dir = join(process.env.BENCH_PROFILE_DIR ?? join(tmpdir(), 'cubecache-bench-profiles'), label);
  console.log(`(profiling the server: --${kind}-prof into ${dir})`);
  if (kind === 'cpu') return ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=200'];
  if (kind === 'heap') return ['--heap-prof', `--heap-prof-dir=${dir}`];
  throw new Error(`BENCH_PROFILE must be cpu or heap, not ${kind}`);
}

/** Starts cubecache as a real process on 127.0.0.1, a free port, with the bench credentials. Default store: a temp folder. */
export async function startCubecache(name: string, options: StartOptions = {}): Promise<ServerProc> {
  const command = ensureBuilt();
  const nodeArgs = [...(options.nodeArgs ?? [])];
  if (options.probe) {
    probePath ??= transpileToMjs('loop-probe.ts');
    nodeArgs.push('--import', pathToFileURL(probePath).href);
  }
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOST: '127.0.0.1', PORT: '0',
    AUTH_USER: AUTH.user, AUTH_PASSWORD: AUTH.password,
    BACKUP_INTERVAL_SECONDS: '0',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    ...productionStart().env,
    // glibc malloc tuning (e.g. MALLOC_MMAP_THRESHOLD_) passes through, to compare allocator settings.
    ...Object.fromEntries(Object.entries(process.env).filter(([k, v]) => k.startsWith('MALLOC_') && v !== undefined)) as Record<string, string>,
    ...options.env,
  };
  if (!env.S3_BUCKET && !env.DATA_DIR) env.DATA_DIR = mkdtempSync(join(workDir(), 'data-'));
  // Each server its own write-ahead log (never ./data/wal of the checkout, and never one shared by two runs).
  if (env.WAL_DIR === undefined) env.WAL_DIR = join(mkdtempSync(join(workDir(), 'wal-')), 'wal');
  if (options.root !== undefined && !existsSync(join(options.root, 'dist', 'server.js'))) throw new Error(`${options.root}: no dist/server.js (run npm ci and npm run build there)`);
  const args = options.root === undefined ? command.args : [...productionStart(options.root).nodeArgs, 'dist/server.js'];
  return spawnProcess(name, [...nodeArgs, ...args], env, options);
}

/** Starts the bare node:http baseline (bench/baseline-server.ts, transpiled, no tsx in the process). */
export async function startBaseline(cells = WORLD_CELLS, nodeArgs: string[] = []): Promise<ServerProc> {
  const file = transpileToMjs('baseline-server.ts');
  return spawnProcess('baseline', [...nodeArgs, file], {
    PATH: process.env.PATH ?? '/usr/bin:/bin', HOST: '127.0.0.1', PORT: '0',
    AUTH_USER: AUTH.user, AUTH_PASSWORD: AUTH.password, CUBE_CELLS: String(cells),
  }, {});
}

async function spawnProcess(name: string, args: string[], env: Record<string, string>, options: StartOptions): Promise<ServerProc> {
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, args, { cwd: options.root ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  if (child.pid === undefined) throw new Error(`${name}: spawn failed`);
  options.onSpawn?.(child.pid);
  const events: ServerProc['events'] = [];
  let raw = '';
  let pendingOut = '';
  let pendingErr = '';
  const wakers = new Set<() => void>();
  const probeLines: LoopWindow[] = [];
  const gcLines: Array<{ gc: boolean; before: NodeJS.MemoryUsage; after: NodeJS.MemoryUsage }> = [];
  const memLines: MemProbe[] = [];
  child.stdout!.on('data', (chunk: Buffer) => {
    const at = performance.now();
    const text = chunk.toString();
    raw += text;
    pendingOut += text;
    let nl;
    while ((nl = pendingOut.indexOf('\n')) >= 0) {
      const line = pendingOut.slice(0, nl);
      pendingOut = pendingOut.slice(nl + 1);
      try { events.push({ at, event: JSON.parse(line) as Record<string, unknown> }); } catch { /* not JSON */ }
    }
    for (const w of wakers) w();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    const text = chunk.toString();
    pendingErr += text;
    let nl;
    while ((nl = pendingErr.indexOf('\n')) >= 0) {
      const line = pendingErr.slice(0, nl);
      pendingErr = pendingErr.slice(nl + 1);
      if (line.startsWith('LOOPPROBE ')) probeLines.push(JSON.parse(line.slice(10)) as LoopWindow);
      else if (line.startsWith('GCPROBE ')) gcLines.push(JSON.parse(line.slice(8)) as (typeof gcLines)[number]);
      else if (line.startsWith('MEMPROBE ')) memLines.push(JSON.parse(line.slice(9)) as MemProbe);
      else raw += line + '\n';
    }
    for (const w of wakers) w();
  });
  let done = false;
  const exited = once(child, 'exit').then(([code]) => { done = true; children.delete(child); for (const w of wakers) w(); return code as number | null; });

  const waitFor = <T>(what: string, check: () => T | undefined, timeoutMs: number): Promise<T> => new Promise((resolveWait, reject) => {
    const timer = setTimeout(() => { wakers.delete(wake); reject(new Error(`${name}: no ${what} within ${timeoutMs} ms; output:\n${raw.slice(-4000)}`)); }, timeoutMs);
    const wake = () => {
      const found = check();
      if (found !== undefined) { clearTimeout(timer); wakers.delete(wake); resolveWait(found); return; }
      if (done) { clearTimeout(timer); wakers.delete(wake); reject(new Error(`${name}: exited before ${what}; output:\n${raw.slice(-4000)}`)); }
    };
    wakers.add(wake);
    wake();
  });

  const proc: ServerProc = {
    name, child, pid: child.pid, url: '', spawnedAt, events, exited,
    output: () => raw,
    waitForEvent: (event, timeoutMs = 60_000) => waitFor(`${event} event`, () => events.find((e) => e.event.event === event), timeoutMs),
    async loopWindow() {
      const before = probeLines.length;
      child.kill('SIGUSR2');
      return waitFor('LOOPPROBE line', () => (probeLines.length > before ? probeLines[before] : undefined), 10_000);
    },
    async forceGc() {
      const before = gcLines.length;
      child.kill('SIGWINCH');
      return waitFor('GCPROBE line', () => (gcLines.length > before ? gcLines[before] : undefined), 30_000);
    },
    async memoryNow() {
      const before = memLines.length;
      child.kill('SIGURG');
      return waitFor('MEMPROBE line', () => (memLines.length > before ? memLines[before] : undefined), 10_000);
    },
    async stop(graceMs = 60_000) {
      if (done) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  onCleanup(async () => { if (!done) { child.kill('SIGKILL'); await exited; } });
  if (!options.noWait) {
    const listening = await proc.waitForEvent('listening', options.listenTimeoutMs);
    proc.url = `http://127.0.0.1:${listening.event.port as number}`;
  }
  return proc;
}

// ---------------------------------------------------------------------------
// HTTP

export interface HttpAnswer { status: number; body: Buffer; ms: number }

/** One request on a fresh connection; the whole answer. */
export function http(url: string, options: { method?: string; body?: Uint8Array | string; auth?: boolean; timeoutMs?: number; headers?: Record<string, string> } = {}): Promise<HttpAnswer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.auth !== false) headers.Authorization = AUTH_HEADER;
  if (options.body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(options.body));
  const started = performance.now();
  return new Promise((resolveAnswer, reject) => {
    const req = httpRequest(url, { method: options.method ?? (options.body === undefined ? 'GET' : 'POST'), headers, agent: false, timeout: options.timeoutMs ?? 300_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolveAnswer({ status: res.statusCode ?? 0, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), ms: performance.now() - started }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

export async function httpJson(url: string, options: Parameters<typeof http>[1] = {}): Promise<{ status: number; json: any; ms: number }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const answer = await http(url, options);
  let json: unknown;
  try { json = JSON.parse(answer.body.toString('utf8')); } catch { json = answer.body.toString('utf8'); }
  return { status: answer.status, json, ms: answer.ms };
}

/** PUT /cells of the whole world; throws unless 200. */
export async function fillWorld(server: ServerProc, bytes: Uint8Array): Promise<number> {
  const answer = await http(`${server.url}/cells`, { method: 'PUT', body: bytes, headers: { 'Content-Type': 'application/octet-stream' } });
  if (answer.status !== 200) throw new Error(`PUT /cells: ${answer.status} ${answer.body.toString().slice(0, 300)}`);
  return answer.ms;
}

export interface BackupAnswer { name: string; bytes: number; compressedBytes: number; sha256: string; durationMs: number; clientMs: number }

/** POST /s3dump; throws unless 200. */
export async function s3dump(server: ServerProc): Promise<BackupAnswer> {
  const answer = await httpJson(`${server.url}/s3dump`, { method: 'POST', body: '{}' });
  if (answer.status !== 200) throw new Error(`POST /s3dump: ${answer.status} ${JSON.stringify(answer.json)}`);
  return { ...(answer.json.backup as Omit<BackupAnswer, 'clientMs'>), clientMs: answer.ms };
}

/** GET /metrics as name{labels} → value. */
export async function metrics(server: ServerProc): Promise<Map<string, number>> {
  const answer = await http(`${server.url}/metrics`);
  const out = new Map<string, number>();
  for (const line of answer.body.toString('utf8').split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const space = line.lastIndexOf(' ');
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

export async function loopDelayMaxMs(server: ServerProc): Promise<number> {
  return ((await metrics(server)).get('cubecache_event_loop_delay_seconds{quantile="1"}') ?? NaN) * 1000;
}

// ---------------------------------------------------------------------------
// /proc

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** CPU time (user + system, all threads) of a process, in ms. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK; // utime, stime (fields 14, 15)
}

/** VmRSS and VmHWM of a process, in bytes. */
export function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** /proc/<pid>/smaps_rollup in bytes by field (Rss, Anonymous, Pss_File, ...): anonymous memory vs mapped files. */
export function smapsRollup(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').matchAll(/^(\w+):\s+(\d+) kB/gm)) out[m[1]!] = Number(m[2]) * 1024;
  return out;
}

/** Samples VmRSS every `everyMs` until stopped; marks let callers take the peak of a window. */
export class RssSampler {
  readonly samples: Array<{ at: number; rss: number }> = [];
  private timer: NodeJS.Timeout | undefined;
  constructor(readonly pid: number, everyMs = 10) {
    this.timer = setInterval(() => {
      try { this.samples.push({ at: performance.now(), rss: memory(this.pid).rss }); } catch { this.stop(); }
    }, everyMs);
  }
  sampleNow(): number {
    const rss = memory(this.pid).rss;
    this.samples.push({ at: performance.now(), rss });
    return rss;
  }
  window(from: number, to = performance.now()): { peak: number; median: number; n: number } {
    const rss = this.samples.filter((s) => s.at >= from && s.at <= to).map((s) => s.rss);
    return { peak: Math.max(...rss), median: median(rss), n: rss.length };
  }
  stop(): void { clearInterval(this.timer); this.timer = undefined; }
}

// ---------------------------------------------------------------------------
// wrk

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  /** Latency percentiles in ms (from wrk's done(): exact microseconds). */
  p50: number; p90: number; p99: number; p999: number; max: number; mean: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  bytesRead: number;
  text: string;
}

let wrkChecked = false;
export function wrkBinary(): string {
  const candidates = ['/usr/bin/wrk', ...(process.env.PATH ?? '').split(':').filter(Boolean).map((d) => join(d, 'wrk'))];
  const found = candidates.find((c) => existsSync(c));
  if (!found) {
    throw new Error('wrk is not installed. On Debian or Ubuntu: apt-get install wrk   (the benchmarks use wrk as the load generator)');
  }
  if (!wrkChecked) {
    wrkChecked = true;
    const v = spawnSync(found, ['-v'], { encoding: 'utf8' });
    console.log(`load generator: ${(v.stdout + v.stderr).split('\n')[0]?.trim()} (${found}), ${THREADS} threads, ${CONNECTIONS} connections, keep-alive, ${RUN_SECONDS} s a run`);
  }
  return found;
}

export type Mode = 'read' | 'write' | 'mix';

export interface ScriptOptions {
  /** /request bodies: one command (batch 0) or arrays of `batch` commands; `webdis`: the same single-cell work as GETRANGE/SETRANGE on the Redis peer. */
  kind: 'request' | 'cells-get' | 'cells-put' | 'webdis';
  mode?: Mode;
  batch?: number;
  /** Range size in cells for /cells. */
  rangeCells?: number;
  cells?: number;
}

let scriptCount = 0;

/**
 * A wrk Lua script: each thread builds a pool of ready-made requests with random indexes in init() (so wrk
 * spends no time per request building bodies), cycles through it, and done() prints exact figures as JSON.
 */
export function wrkScript(o: ScriptOptions): string {
  const cells = o.cells ?? WORLD_CELLS;
  const batch = o.batch ?? 0;
  const per = Math.max(1, batch);
  const pool = o.kind === 'request' || o.kind === 'webdis' ? Math.max(4, Math.min(10_000, Math.floor(40_000 / per))) : o.kind === 'cells-get' ? 1000 : 4;
  const lua = `
local kind, mode, batch, cells, poolSize, rangeCells = "${o.kind}", "${o.mode ?? 'read'}", ${batch}, ${cells}, ${pool}, ${o.rangeCells ?? 0}
local auth = "${AUTH_HEADER}"
local pool, n, i = {}, 0, 0
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
local function command(k)
  local index = math.random(0, cells - 1)
  local write = mode == "write" or (mode == "mix" and k % 2 == 0)
  if write then
    return string.format('{"action":1,"index":%d,"category":%d,"rotation":%d,"sideA":%d,"sideB":%d}', index, math.random(0, 255), math.random(0, 3), math.random(0, 255), math.random(0, 255))
  end
  return string.format('{"action":0,"index":%d}', index)
end
function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
  for k = 1, poolSize do
    if kind == "request" then
      local body
      if batch == 0 then
        body = command(k)
      else
        local parts = {}
        for j = 1, batch do parts[j] = command(k + j) end
        body = "[" .. table.concat(parts, ",") .. "]"
      end
      pool[k] = wrk.format("POST", "/request", { ["Authorization"] = auth, ["Content-Type"] = "application/json" }, body)
    elseif kind == "webdis" then
      local at = math.random(0, cells - 1) * 4
      local path
      if mode == "write" or (mode == "mix" and k % 2 == 0) then
        path = string.format("/SETRANGE/world/%d/%%%02X%%%02X%%%02X%%%02X", at, math.random(0, 255), math.random(0, 3), math.random(0, 255), math.random(0, 255))
      else
        path = string.format("/GETRANGE/world/%d/%d", at, at + 3)
      end
      pool[k] = wrk.format("GET", path, { ["Authorization"] = auth })
    elseif kind == "cells-get" then
      local start = math.random(0, cells - rangeCells)
      pool[k] = wrk.format("GET", "/cells?start=" .. start .. "&count=" .. rangeCells, { ["Authorization"] = auth })
    else
      local block = {}
      for j = 1, 4096 do block[j] = string.char(math.random(0, 255)) end
      local body = string.rep(table.concat(block), rangeCells * 4 / 4096)
      local start = math.random(0, cells - rangeCells)
      pool[k] = wrk.format("PUT", "/cells?start=" .. start, { ["Authorization"] = auth, ["Content-Type"] = "application/octet-stream" }, body)
    end
  end
  n = poolSize
end
function request()
  i = i % n + 1
  return pool[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"p999":%.0f,"max":%.0f,"mean":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
`;
  const file = join(workDir(), `wrk-${++scriptCount}-${o.kind}-${o.mode ?? ''}-${batch}-${o.rangeCells ?? 0}.lua`);
  writeFileSync(file, lua);
  return file;
}

/** Runs wrk against `url` (the path comes from the script) with --latency; parses its figures. */
export async function runWrk(url: string, script: string, seconds = RUN_SECONDS, options: { connections?: number; threads?: number } = {}): Promise<WrkResult> {
  const args = [`-t${options.threads ?? THREADS}`, `-c${options.connections ?? CONNECTIONS}`, `-d${seconds}s`, '--latency', '--timeout', '10s', '-s', script, url];
  const child = spawn(wrkBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout.on('data', (c: Buffer) => { text += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { text += c.toString(); });
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`wrk exited with ${code}: ${text}`);
  return parseWrk(text);
}

/** Parses wrk's output: the WRKJSON line of the script's done() when present, else the --latency text. */
export function parseWrk(text: string): WrkResult {
  const jsonLine = /^WRKJSON (.*)$/m.exec(text);
  if (jsonLine) {
    const j = JSON.parse(jsonLine[1]!) as Record<string, number>;
    const seconds = j.duration_us! / 1e6;
    return {
      requests: j.requests!, seconds, rps: j.requests! / seconds,
      p50: j.p50! / 1000, p90: j.p90! / 1000, p99: j.p99! / 1000, p999: j.p999! / 1000, max: j.max! / 1000, mean: j.mean! / 1000,
      errors: { connect: j.connect!, read: j.read!, write: j.write!, status: j.status!, timeout: j.timeout! },
      bytesRead: j.bytes!, text,
    };
  }
  const ms = (s: string | undefined): number => {
    const m = /([\d.]+)(us|ms|s|m)/.exec(s ?? '');
    if (!m) return NaN;
    return Number(m[1]) * ({ us: 0.001, ms: 1, s: 1000, m: 60_000 } as Record<string, number>)[m[2]!]!;
  };
  const pct = (p: string) => ms(new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(text)?.[1]);
  const total = /(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read/.exec(text);
  const requests = Number(total?.[1] ?? NaN);
  const seconds = ms(`${total?.[2]}${total?.[3]}`) / 1000;
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
  return {
    requests, seconds, rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? NaN),
    p50: pct('50'), p90: pct('90'), p99: pct('99'), p999: NaN, max: ms(/Latency\s+\S+\s+\S+\s+(\S+)/.exec(text)?.[1]), mean: ms(/Latency\s+(\S+)/.exec(text)?.[1]),
    errors: { connect: Number(socket?.[1] ?? 0), read: Number(socket?.[2] ?? 0), write: Number(socket?.[3] ?? 0), status: non2xx, timeout: Number(socket?.[4] ?? 0) },
    bytesRead: NaN, text,
  };
}

/** A warning line when a run saw errors (non-2xx answers or socket errors). */
export function wrkErrors(r: WrkResult): string | undefined {
  const e = r.errors;
  const total = e.connect + e.read + e.write + e.status + e.timeout;
  return total > 0 ? `errors: connect ${e.connect}, read ${e.read}, write ${e.write}, non-2xx ${e.status}, timeout ${e.timeout}` : undefined;
}

// ---------------------------------------------------------------------------
// S3

export interface S3Setup { env: Record<string, string>; kind: string; endpoint: string }

/** Starts the throw-away S3 server (Ceph RGW where installed, else s3rver), makes a bucket, returns the server env for it. */
export async function startS3(): Promise<S3Setup> {
  const { startS3Server, createTestBucket } = await import('../test/support/s3-server.js');
  const server = await startS3Server();
  onCleanup(() => server.stop());
  const bucket = await createTestBucket(server);
  console.log(`S3: ${server.kind === 'ceph' ? 'Ceph RGW (memstore, single node, same machine)' : 's3rver (a fake, in the bench process)'} at ${server.endpoint}, bucket ${bucket}`);
  return {
    kind: server.kind,
    endpoint: server.endpoint,
    env: {
      S3_BUCKET: bucket,
      AWS_ENDPOINT_URL_S3: server.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: server.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
      AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED',
      AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
      BACKUP_RETAIN: '2',
    },
  };
}

// ---------------------------------------------------------------------------
// Worlds

export type WorldKind = 'sparse' | 'random';

/** Deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A 64 MiB world. `random`: random bytes (incompressible). `sparse`: like a real map, ~5% of cells set in
 * clustered regions of the 256³ cube (index = x + 256·y + 65536·z): a ground layer a few cells deep, then
 * boxes (buildings, rocks, trees) of one block category each, with mostly uniform rotation and faces.
 */
export function makeWorld(kind: WorldKind, cells = WORLD_CELLS): { bytes: Uint8Array; cellsSet: number } {
  const bytes = new Uint8Array(cells * 4);
  if (kind === 'random') {
    for (let at = 0; at < bytes.length; at += 65536) randomFillSync(bytes, at, Math.min(65536, bytes.length - at));
    return { bytes, cellsSet: cells };
  }
  const side = Math.round(Math.cbrt(cells));
  if (side ** 3 !== cells) throw new Error('sparse worlds need a cube of cells');
  const rnd = prng(42);
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  let set = 0;
  const put = (x: number, y: number, z: number, category: number, rotation: number, a: number, b: number) => {
    const at = (x + side * (y + side * z)) * 4;
    if (bytes[at] === 0 && bytes[at + 1] === 0 && bytes[at + 2] === 0 && bytes[at + 3] === 0) set++;
    bytes[at] = category; bytes[at + 1] = rotation; bytes[at + 2] = a; bytes[at + 3] = b;
  };
  const groundDepth = Math.max(1, Math.round(side * 0.012)); // 3 layers of 256: ~1.2% of the world
  for (let z = 0; z < groundDepth; z++) for (let y = 0; y < side; y++) for (let x = 0; x < side; x++) put(x, y, z, z === groundDepth - 1 ? 2 : 1, 0, 0, 0);
  const target = Math.round(cells * 0.05);
  while (set < target) {
    const w = int(3, 24), d = int(3, 24), h = int(2, 40);
    const x0 = int(0, side - w), y0 = int(0, side - d), z0 = groundDepth;
    const category = int(3, 40);
    const hollow = rnd() < 0.6; // buildings: walls only
    const faceA = int(0, 3), faceB = int(0, 3);
    for (let z = z0; z < Math.min(side, z0 + h); z++) {
      for (let y = y0; y < y0 + d; y++) {
        for (let x = x0; x < x0 + w; x++) {
          const wall = x === x0 || x === x0 + w - 1 || y === y0 || y === y0 + d - 1 || z === z0 || z === z0 + h - 1;
          if (hollow && !wall) continue;
          put(x, y, z, category, rnd() < 0.1 ? int(0, 3) : 0, faceA, faceB);
        }
      }
    }
  }
  return { bytes, cellsSet: set };
}

/** Fills a fresh server on `prefix` with a world, commits one backup, stops it: the prefix then holds a 64 MiB backup. */
export async function prepareBackup(s3: S3Setup, kind: WorldKind, prefix: string): Promise<{ compressedBytes: number; cellsSet: number; backupName: string }> {
  const world = makeWorld(kind);
  const server = await startCubecache(`prepare-${kind}`, { env: { ...s3.env, S3_PREFIX: prefix } });
  await fillWorld(server, world.bytes);
  const backup = await s3dump(server);
  await server.stop();
  return { compressedBytes: backup.compressedBytes, cellsSet: world.cellsSet, backupName: backup.name };
}

// ---------------------------------------------------------------------------
// Figures and tables

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function fmt(value: number, digits = 1): string {
  if (!Number.isFinite(value)) return '-';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
export const fmtInt = (v: number) => fmt(v, 0);
export const fmtMiB = (bytes: number) => `${fmt(bytes / MiB, 1)} MiB`;
export const fmtMs = (ms: number) => `${fmt(ms, ms < 10 ? 2 : 1)} ms`;

/** Prints a table with a header row; numbers are right-aligned. */
export function table(title: string, header: string[], rows: Array<Array<string | number>>): void {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : c)))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? '').length)));
  const right = header.map((_, i) => rows.every((r) => typeof r[i] === 'number' || /^[\d,.\-x% ]+(ms|MiB|MB\/s|s|x)?$/.test(String(r[i] ?? ''))));
  const line = (r: Array<string | number>) => '| ' + r.map((c, i) => (right[i] ? String(c).padStart(widths[i]!) : String(c).padEnd(widths[i]!))).join(' | ') + ' |';
  console.log(`\n${title}`);
  console.log(line(cells[0]!));
  console.log('|' + widths.map((w, i) => (right[i] ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|');
  for (const r of cells.slice(1)) console.log(line(r));
}

export interface Verdict { target: string; measured: string; pass: boolean }

/** Prints the targets with PASS/MISS (a miss is reported, never an exit code). */
export function verdicts(list: Verdict[]): void {
  table('Targets', ['target', 'measured', 'result'], list.map((v) => [v.target, v.measured, v.pass ? 'PASS' : 'MISS']));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
