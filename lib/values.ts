/** The values that requests of several routes name besides cells, an author id and an instant: one definition each, so every route takes and refuses the same ones. */

/** The longest author id a change may carry (PlayFab's ids are 16 hex characters). */
export const MAX_AUTHOR = 64;

/** True for an author id: up to MAX_AUTHOR printable ASCII characters (space to tilde). */
export function isAuthor(text: string): boolean {
  return text.length <= MAX_AUTHOR && /^[\x20-\x7e]*$/.test(text);
}

/** The instant an ISO 8601 text names (date, time to the minute or finer, and Z or an offset), in ms since the epoch; undefined if it names none. */
export function parseInstant(text: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-](\d{2}):(\d{2}))$/.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second = 0, offsetHours = 0, offsetMinutes = 0] = m.slice(1).map((f) => (f === undefined ? undefined : Number(f)));
  // Date.parse rolls an impossible date over (2026-02-30 is March 2, 24:00 the next day): each field must name a real one.
  const leap = year! % 4 === 0 && (year! % 100 !== 0 || year! % 400 === 0);
  const daysInMonth = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month!) ? 30 : 31;
  if (month! < 1 || month! > 12 || day! < 1 || day! > daysInMonth || hour! > 23 || minute! > 59 || second > 59 || offsetHours > 23 || offsetMinutes > 59) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}
