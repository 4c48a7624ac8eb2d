/** Runs every shell block of the README that talks to a server ($CUBE), in order, against a real one. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { AUTH, openFileStore, startServer } from './support/app.js';

const run = promisify(execFile);
const BACKUP_NAME = /\d{8}T\d{9}Z-[0-9a-f]{8}/g;
/** The example instants of the time-travel recipes. */
const INSTANT = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z/g;

/** The README's ```sh blocks that use $CUBE, minus the line that sets it (the test sets it). */
async function recipes(): Promise<Array<{ heading: string; script: string }>> {
  const readme = await readFile('README.md', 'utf8');
  const out: Array<{ heading: string; script: string }> = [];
  let heading = '';
  const lines = readme.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.startsWith('#')) heading = lines[i]!.replace(/^#+\s*/, '');
    if (lines[i] !== '```sh') continue;
    const body: string[] = [];
    for (i++; lines[i] !== '```'; i++) body.push(lines[i]!);
    const script = body.filter((line) => !line.startsWith('export CUBE=')).join('\n');
    if (script.includes('$CUBE')) out.push({ heading, script });
  }
  return out;
}

test('every curl recipe in the README works against a real server', async (t) => {
  const which = await run('sh', ['-c', 'command -v curl']).catch(() => undefined);
  assert.ok(which, 'curl is needed for this test (apt-get install curl)');
  // A world with a shape, so the box, map and console recipes run too: 16 high for the box recipes, 64 across
  // for the console's, which builds a world to look at.
  const s = await startServer(t, await openFileStore(t), { cells: 64 * 16 * 64, shape: { x: 64, y: 16, z: 64, order: 'xzy' } });
  const cwd = await mkdtemp(join(tmpdir(), 'cubecache-readme-'));
  t.after(() => rm(cwd, { recursive: true, force: true }));
  const env = { ...process.env, CUBE: s.url, AUTH: `${AUTH.user}:${AUTH.password}` };
  const found = await recipes();
  assert.ok(found.length >= 12, `only ${found.length} recipes found`);
  const headings = new Set(found.map((r) => r.heading));
  for (const task of ['Check health', 'Back up now', 'List backups', 'Restore one', 'Look at the past, and put a region back', 'Who changed this block, and what did this player do', 'Roll back a griefer in a region', 'Export the world', 'Import a world', 'Read statistics and metrics']) {
    assert.ok(headings.has(task), `no recipe for "${task}"`);
  }
  for (const { heading, script } of found) {
    // A restore needs a backup that exists: the newest one stands in for the example's name.
    const names = (await s.call('/backups', { auth: AUTH })).json.backups;
    // An instant stands for one inside the span the server keeps: now (the recipes before made a snapshot).
    const concrete = (names.length > 0 ? script.replace(BACKUP_NAME, names[0].name) : script).replace(INSTANT, new Date().toISOString());
    const result = await run('bash', ['-euo', 'pipefail', '-c', concrete], { cwd, env }).catch((err: { code: number; stderr: string }) => err);
    assert.ok(!('code' in result) || result.code === undefined || result.code === 0, `recipe under "${heading}" failed:\n${concrete}\n${'stderr' in result ? result.stderr : ''}`);
    t.diagnostic(`ok: ${heading}: ${concrete.split('\n')[0]}`);
  }
  assert.ok((await s.call('/backups', { auth: AUTH })).json.backups.length >= 1, 'the recipes made a backup');
});
