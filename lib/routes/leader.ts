/** Writes on a server that does not lead: run here after all, sent on to the leader, or refused with a 503 to retry. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { forward, FORWARDED_HEADER } from '../forward.js';
import { closeIfBody, HttpError } from '../http.js';
import type { Ctx } from './context.js';

/**
 * Where a write that arrived at a server that does not lead goes (the caller has checked its credentials):
 * `run` when the role says 'local' (`run` then calls `done` itself); the leader, by forward(), when it names
 * one; else `done` gets a 503 with Retry-After: 1, as does a request another server forwarded already (never
 * forwarded twice: two servers that each think the other leads must not bounce it). `body`: the request body
 * when the route already read it.
 */
export function toLeader(req: IncomingMessage, res: ServerResponse, ctx: Ctx, run: () => void, done: (err?: unknown) => void, body?: Buffer): void {
  const forwarded = req.headers[FORWARDED_HEADER] !== undefined;
  // A body not read yet is not worth draining for a refusal: the connection closes after it (closeIfBody).
  const refusal = (message: string) => new HttpError(503, message, { 'Retry-After': '1', ...(body === undefined ? closeIfBody(req) : {}) });
  ctx.role.writeTarget(forwarded).then((target) => {
    if (target === 'local') {
      run();
      return;
    }
    if (target === undefined) throw refusal('this server does not lead and no leader is known now; nothing was changed, try again');
    if (forwarded) throw refusal('this server does not lead and the request was already forwarded once; nothing was changed, try again');
    return forward(req, res, target, { body, stallMs: ctx.stallMs, log: ctx.log }).then(() => done());
  }).catch(done);
}
