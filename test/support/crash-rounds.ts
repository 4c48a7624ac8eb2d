/**
 * Crash rounds: run the real server process under concurrent single writes, batches and range writes, stop
 * it (SIGKILL at a random moment, or SIGTERM), optionally lose the instance's disk (the write-ahead log) or
 * drop what was not fdatasynced (a power loss), restart it, and compare the world with the test's own model.
 * Used by test/crash.test.ts (a few rounds) and scripts/crash-rounds.ts (as many as you like).
 */
import { Agent, request } from 'node:http';
import { readdir, readFile, rm, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { startServerProcess, type Owner, type ServerProcess } from './process.js';

export interface CrashRoundsOptions {
  rounds: number;
  /** How each round stops the server; 'mixed' alternates SIGKILL and SIGTERM. */
  signal: 'SIGKILL' | 'SIGTERM' | 'mixed';
  /** After a SIGKILL: 'process' keeps the disk; 'instance' deletes WAL_DIR (the instance is gone, the store is not); 'power' drops what no fdatasync covered. */
  loss?: 'process' | 'instance' | 'power';
  cells: number;
  /** The server's store and log settings (DATA_DIR or S3_* and AWS_*, WAL_DIR, WAL_SYNC, intervals). WAL_DIR is required. */
  env: Record<string, string>;
  owner: Owner;
  /** Writers in parallel; each owns a block of cells, so each cell's values only grow. */
  writers?: number;
  /** Random run time of a round before the stop, in ms. */
  runMs?: [number, number];
  log?: (line: string) => void;
}

export interface CrashRoundsReport {
  rounds: number;
  writesSent: number;
  /** Cells written by acknowledged requests (a batch or range counts each cell). */
  writesAcknowledged: number;
  /** Acknowledged writes missing after a restart. 0 is the promise after a process crash, SIGTERM or a power loss in strict mode. */
  lost: number;
  lostAfterSigterm: number;
  lostAfterSigkill: number;
  /** The oldest lost write: how long before the stop it was acknowledged. */
  maxLossWindowMs: number;
  /** Rounds whose restored world held a value never sent to that cell, or older than a surviving later one. Must be 0. */
  inconsistentRounds: number;
}

const AUTH = { user: 'crash', password: 'crash-rounds-password' };
const authHeader = `Basic ${Buffer.from(`${AUTH.user}:${AUTH.password}`).toString('base64')}`;

/** Runs the rounds and returns the figures; throws only when the harness itself fails. */
export async function runCrashRounds(options: CrashRoundsOptions): Promise<CrashRoundsReport> {
  const { cells } = options;
  const walDir = options.env.WAL_DIR;
  if (!walDir) throw new Error('crash rounds need WAL_DIR in env');
  const writers = options.writers ?? 4;
  const block = Math.floor(cells / writers);
  const [minRun, maxRun] = options.runMs ?? [300, 1200];
  const log = options.log ?? (() => {});
  const env = { CUBE_CELLS: String(cells), AUTH_USER: AUTH.user, AUTH_PASSWORD: AUTH.password, ...(options.loss === 'power' ? { CUBECACHE_TEST_SYNC_MARKS: '1' } : {}), ...options.env };
  const report: CrashRoundsReport = { rounds: 0, writesSent: 0, writesAcknowledged: 0, lost: 0, lostAfterSigterm: 0, lostAfterSigkill: 0, maxLossWindowMs: 0, inconsistentRounds: 0 };
  const newAgent = () => new Agent({ keepAlive: true, maxSockets: writers + 1 });
  let agent = newAgent();
  const sent = new Map<number, Set<number>>(); // cell → every value ever sent to it
  const acked = new Map<number, { value: number; at: number }>(); // cell → newest acknowledged value
  let counter = 0;

  let server: ServerProcess & { url: string } = await startServerProcess(options.owner, env);
  try {
    for (let round = 1; round <= options.rounds; round++) {
      const signal = options.signal === 'mixed' ? (round % 2 ? 'SIGKILL' : 'SIGTERM') : options.signal;
      let running = true;
      let ackedThisRound = 0;
      const loops = Array.from({ length: writers }, async (_, w) => {
        const from = w * block;
        while (running) {
          // A single write, a batch of a few cells, or a range: each cell a new, larger value.
          const kind = Math.random();
          const count = kind < 0.5 ? 1 : 2 + Math.floor(Math.random() * 6);
          const start = from + Math.floor(Math.random() * (block - count));
          const targets = kind < 0.8 ? Array.from({ length: count }, () => from + Math.floor(Math.random() * block)) : Array.from({ length: count }, (_, i) => start + i);
          const values = targets.map((cell) => {
            const value = ++counter;
            let cellValues = sent.get(cell);
            if (!cellValues) sent.set(cell, (cellValues = new Set()));
            cellValues.add(value);
            return value;
          });
          report.writesSent += targets.length;
          try {
            let status: number;
            if (kind < 0.5) status = (await send(server.url, 'POST', '/request', JSON.stringify(command(targets[0]!, values[0]!)), agent)).status;
            else if (kind < 0.8) status = (await send(server.url, 'POST', '/request', JSON.stringify(targets.map((cell, i) => command(cell, values[i]!))), agent)).status;
            else {
              const body = Buffer.alloc(count * 4);
              values.forEach((value, i) => body.writeUInt32LE(value, i * 4));
              status = (await send(server.url, 'PUT', `/cells?start=${start}`, body, agent)).status;
            }
            if (status !== 200) throw new Error(`write answered ${status}`);
            const at = Date.now();
            targets.forEach((cell, i) => { if ((acked.get(cell)?.value ?? 0) < values[i]!) acked.set(cell, { value: values[i]!, at }); });
            ackedThisRound += targets.length;
          } catch {
            return; // the server is gone: this write was never acknowledged
          }
        }
      });
      const runMs = minRun + Math.random() * (maxRun - minRun);
      await new Promise((r) => setTimeout(r, runMs)); // the moment of the crash is the experiment's input, not synchronisation
      const stoppedAt = Date.now();
      server.child.kill(signal);
      await server.exited;
      running = false;
      await Promise.all(loops);
      agent.destroy();
      agent = newAgent();
      if (signal === 'SIGKILL' && options.loss === 'instance') await rm(walDir, { recursive: true, force: true });
      if (signal === 'SIGKILL' && options.loss === 'power') await dropUnsynced(walDir);

      server = await startServerProcess(options.owner, env);
      const world = await readWorld(server.url, cells, agent);
      let consistent = true;
      let lost = 0;
      let window = 0;
      for (let cell = 0; cell < cells; cell++) {
        const value = world[cell]!;
        if (value !== 0 && !sent.get(cell)?.has(value)) consistent = false;
        const last = acked.get(cell);
        if (last && value < last.value) {
          lost++;
          window = Math.max(window, stoppedAt - last.at);
        }
        // What survived is now the model: later rounds compare against it.
        if (value > 0 && (last?.value ?? 0) !== value) acked.set(cell, { value, at: stoppedAt });
        if (value === 0) acked.delete(cell);
      }
      report.rounds++;
      report.writesAcknowledged += ackedThisRound;
      report.lost += lost;
      if (signal === 'SIGTERM') report.lostAfterSigterm += lost;
      else report.lostAfterSigkill += lost;
      report.maxLossWindowMs = Math.max(report.maxLossWindowMs, window);
      if (!consistent) report.inconsistentRounds++;
      log(`round ${round} ${signal}${signal === 'SIGKILL' && options.loss && options.loss !== 'process' ? ` + ${options.loss} loss` : ''} after ${Math.round(runMs)} ms: ${ackedThisRound} cells acknowledged, ${lost} lost${lost ? ` (oldest ${window} ms before the stop)` : ''}, ${consistent ? 'consistent' : 'INCONSISTENT'}`);
    }
  } finally {
    agent.destroy();
    server.child.kill('SIGTERM');
    await server.exited;
  }
  return report;
}

function command(index: number, value: number) {
  return { action: 1, index, category: value & 255, rotation: (value >>> 8) & 255, sideA: (value >>> 16) & 255, sideB: value >>> 24 };
}

/** A power loss: every log segment loses what its last fdatasync did not cover (the server's sync marks say how much). */
async function dropUnsynced(walDir: string): Promise<void> {
  for (const name of await readdir(walDir)) {
    if (!name.endsWith('.wal')) continue;
    const mark = await readFile(join(walDir, `${name}.synced`), 'utf8').catch(() => undefined);
    if (mark === undefined) await unlink(join(walDir, name));
    else await truncate(join(walDir, name), Number(mark));
  }
}

/** Every cell's 4 bytes as one little-endian 32-bit value (category is the low byte), read with GET /cells. */
async function readWorld(url: string, cells: number, agent: Agent): Promise<Uint32Array> {
  const bytes = await new Promise<Buffer>((resolve, reject) => {
    const req = request(new URL('/cells', url), { agent, headers: { Authorization: authHeader } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`GET /cells answered ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  if (bytes.length !== cells * 4) throw new Error(`GET /cells gave ${bytes.length} bytes, expected ${cells * 4}`);
  return new Uint32Array(new Uint8Array(bytes).buffer);
}

function send(url: string, method: string, path: string, body: string | Buffer, agent: Agent): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, url), {
      method, agent, headers: { Authorization: authHeader, 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { text += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
