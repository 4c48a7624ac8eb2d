/** The values that requests of several routes name besides cells, an author id and an instant: one definition each, so every route takes and refuses the same ones. */

/** The longest author id a change may carry (PlayFab's ids are 16 hex characters). */
export const MAX_AUTHOR = 64;

/** True for an author id: up to MAX_AUTHOR printable ASCII characters (space to tilde). */
export function isAuthor(text: string): boolean {
  return text.length <= MAX_AUTHOR && /^[\x20-\x7e]*$/.test(text);
}

/** The instant an ISO 8601 text names (date, time to the minute or finer, and Z or an offset), in ms since the epoch; undefined if it names none. */
export function parseInstant(text: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}
