/**
 * The peer a user could deploy instead of cubecache: Redis (AOF, appendfsync everysec) behind Webdis (HTTP,
 * Basic auth, only GETRANGE and SETRANGE allowed), holding the world as one string of cells x 4 bytes. Both
 * are Debian's packages (`apt-get install redis-server webdis`), started here on free loopback ports and
 * stopped at cleanup. See ../shared/notes/redis-webdis-peer.md for the set-up this follows.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { AUTH, http, onCleanup, sleep, workDir, WORLD_CELLS } from './support.js';

/** A running Redis + Webdis pair; `pids` are both processes (their CPU is the peer's). */
export interface RedisPeer { name: string; url: string; pids: number[]; stop(): Promise<void> }

/** True when both Debian packages are installed. */
export function redisPeerAvailable(): boolean {
  return existsSync('/usr/bin/redis-server') && existsSync('/usr/bin/webdis') && existsSync('/usr/bin/redis-cli');
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  server.close();
  await once(server, 'close');
  return port;
}

function run(file: string, args: string[], cwd: string): ChildProcess {
  const child = spawn(file, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => { output += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { output += c.toString(); });
  child.on('exit', (code) => { if (code !== 0 && code !== null) console.log(`!! ${file} exited ${code}: ${output.slice(-2000)}`); });
  onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await Promise.race([once(child, 'exit'), sleep(5000).then(() => child.kill('SIGKILL'))]);
    }
  });
  return child;
}

/** Polls `check` every 50 ms until it is true; throws after `ms`. */
async function until(what: string, check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await Promise.resolve().then(check).catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`redis peer: no ${what} within ${ms} ms`);
    await sleep(50);
  }
}

/** Starts Redis (AOF everysec) with a world-sized string and Webdis in front of it, Basic auth with the bench credentials. */
export async function startRedisPeer(cells = WORLD_CELLS): Promise<RedisPeer> {
  const dir = mkdtempSync(join(workDir(), 'redis-'));
  const redisPort = await freePort();
  const redis = run('/usr/bin/redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes',
    '--appendfsync', 'everysec', '--dir', dir, '--daemonize', 'no', '--protected-mode', 'yes'], dir);
  const cli = (...args: string[]) => spawnSync('/usr/bin/redis-cli', ['-h', '127.0.0.1', '-p', String(redisPort), ...args], { encoding: 'utf8' });
  await until('redis PONG', () => cli('PING').stdout.trim() === 'PONG');
  const size = cli('SETRANGE', 'world', String(cells * 4 - 1), 'x');
  if (size.stdout.trim() !== String(cells * 4)) throw new Error(`redis peer: SETRANGE answered ${size.stdout}${size.stderr}`);

  const httpPort = await freePort();
  const config = join(dir, 'webdis.json');
  writeFileSync(config, JSON.stringify({
    redis_host: '127.0.0.1', redis_port: redisPort, redis_auth: null, http_host: '127.0.0.1', http_port: httpPort,
    threads: 2, pool_size: 20, daemonize: false, database: 0,
    acl: [{ disabled: ['*'] }, { http_basic_auth: `${AUTH.user}:${AUTH.password}`, enabled: ['GETRANGE', 'SETRANGE'] }],
    verbosity: 1, logfile: '/dev/null',
  }));
  const webdis = run('/usr/bin/webdis', [config], dir);
  const url = `http://127.0.0.1:${httpPort}`;
  await until('webdis answer', async () => (await http(`${url}/GETRANGE/world/0/3`, { timeoutMs: 2000 })).status === 200);
  return {
    name: 'redis+webdis',
    url,
    pids: [redis.pid!, webdis.pid!],
    async stop() {
      for (const child of [webdis, redis]) {
        if (child.exitCode !== null || child.signalCode !== null) continue;
        child.kill('SIGTERM');
        await Promise.race([once(child, 'exit'), sleep(5000).then(() => child.kill('SIGKILL'))]);
      }
    },
  };
}
