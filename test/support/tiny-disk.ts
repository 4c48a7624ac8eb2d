/**
 * A small disk of a test's own: a tmpfs of `bytes` (and at most `inodes` files), mounted inside a mount
 * namespace of its own (`unshare -m`), so the machine's mounts are untouched and it goes when the test ends.
 * This process reaches it through /proc/<pid>/root of the namespace's one process. Filling it gives a real
 * ENOSPC. Needs root (CI runs as root).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, open, readdir, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export interface TinyDisk {
  /** The mounted folder, as this process sees it. */
  dir: string;
  /** Fills the disk (files `fill-*`, a page at a time) until it is full, leaving `spare` bytes free; returns the files made. */
  fill(spare?: number): Promise<number>;
  /** Takes every free inode (empty files `fill-*`): no new file can be made. */
  fillInodes(): Promise<void>;
  /** Frees what fill() took: the disk takes writes again. */
  free(): Promise<void>;
}

/** Mounts a tiny disk for test `t`; false (and the test skipped) when this process is not root. */
export async function openTinyDisk(t: TestContext, options: { bytes: number; inodes?: number }): Promise<TinyDisk | false> {
  if (process.getuid?.() !== 0) {
    t.skip('needs root to mount a tmpfs (CI runs as root)');
    return false;
  }
  const mountPoint = await mkdtemp(join(tmpdir(), 'cubecache-disk-'));
  const mountOptions = `size=${options.bytes}${options.inodes ? `,nr_inodes=${options.inodes}` : ''}`;
  const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o ${mountOptions} cubecache-test "$0" && echo ready && exec sleep infinity`, mountPoint], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  t.after(async () => {
    child.kill('SIGKILL');
    await exited;
    await rm(mountPoint, { recursive: true, force: true });
  });
  const [line] = await Promise.race([once(child.stdout!, 'data'), exited.then(([code]) => { throw new Error(`unshare exited with ${code}`); })]);
  if (!String(line).includes('ready')) throw new Error(`unshare said ${String(line)}`);
  const dir = `/proc/${child.pid}/root${mountPoint}`;
  let files = 0;
  return {
    dir,
    async fill(spare = 0) {
      const page = Buffer.alloc(4096);
      for (;;) {
        const file = await open(join(dir, `fill-${files++}`), 'w').catch((err: unknown) => err as Error);
        if (file instanceof Error) {
          files--;
          if ((file as { code?: string }).code === 'ENOSPC') break;
          throw file;
        }
        let full = false;
        try {
          for (let i = 0; i < 256 && !full; i++) {
            await file.write(page).catch((err: unknown) => {
              if ((err as { code?: string }).code !== 'ENOSPC') throw err;
              full = true;
            });
          }
        } finally {
          await file.close();
        }
        if (full) break;
      }
      if (spare > 0) {
        // Give back `spare` bytes from the last filler (a tmpfs frees whole pages).
        const last = join(dir, `fill-${files - 1}`);
        const file = await open(last, 'r+');
        const { size } = await file.stat();
        await file.truncate(Math.max(0, size - spare));
        await file.close();
      }
      return files;
    },
    async fillInodes() {
      for (;;) {
        const file = await open(join(dir, `fill-${files}`), 'wx').catch((err: unknown) => err as Error);
        if (file instanceof Error) {
          if ((file as { code?: string }).code === 'ENOSPC') return;
          throw file;
        }
        files++;
        await file.close();
      }
    },
    async free() {
      for (const name of await readdir(dir)) if (name.startsWith('fill-')) await unlink(join(dir, name));
      files = 0;
    },
  };
}
