/** GET /healthcheck, /stats and /metrics: what the server and its backups are doing. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Backups } from '../backup/backups.js';
import { sendJson } from '../http.js';
import type { Sample } from '../metrics.js';
import { REPLICATION_STATES } from '../role.js';
import { requireAuth, type Ctx } from './context.js';
import { NO_PARAMETERS, queryOf } from './query.js';


/** GET /stats: cells in use, cells per category, the world's shape and order (null when flat), bytes written since the last backup. */
export async function stats(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  queryOf(req, NO_PARAMETERS);
  const categories: Record<string, number> = {};
  ctx.cube.categories.forEach((count, category) => {
    if (count > 0) categories[category] = count;
  });
  const backup = ctx.backups.status();
  sendJson(res, 200, {
    status: 200,
    cells: ctx.cube.cells,
    shape: ctx.shape ? { x: ctx.shape.x, y: ctx.shape.y, z: ctx.shape.z } : null,
    order: ctx.shape?.order ?? null,
    cellsInUse: ctx.cube.cellsInUse,
    categories,
    bytesWrittenSinceBackup: backup.bytesWrittenSinceBackup,
    unsavedChanges: backup.unsavedChanges,
  });
}

/** GET /metrics: Prometheus text format. */
export async function metrics(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  queryOf(req, NO_PARAMETERS);
  const b = ctx.backups.status();
  const replication = ctx.role.status();
  const time = (iso: string | null | undefined) => (iso ? Date.parse(iso) / 1000 : 0);
  const extra: Sample[] = [
    { name: 'cubecache_cells', help: 'Cells in the world.', type: 'gauge', value: ctx.cube.cells },
    { name: 'cubecache_cells_in_use', help: 'Cells with any non-zero byte.', type: 'gauge', value: ctx.cube.cellsInUse },
    { name: 'cubecache_unsaved_changes', help: '1 when the world holds writes no committed backup has.', type: 'gauge', value: b.unsavedChanges ? 1 : 0 },
    { name: 'cubecache_unsaved_bytes', help: 'Bytes written since the newest committed backup.', type: 'gauge', value: b.bytesWrittenSinceBackup },
    { name: 'cubecache_unsaved_since_timestamp_seconds', help: 'When the oldest unsaved write was made (0: none).', type: 'gauge', value: time(b.unsavedSince) },
    { name: 'cubecache_backups_total', help: 'Backups committed by this process.', type: 'counter', value: b.backupsTotal },
    { name: 'cubecache_backup_failures_total', help: 'Backups that failed.', type: 'counter', value: b.failuresTotal },
    { name: 'cubecache_backup_consecutive_failures', help: 'Failures since the last success.', type: 'gauge', value: b.consecutiveFailures },
    { name: 'cubecache_backup_last_success_timestamp_seconds', help: 'When the last backup was committed (0: none yet).', type: 'gauge', value: time(b.lastSuccessAt) },
    { name: 'cubecache_backup_last_duration_seconds', help: 'Duration of the last backup.', type: 'gauge', value: (b.lastBackup?.durationMs ?? 0) / 1000 },
    { name: 'cubecache_backup_last_bytes', help: 'Size of the last backup, compressed.', type: 'gauge', value: b.lastBackup?.compressedBytes ?? 0 },
    { name: 'cubecache_backup_fenced', help: '1 when another server took over the prefix and backups stopped.', type: 'gauge', value: b.fenced ? 1 : 0 },
    { name: 'cubecache_uptime_seconds', help: 'Seconds since start.', type: 'gauge', value: (ctx.now() - ctx.startedAt) / 1000 },
    { name: 'cubecache_role_leader', help: '1 when this server leads (takes writes), 0 when it is a standby.', type: 'gauge', value: ctx.role.kind === 'leader' ? 1 : 0 },
    { name: 'cubecache_replication_lag_ms', help: 'Leader: how far the standby\'s acknowledgements lag; standby: how far it is behind the leader\'s stream (0: none).', type: 'gauge', value: replication.lagMs ?? 0 },
    { name: 'cubecache_replication_lag_changes', help: 'The same lag in changes (log positions).', type: 'gauge', value: replication.lagLsn ?? 0 },
    ...REPLICATION_STATES.map((state, i): Sample => ({
      name: 'cubecache_replication_state', help: i === 0 ? 'Replication\'s state: 1 for the current one.' : '', type: 'gauge', value: replication.state === state ? 1 : 0, labels: { state },
    })),
  ];
  const text = ctx.metrics.render(extra);
  res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  res.end(text);
}
/**
 * GET /healthcheck: 200 while the server can serve, with its role; `?backup=1` also answers 503 when unsaved
 * changes have waited over three intervals. The leader's address and replication go only to a caller with the
 * credentials (the URL is public through a load balancer); anyone else still gets a 200, never a 401.
 */
export async function healthcheck(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  const strict = queryOf(req, ['backup']).get('backup');
  const backup = ctx.backups.status();
  let status = 200;
  let problem: string | undefined;
  if (strict === '1' || strict === 'true') {
    problem = backupProblem(backup, ctx.backups.saveDeadlineMs, ctx.now());
    if (problem) status = 503;
  }
  sendJson(res, status, {
    status,
    ...(problem ? { error: problem } : {}),
    cells: ctx.cube.cells,
    bytes: ctx.cube.bytes.byteLength,
    uptimeSeconds: Math.round((ctx.now() - ctx.startedAt) / 1000),
    backup,
    role: ctx.role.kind,
    ...(authenticated(req, ctx) ? { replication: ctx.role.status() } : {}),
  });
}

/**
 * True when the request carries the right credentials, refusing nothing. A wrong password still counts in the
 * login throttle and a throttled address is never told, or the health URL would test passwords without limit.
 */
function authenticated(req: IncomingMessage, ctx: Ctx): boolean {
  if (req.headers.authorization === undefined) return false;
  try {
    requireAuth(req, ctx);
    return true;
  } catch {
    return false;
  }
}


/** Why the strict health check fails, or undefined: unsaved changes older than three cadences, the log failing, or fenced. */
function backupProblem(backup: ReturnType<Backups['status']>, limitMs: number, now: number): string | undefined {
  if (backup.fenced) return 'backups stopped: another server took over this prefix';
  if (backup.log.failure) return `the write-ahead log cannot be written: ${backup.log.failure}`;
  if (!backup.unsavedChanges || limitMs <= 0 || backup.unsavedSince === null) return undefined;
  const waitedMs = now - Date.parse(backup.unsavedSince);
  if (waitedMs <= limitMs) return undefined;
  return `unsaved changes for ${Math.round(waitedMs / 100) / 10} s (limit ${Math.round(limitMs / 100) / 10} s); last backup error: ${backup.lastShipError?.error ?? backup.lastError?.error ?? 'none'}`;
}
