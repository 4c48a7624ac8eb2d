/** POST /request: the seed's protocol, one command or a batch applied as one step, and reads of the past. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ChangeRequest } from '../backup/backups.js';
import type { Run } from '../backup/change.js';
import type { Cell } from '../cube.js';
import { collectBody, HttpError, sendJson, upstream, type BodyLimit } from '../http.js';
import { isJsonSpace } from '../json-scanner.js';
import { encodeAnswer, MAX_BATCH, opensBatch, parseRequest, type CellCommand, type RequestBody } from '../protocol.js';
import { requireAuth, type Ctx } from './context.js';
import { toLeader } from './leader.js';
import { refuseQuery } from './query.js';

/** Bodies of /request holding one command: it is under 200 bytes; a few KiB leaves room for whitespace and unknown fields. */
export const REQUEST_BODY_LIMIT = 4096;
/** Bodies of /request holding a batch: MAX_BATCH commands of up to 256 bytes each. */
export const BATCH_BODY_LIMIT = MAX_BATCH * 256;
/** /request's limit, picked on the body's first byte that is not whitespace: only a batch may pass 4 KiB. */
const REQUEST_LIMIT: BodyLimit = {
  bytes: BATCH_BODY_LIMIT,
  narrow(chunk) {
    for (let i = 0; i < chunk.length; i++) {
      if (!isJsonSpace(chunk[i]!)) return opensBatch(chunk[i]!) ? BATCH_BODY_LIMIT : REQUEST_BODY_LIMIT;
    }
    return undefined;
  },
};

/**
 * POST /request: read or write one cell (the seed's protocol), or a batch of commands applied as one step.
 * The hot path, so no promise: the body is collected by callbacks, and `done` gets the error to answer, if any.
 */
export function request(req: IncomingMessage, res: ServerResponse, ctx: Ctx, done: (err?: unknown) => void): void {
  try {
    requireAuth(req, ctx);
    refuseQuery(req);
  } catch (err) {
    done(err);
    return;
  }
  collectBody(req, REQUEST_LIMIT, (err, body) => {
    try {
      if (err) throw err;
      const parsed = parseRequest(body!, ctx.cube.cells);
      // Leading (the hot path) costs this one read; a server that does not lead answers reads itself and sends writes on.
      if (ctx.role.kind !== 'leader' && writes(parsed)) toLeader(req, res, ctx, () => answerRequest(parsed, res, ctx, done), done, body);
      else answerRequest(parsed, res, ctx, done);
    } catch (caught) {
      done(caught);
    }
  });
}

/** True when the request writes a cell. */
function writes(parsed: RequestBody): boolean {
  return parsed.batch ? parsed.commands.some((cmd) => cmd.write) : parsed.command.write;
}

/**
 * Applies a decoded /request body, logs its writes and sends the answer once the log has them (then calls
 * `done`); throws HttpError for the client's mistakes, before anything is written.
 */
function answerRequest(parsed: RequestBody, res: ServerResponse, ctx: Ctx, done: (err?: unknown) => void): void {
  if (!parsed.batch) {
    // One command (the common case) takes the same steps as a batch of one, without the batch's maps and arrays.
    const cmd = parsed.command;
    if (cmd.at !== undefined) answerPast([cmd], false, res, ctx).then(() => done(), done);
    else if (!cmd.write) answerRead(() => encodeAnswer(applyCommand(ctx, cmd)), res, ctx, done);
    else answerWrite(encodeAnswer(applyCommand(ctx, cmd)), { runs: [runOf(cmd)], by: cmd.by ?? '' }, res, ctx, done);
    return;
  }
  const commands = parsed.commands;
  if (commands.some((cmd) => cmd.at !== undefined)) {
    answerPast(commands, true, res, ctx).then(() => done(), done);
    return;
  }
  if (!commands.some((cmd) => cmd.write)) {
    answerRead(() => `[${applyCommands(ctx, commands, true).answers.map(encodeAnswer).join(',')}]`, res, ctx, done);
    return;
  }
  // A write's answer goes out once the log holds it, and so everything logged before it: the reads of the
  // batch then show only what the log holds too.
  const { answers, change } = applyCommands(ctx, commands, true);
  answerWrite(`[${answers.map(encodeAnswer).join(',')}]`, change!, res, ctx, done);
}

/**
 * Answers a read with `compute()`, run once no change waits for the log (at once when none does, the common
 * case: no promise): a value read earlier could be one that a failing log makes the write path undo.
 */
function answerRead(compute: () => string, res: ServerResponse, ctx: Ctx, done: (err?: unknown) => void): void {
  if (ctx.writes.idle) {
    sendJson(res, 200, compute());
    done();
    return;
  }
  ctx.writes.settled().then(() => {
    sendJson(res, 200, compute());
    done();
  }, done);
}

/**
 * Applies `change` and sends `body` once the write path settles it (the log holds it): no promise on the hot
 * path. A write the log lost gets its refusal instead (503).
 */
function answerWrite(body: string, change: ChangeRequest, res: ServerResponse, ctx: Ctx, done: (err?: unknown) => void): void {
  ctx.writes.applyThen(change, (err) => {
    if (err) {
      done(err);
      return;
    }
    sendJson(res, 200, body);
    done();
  });
}

/** Answers reads of the past (every command reads; those with `at` as the cells were then, the others as they are). */
async function answerPast(commands: CellCommand[], batch: boolean, res: ServerResponse, ctx: Ctx): Promise<void> {
  if (commands.some((cmd) => cmd.write)) throw new HttpError(400, 'a batch that reads the past holds reads only');
  // One read per instant, all from one replay: a batch at 4,096 instants costs one pass over history, not 4,096.
  const byInstant = new Map<number, CellCommand[]>();
  for (const cmd of commands) {
    if (cmd.at === undefined) continue;
    const same = byInstant.get(cmd.at);
    if (same) same.push(cmd);
    else byInstant.set(cmd.at, [cmd]);
  }
  const reads = [...byInstant].map(([at, cmds]) => ({ at, ranges: cmds.map((cmd) => ({ start: cmd.index, count: 1 })) }));
  const cells = await upstream(ctx.backups.readsAt(reads));
  const past = new Map<CellCommand, Cell>();
  reads.forEach((read, k) => byInstant.get(read.at)!.forEach((cmd, j) => {
    const bytes = cells[k]![j]!;
    past.set(cmd, { category: bytes[0]!, rotation: bytes[1]!, sideA: bytes[2]!, sideB: bytes[3]! });
  }));
  await ctx.writes.settled();
  const answers = commands.map((cmd) => past.get(cmd) ?? ctx.cube.read(cmd.index));
  ctx.metrics.cellsRead += commands.length;
  sendJson(res, 200, batch ? `[${answers.map(encodeAnswer).join(',')}]` : encodeAnswer(answers[0]!));
}

/**
 * Checks commands as one step: every conditional write against the world as the earlier commands leave it,
 * so a conflict writes nothing. Returns each command's answer and the writes as one change (undefined when
 * none), for the write path to apply in the same turn.
 */
function applyCommands(ctx: Ctx, commands: CellCommand[], batch: boolean): { answers: Cell[]; change?: ChangeRequest } {
  const pending = new Map<number, Cell>();
  const answers = new Array<Cell>(commands.length);
  let writes = 0;
  for (let i = 0; i < commands.length; i++) {
    const cmd = commands[i]!;
    const current = pending.get(cmd.index) ?? ctx.cube.read(cmd.index);
    if (cmd.write) {
      if (cmd.expect && !sameCell(current, cmd.expect)) throw conflict(ctx, cmd.index, current, batch ? `element ${i}: ` : '', batch ? { element: i } : {});
      pending.set(cmd.index, cmd.cell);
      answers[i] = cmd.cell;
      writes++;
    } else answers[i] = current;
  }
  ctx.metrics.cellsRead += commands.length - writes;
  if (writes === 0) return { answers };
  // A batch is one change, and a change has one author.
  const authors = new Set(commands.filter((cmd) => cmd.write).map((cmd) => cmd.by ?? ''));
  if (authors.size > 1) throw new HttpError(400, 'the writes of a batch are one change by one author: give them the same "by" (or none)');
  const runs: Run[] = [];
  for (const cmd of commands) if (cmd.write) runs.push(runOf(cmd));
  ctx.metrics.cellsWritten += writes;
  return { answers, change: { runs, by: [...authors][0]! } };
}

/** applyCommands for one command that is not part of a batch: its answer (a write is applied by the caller). */
function applyCommand(ctx: Ctx, cmd: CellCommand): Cell {
  const current = ctx.cube.read(cmd.index);
  if (!cmd.write) {
    ctx.metrics.cellsRead++;
    return current;
  }
  if (cmd.expect && !sameCell(current, cmd.expect)) throw conflict(ctx, cmd.index, current, '');
  ctx.metrics.cellsWritten++;
  return cmd.cell;
}

/** The run of one write command: its cell's four bytes. */
function runOf(cmd: CellCommand): Run {
  return { start: cmd.index, bytes: Uint8Array.of(cmd.cell.category, cmd.cell.rotation, cmd.cell.sideA, cmd.cell.sideB) };
}

function sameCell(a: Cell, b: Cell): boolean {
  return a.category === b.category && a.rotation === b.rotation && a.sideA === b.sideA && a.sideB === b.sideB;
}

function conflict(ctx: Ctx, index: number, current: Cell, where: string, extra: Record<string, unknown> = {}): HttpError {
  ctx.metrics.conflicts++;
  return new HttpError(409, `${where}cell ${index} does not hold the expected value; nothing was written`, {}, { ...extra, index, ...current });
}
