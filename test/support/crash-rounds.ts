/**
 * Crash rounds: run the real server process under a stream of random writes with frequent backups, stop it
 * (SIGKILL at a random moment, or SIGTERM), restart it, and check what survived against what was acknowledged.
 * Used by test/crash.test.ts (a few rounds) and scripts/crash-rounds.ts (as many as you like).
 */
import { Agent, request } from 'node:http';
import { gunzipSync } from 'node:zlib';
import type { BlobStore } from '../../lib/store.js';
import { startServerProcess, type Owner, type ServerProcess } from './process.js';

export interface CrashRoundsOptions {
  rounds: number;
  /** How each round stops the server; 'mixed' alternates. */
  signal: 'SIGKILL' | 'SIGTERM' | 'mixed';
  cells: number;
  intervalSeconds: number;
  /** The server's store settings (DATA_DIR, or S3_* and AWS_*), and the same store opened here to read commits. */
  env: Record<string, string>;
  store: BlobStore;
  prefix: string;
  owner: Owner;
  /** Writers in parallel; each owns the cells i with i % writers == its number, so each cell's values only grow. */
  writers?: number;
  /** Random run time of a round before the stop, in ms. */
  runMs?: [number, number];
  log?: (line: string) => void;
}

export interface CrashRoundsReport {
  rounds: number;
  writesSent: number;
  writesAcknowledged: number;
  /** Acknowledged writes missing after the restart although they were acknowledged before the restored backup's snapshot. Must be 0. */
  lostBeforeSnapshot: number;
  /** Acknowledged writes missing after a SIGTERM. Must be 0. */
  lostAfterSigterm: number;
  /** Acknowledged writes missing after a SIGKILL, all acknowledged after the restored snapshot (the loss window). */
  lostAfterSigkill: number;
  /** The oldest such write: how long before the kill it was acknowledged. */
  maxLossWindowMs: number;
  /** Rounds whose restored world differed from the newest committed backup, or held a value never written. Must be 0. */
  inconsistentRounds: number;
}

const AUTH = { user: 'crash', password: 'crash-rounds-password' };

/** Runs the rounds and returns the figures; throws only when the harness itself fails. */
export async function runCrashRounds(options: CrashRoundsOptions): Promise<CrashRoundsReport> {
  const { cells, store, prefix } = options;
  const writers = options.writers ?? 4;
  const [minRun, maxRun] = options.runMs ?? [300, 1200];
  const log = options.log ?? (() => {});
  const env = { ...options.env, CUBE_CELLS: String(cells), BACKUP_INTERVAL_SECONDS: String(options.intervalSeconds), AUTH_USER: AUTH.user, AUTH_PASSWORD: AUTH.password, S3_PREFIX: prefix };
  const report: CrashRoundsReport = { rounds: 0, writesSent: 0, writesAcknowledged: 0, lostBeforeSnapshot: 0, lostAfterSigterm: 0, lostAfterSigkill: 0, maxLossWindowMs: 0, inconsistentRounds: 0 };
  const newAgent = () => new Agent({ keepAlive: true, maxSockets: writers + 1 });
  let agent = newAgent();
  const sent = new Map<number, Set<number>>(); // cell → every value ever sent to it
  let counter = 0;

  let server: ServerProcess & { url: string } = await startServerProcess(options.owner, env);
  try {
    for (let round = 1; round <= options.rounds; round++) {
      const signal = options.signal === 'mixed' ? (round % 2 ? 'SIGKILL' : 'SIGTERM') : options.signal;
      const acked: Array<{ cell: number; value: number; at: number }> = [];
      let running = true;
      const loops = Array.from({ length: writers }, async (_, w) => {
        while (running) {
          const cell = w + writers * Math.floor(Math.random() * Math.ceil((cells - w) / writers));
          if (cell >= cells) continue;
          const value = ++counter;
          let cellValues = sent.get(cell);
          if (!cellValues) sent.set(cell, (cellValues = new Set()));
          cellValues.add(value);
          report.writesSent++;
          try {
            const body = { action: 1, index: cell, category: value & 255, rotation: (value >>> 8) & 255, sideA: (value >>> 16) & 255, sideB: value >>> 24 };
            const answer = await post(server.url, '/request', body, agent);
            if (answer.status !== 200) throw new Error(`write answered ${answer.status}`);
            acked.push({ cell, value, at: Date.now() });
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

      server = await startServerProcess(options.owner, env);
      const world = await readWorld(server.url, cells, agent);
      const newest = await newestCommit(store, prefix);
      const snapshotAt = newest ? Date.parse(newest.createdAt) : 0;
      let consistent = newest ? Buffer.from(newest.cells.buffer).equals(Buffer.from(world.buffer)) : world.every((v) => v === 0);
      for (let cell = 0; cell < cells; cell++) {
        if (world[cell] !== 0 && !sent.get(cell)?.has(world[cell]!)) consistent = false;
      }
      let lostBefore = 0;
      let lost = 0;
      let window = 0;
      for (const write of acked) {
        if (world[write.cell]! >= write.value) continue; // this write, or a later one to the same cell, survived
        if (write.at < snapshotAt) lostBefore++;
        else {
          lost++;
          window = Math.max(window, stoppedAt - write.at);
        }
      }
      report.rounds++;
      report.writesAcknowledged += acked.length;
      report.lostBeforeSnapshot += lostBefore;
      if (signal === 'SIGTERM') report.lostAfterSigterm += lost;
      else {
        report.lostAfterSigkill += lost;
        report.maxLossWindowMs = Math.max(report.maxLossWindowMs, window);
      }
      if (!consistent) report.inconsistentRounds++;
      log(`round ${round} ${signal} after ${Math.round(runMs)} ms: ${acked.length} acknowledged, ${lost} lost (oldest ${window} ms before the stop), ${lostBefore} lost from before the snapshot, ${consistent ? 'consistent' : 'INCONSISTENT'}`);
    }
  } finally {
    agent.destroy();
    server.child.kill('SIGTERM');
    await server.exited;
  }
  return report;
}

/** Every cell's 4 bytes as one little-endian 32-bit value (category is the low byte), read with GET /cells. */
async function readWorld(url: string, cells: number, agent: Agent): Promise<Uint32Array> {
  const bytes = await new Promise<Buffer>((resolve, reject) => {
    const req = request(new URL('/cells', url), {
      agent, headers: { Authorization: `Basic ${Buffer.from(`${AUTH.user}:${AUTH.password}`).toString('base64')}` },
    }, (res) => {
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

/** The newest commit's snapshot time and cells (as 32-bit values), read straight from the store. */
async function newestCommit(store: BlobStore, prefix: string): Promise<{ createdAt: string; cells: Uint32Array } | undefined> {
  const commits = await store.list(`${prefix}commits/`);
  const key = commits.at(-1);
  if (!key) return undefined;
  const manifest = JSON.parse(new TextDecoder().decode(await store.get(key))) as { key: string; createdAt: string };
  const raw = gunzipSync((await store.get(manifest.key))!);
  return { createdAt: manifest.createdAt, cells: new Uint32Array(new Uint8Array(raw).buffer) };
}

function post(url: string, path: string, body: unknown, agent: Agent): Promise<{ status: number; text: string }> {
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, url), {
      method: 'POST', agent,
      headers: { Authorization: `Basic ${Buffer.from(`${AUTH.user}:${AUTH.password}`).toString('base64')}`, 'Content-Length': Buffer.byteLength(data) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { text += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}
