/** The README holds true: every shell block that talks to a server ($CUBE) works against a real one, and the configuration table is what loadConfig reads. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { loadConfig } from '../lib/config.js';
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

/** The rows of the README's configuration table: variable name → its default column, as written. */
async function configurationTable(): Promise<Map<string, string>> {
  const readme = await readFile('README.md', 'utf8');
  const section = readme.split('\n## Configuration\n')[1]?.split('\n## ')[0];
  assert.ok(section, 'the README has a "## Configuration" section');
  const rows = new Map<string, string>();
  for (const line of section.split('\n')) {
    const row = /^\| `([A-Z0-9_]+)` \| (.*?) \| .* \|$/.exec(line);
    if (!row) continue;
    assert.ok(!rows.has(row[1]!), `${row[1]} has one row, not two`);
    rows.set(row[1]!, row[2]!);
  }
  return rows;
}

/** Every variable name loadConfig reads, whichever way the values it is given send it. */
function variablesRead(): Set<string> {
  const read = new Set<string>();
  for (const base of [{}, { S3_BUCKET: 'b' }, { AUTH_PASSWORD: 'p', AUTH_PASSWORD_PREVIOUS: 'q' }, { WAL_DIR: '' }, { TRUST_PROXY: '2' }]) {
    const env = new Proxy<Record<string, string | undefined>>(base, {
      get: (target, key) => {
        if (typeof key === 'string') read.add(key);
        return target[key as string];
      },
      has: (target, key) => {
        if (typeof key === 'string') read.add(key);
        return key in target;
      },
    });
    loadConfig(env, () => 'generated');
  }
  return read;
}

test('the configuration table names every variable loadConfig reads, and only those', async () => {
  const table = await configurationTable();
  const read = variablesRead();
  assert.ok(read.size >= 20, `loadConfig read only ${read.size} variables: the probe is broken`);
  assert.deepEqual([...read].filter((name) => !table.has(name)).sort(), [], 'variables loadConfig reads that the README does not list');
  assert.deepEqual([...table.keys()].filter((name) => !read.has(name)).sort(), [], 'variables the README lists that loadConfig never reads');
});

test('every default the configuration table writes in backticks is loadConfig\'s default; the others are words', async () => {
  const random = () => 'generated';
  const defaults = loadConfig({}, random);
  let literals = 0;
  for (const [name, written] of await configurationTable()) {
    const literal = /^`([^`]*)`$/.exec(written);
    if (literal) {
      // Setting the variable to the value the README calls its default must change nothing.
      assert.deepEqual(loadConfig({ [name]: literal[1] }, random), defaults, `README: ${name} defaults to ${written}, but loadConfig's default differs`);
      literals++;
    } else {
      // A derived or absent default (random, unset, a folder inside DATA_DIR) is described in words, not as a value.
      assert.match(written.replace(/`[^`]*`/g, ''), /[a-z]{3,}/, `README: ${name}'s default ${JSON.stringify(written)} is neither one value in backticks nor words`);
    }
  }
  assert.ok(literals >= 15, `only ${literals} defaults checked`);
});

test('no file in the repository holds merge-conflict markers', async () => {
  const { stdout } = await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { maxBuffer: 64 * 1024 * 1024 });
  const files = stdout.split('\0').filter((file) => file !== '');
  assert.ok(files.includes('README.md') && files.length > 50, `git listed ${files.length} files`);
  const marker = new RegExp(`^(?:${'<'.repeat(7)}|${'>'.repeat(7)})(?: |$)|^${'='.repeat(7)}$`, 'm');
  const marked: string[] = [];
  for (const file of files) {
    const bytes = await readFile(file).catch(() => undefined); // a file deleted but not yet staged
    if (bytes === undefined || bytes.includes(0)) continue; // binary
    if (marker.test(bytes.toString('utf8'))) marked.push(file);
  }
  assert.deepEqual(marked, [], 'files with conflict markers');
});
