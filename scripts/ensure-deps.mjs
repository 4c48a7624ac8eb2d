// Installs the locked dependencies when node_modules is missing or older than the lockfile,
// so that `npm start` and `npm test` work as the first command on a fresh clone.
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';

function mtime(path) {
  try { return statSync(path).mtimeMs; } catch { return undefined; }
}

const installed = mtime('node_modules/.package-lock.json');
const locked = mtime('package-lock.json');
if (installed === undefined || (locked !== undefined && locked > installed)) {
  const command = locked === undefined ? 'install' : 'ci';
  console.error(`cubecache: installing dependencies (npm ${command})`);
  const result = spawnSync('npm', [command, '--no-audit', '--no-fund'], { stdio: 'inherit' });
  process.exit(result.status ?? 1);
}
