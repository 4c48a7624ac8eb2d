/** POST /s3dump, GET /backups and POST /restore: snapshots now, the kept ones, and putting the world back. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FencedError } from '../backup/backups.js';
import { HttpError, readBody, readJson, sendJson, upstream } from '../http.js';
import { parseInstant } from '../values.js';
import { requireAuth, type Ctx } from './context.js';
import { NO_PARAMETERS, operator, queryOf } from './query.js';
import { bodyRanges, RESTORE_BODY_LIMIT } from './region.js';

/** Bodies of the other JSON routes: a name or nothing. */
const SMALL_BODY_LIMIT = 4096;

/**
 * POST /s3dump: back up the world now; answers once the backup is committed. With `?async=1` it answers 202
 * at once, the backup started (or joined, if one is running), its outcome to be read from /healthcheck:
 * for callers with a few seconds to live (a PlayFab scheduled task) while a large backup can take longer.
 */
export async function s3dump(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const mode = queryOf(req, ['async']).get('async');
  await readBody(req, SMALL_BODY_LIMIT); // the seed's clients send {}; its content does not matter
  if (mode === '1' || mode === 'true') {
    const before = ctx.backups.status();
    if (before.fenced) throw new FencedError('backups stopped: another server took over this prefix');
    const requestedAt = new Date(ctx.now()).toISOString();
    // The outcome is logged by the backups (backup_failed) and shown in /healthcheck; nobody awaits it here.
    ctx.backups.backup('request').catch(() => undefined);
    sendJson(res, 202, { status: 202, backup: before.inProgress ? 'joined' : 'started', requestedAt, outcome: '/healthcheck' });
    return;
  }
  const backup = await upstream(ctx.backups.backup('request'));
  sendJson(res, 200, { status: 200, backup });
}

/** GET /backups: the kept backups, newest first. */
export async function listBackups(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  queryOf(req, NO_PARAMETERS);
  sendJson(res, 200, { status: 200, backups: await upstream(ctx.backups.list()), history: ctx.backups.history() ?? null });
}

/**
 * POST /restore: `{"name"}` loads a kept backup into the running world and makes it the newest;
 * `{"at", "start"?, "count"?, "ranges"?, "box"?}` puts the whole world, or only those cells, back as they were at
 * that instant, as one change by the operator (`by` in the query, else the authenticated user).
 */
export async function restore(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const query = queryOf(req, ['by']);
  const body = await readJson(req, RESTORE_BODY_LIMIT);
  const fields = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  if (fields.at !== undefined) {
    const at = typeof fields.at === 'string' ? parseInstant(fields.at) : undefined;
    if (at === undefined) throw new HttpError(400, 'at must be an ISO 8601 instant, e.g. "2026-12-01T14:03:00Z"');
    const ranges = bodyRanges(fields, ctx);
    const cells = await upstream(ctx.backups.restoreAt(at, ranges, operator(req, query)));
    sendJson(res, 200, { status: 200, restored: { at: new Date(at).toISOString(), cells, ranges: ranges?.length ?? 1 } });
    return;
  }
  const name = fields.name;
  if (typeof name !== 'string' || name === '') throw new HttpError(400, 'body must be {"name": "<backup name>"} (see GET /backups) or {"at": "<instant>"} with "start" and "count", "ranges" or "box" for part of the world');
  sendJson(res, 200, { status: 200, restored: await upstream(ctx.backups.restoreBackup(name, operator(req, query))) });
}
