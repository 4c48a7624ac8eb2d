/** Runs server.ts as a real process, as Elastic Beanstalk or `npm start` would, and reads its JSON log. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { own } from './owned.js';

export interface ServerProcess {
  child: ChildProcess;
  /** Every JSON log line so far. */
  events: Array<Record<string, unknown>>;
  /** Raw stdout and stderr so far. */
  output(): string;
  /** Resolves with the first log event named `event` (or rejects if the process exits first). */
  waitForEvent(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  url?: string;
}

/** Something that runs clean-ups at its end: a node:test TestContext, or a script's own list. */
export interface Owner { after(fn: () => unknown): void }

/** Spawns `node --import tsx server.ts` with exactly `env` (plus PATH); killed when `owner` ends if still running. */
export function spawnServer(t: Owner, env: Record<string, string>): ServerProcess {
  // Without DATA_DIR or WAL_DIR the log would go to ./data/wal of the checkout: give it a folder of its own.
  const ownWal = env.DATA_DIR === undefined && env.WAL_DIR === undefined ? mkdtempSync(join(tmpdir(), 'cubecache-wal-')) : undefined;
  const child = spawn(process.execPath, ['--import', 'tsx', 'server.ts'], {
    env: { PATH: process.env.PATH ?? '', NODE_V8_COVERAGE: process.env.NODE_V8_COVERAGE ?? '', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...(ownWal ? { WAL_DIR: join(ownWal, 'wal') } : {}), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const events: Array<Record<string, unknown>> = [];
  let raw = '';
  let pending = '';
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (chunk: Buffer) => {
    raw += chunk.toString();
    pending += chunk.toString();
    let newline;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      try { events.push(JSON.parse(line)); } catch { /* not a log line */ }
    }
    for (const wake of waiters) wake();
  });
  child.stderr!.on('data', (chunk: Buffer) => { raw += chunk.toString(); });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  exited.then(() => { for (const wake of waiters) wake(); });
  let done = false;
  exited.then(() => { done = true; });
  const stop = async () => {
    if (!done) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  // A folder the test made earlier is removed only once this process is gone (./owned.ts); its own log folder too.
  own(t, stop);
  t.after(async () => {
    await stop();
    if (ownWal) rmSync(ownWal, { recursive: true, force: true });
  });
  const proc: ServerProcess = {
    child, events, exited,
    output: () => raw,
    waitForEvent(event, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`no ${event} event within ${timeoutMs} ms; output:\n${raw}`)); }, timeoutMs);
        const check = () => {
          const found = events.find((e) => e.event === event);
          if (found) { clearTimeout(timer); waiters.delete(check); resolve(found); return; }
          if (done) { clearTimeout(timer); waiters.delete(check); reject(new Error(`exited before ${event}; output:\n${raw}`)); }
        };
        waiters.add(check);
        check();
      });
    },
  };
  return proc;
}

/** Spawns the server and waits until it listens; `url` is set. */
export async function startServerProcess(t: Owner, env: Record<string, string>): Promise<ServerProcess & { url: string }> {
  const proc = spawnServer(t, { HOST: '127.0.0.1', PORT: '0', ...env });
  const listening = await proc.waitForEvent('listening');
  return Object.assign(proc, { url: `http://127.0.0.1:${listening.port}` });
}
