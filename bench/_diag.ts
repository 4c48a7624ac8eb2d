import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ensureBuilt, http, main, MiB, runWrk, s3dump, sleep, startCubecache, startS3, wrkScript } from './support.js';
await main('diag', async () => {
  ensureBuilt();
  const env = { ...(await startS3()).env, CUBE_CELLS: String(64 * 262144) };
  const prefix = 'diag/';
  {
    const server = await startCubecache('seed', { env: { ...env, S3_PREFIX: prefix, WAL_DIR: '' } });
    for (let at = 0; at < 64 * MiB; at += 16 * MiB) {
      const a = await http(`${server.url}/cells?start=${at / 4}`, { method: 'PUT', body: randomBytes(16 * MiB), headers: { 'Content-Type': 'application/octet-stream' } });
      if (a.status !== 200) throw new Error(String(a.status));
    }
    await s3dump(server); await server.stop();
  }
  for (let round = 0; round < Number(process.env.ROUNDS ?? 3); round++) {
    const server = await startCubecache('d', { env: { ...env, S3_PREFIX: prefix }, nodeArgs: ['--import', '/tmp/diag/abprobe.mjs', ...(process.env.EXTRA ? process.env.EXTRA.split(' ') : [])] });
    await sleep(3000);
    const log = `/tmp/diag/ab-${server.pid}.log`;
    const before = readFileSync(log, 'utf8').trim().split('\n').length;
    const b = process.env.LOAD ? await (async () => { const t = performance.now(); await runWrk(`${server.url}/request`, wrkScript({ kind: 'request', mode: 'mix', cells: 64 * 262144 }), 5); return { durationMs: performance.now() - t }; })() : await s3dump(server);
    await sleep(200);
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    const idle = lines[before - 1]!;
    const during = lines.slice(before);
    const num = (l: string, k: string) => Number(l.split(' ')[l.split(' ').indexOf(k) + 1]);
    const maxOf = (k: string) => Math.max(...during.map((l) => num(l, k)));
    console.log(`round ${round}: backup ${b.durationMs} ms; idle: ${idle}; max rss ${maxOf('rss')} ab ${maxOf('ab')} heap ${maxOf('heap')}`);
    if (process.env.SHOW) console.log(during.filter((_, i) => i % 5 === 0).join('\n'));
    await server.stop();
  }
});
