/** How routes that change cells refuse and wait: 503 while writes are refused, and the answer only once the log holds the change. */
import { HttpError } from '../http.js';
import type { Ctx } from './context.js';

/** 503 while writes are refused (the log cannot be written, or another server took over): checked before anything changes. */
export function assertWritable(ctx: Ctx): void {
  const refused = ctx.backups.refusal();
  if (refused) throw new HttpError(503, refused.message);
}

/** Resolves once the log holds every change recorded so far; 503 if it cannot be written. */
export function logged(ctx: Ctx): Promise<void> {
  return new Promise((resolve, reject) => ctx.backups.afterWrite((err) => (err ? reject(notLogged(err)) : resolve())));
}

/**
 * The answer to a change the log could not write: the log dropped it and will never replay it (ChangeLog).
 * TODO(core, issue 17): the world still holds it until a restart (and a snapshot taken meanwhile would keep
 * it); the one write path must undo it with its before-image, newest first, as the log's waiters are called.
 */
export function notLogged(err: Error): HttpError {
  return new HttpError(503, `the change could not be written to the log (${err.message}); it is not logged and will not be, retry`);
}
