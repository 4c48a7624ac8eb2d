/** One function per route. Handlers get everything through ctx; they never read the environment or exit. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FencedError, UnknownBackupError, type Backups } from './backup.js';
import type { Cube } from './cube.js';
import { HttpError, readBody, readJson, sendJson } from './http.js';
import { encodeAnswer, parseCellCommand } from './protocol.js';

/** What handlers work with; built once per app. */
export interface Ctx {
  cube: Cube;
  backups: Backups;
  /** True when the Authorization header carries the configured credentials. */
  checkAuth: (header: string | undefined) => boolean;
  startedAt: number;
  now: () => number;
}

/** Bodies of /request: one command is under 200 bytes; a few KiB leaves room for whitespace and unknown fields. */
export const REQUEST_BODY_LIMIT = 4096;
/** Bodies of the other JSON routes: a name or nothing. */
const SMALL_BODY_LIMIT = 4096;

/** 401 unless the request carries the configured Basic credentials. */
export function requireAuth(req: IncomingMessage, ctx: Ctx): void {
  if (!ctx.checkAuth(req.headers.authorization)) {
    throw new HttpError(401, 'authentication required', { 'WWW-Authenticate': 'Basic realm="cubecache", charset="UTF-8"' });
  }
}

/** POST /request: read or write one cell (the seed's protocol). */
export async function request(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const body = (await readBody(req, REQUEST_BODY_LIMIT)).toString('utf8');
  const cmd = parseCellCommand(body, ctx.cube.cells);
  if (cmd.write) {
    ctx.cube.write(cmd.index, cmd.cell);
    ctx.backups.markDirty();
  }
  sendJson(res, 200, encodeAnswer(ctx.cube.read(cmd.index)));
}

/** POST /s3dump: back up the world now; answers once the backup is committed. */
export async function s3dump(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  await readBody(req, SMALL_BODY_LIMIT); // the seed's clients send {}; its content does not matter
  try {
    const backup = await ctx.backups.backup('request');
    sendJson(res, 200, { status: 200, backup });
  } catch (err) {
    throw backupHttpError(err);
  }
}

/** GET /healthcheck: 200 while the server can serve; `?backup=1` also answers 503 when unsaved changes have waited over three intervals. */
export async function healthcheck(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  const backup = ctx.backups.status();
  const strict = new URL(req.url ?? '/', 'http://x').searchParams.get('backup');
  let status = 200;
  let problem: string | undefined;
  if (strict === '1' || strict === 'true') {
    problem = backupProblem(backup, ctx.now());
    if (problem) status = 503;
  }
  sendJson(res, status, {
    status,
    ...(problem ? { error: problem } : {}),
    cells: ctx.cube.cells,
    bytes: ctx.cube.bytes.byteLength,
    uptimeSeconds: Math.round((ctx.now() - ctx.startedAt) / 1000),
    backup,
  });
}

/** GET /backups: the kept backups, newest first. */
export async function listBackups(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  try {
    sendJson(res, 200, { status: 200, backups: await ctx.backups.list() });
  } catch (err) {
    throw backupHttpError(err);
  }
}

/** POST /restore {"name": "..."}: loads a kept backup into the running world and makes it the newest. */
export async function restore(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const body = await readJson(req, SMALL_BODY_LIMIT);
  const name = typeof body === 'object' && body !== null ? (body as { name?: unknown }).name : undefined;
  if (typeof name !== 'string' || name === '') throw new HttpError(400, 'body must be {"name": "<backup name>"} (see GET /backups)');
  try {
    sendJson(res, 200, { status: 200, restored: await ctx.backups.restoreBackup(name) });
  } catch (err) {
    if (err instanceof UnknownBackupError) throw new HttpError(404, err.message);
    throw backupHttpError(err);
  }
}

/** Why the strict health check fails, or undefined: unsaved changes older than three intervals, or fenced. */
function backupProblem(backup: ReturnType<Backups['status']>, now: number): string | undefined {
  if (backup.fenced) return 'backups stopped: another server took over this prefix';
  if (!backup.unsavedChanges || backup.intervalSeconds <= 0 || backup.unsavedSince === null) return undefined;
  const limitMs = 3 * backup.intervalSeconds * 1000;
  const waitedMs = now - Date.parse(backup.unsavedSince);
  if (waitedMs <= limitMs) return undefined;
  return `unsaved changes for ${Math.round(waitedMs / 1000)} s (limit ${limitMs / 1000} s); last backup error: ${backup.lastError?.error ?? 'none'}`;
}

/** Maps a backup failure to its answer: fenced is a conflict, anything else a failure of the store behind us. */
function backupHttpError(err: unknown): unknown {
  if (err instanceof HttpError) return err;
  if (err instanceof FencedError) return new HttpError(409, err.message);
  const name = err instanceof Error ? err.name : 'error';
  return new HttpError(502, `backup store failed (${name}); the server keeps serving and retries, see its log`);
}
