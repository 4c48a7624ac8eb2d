/** Loggers for tests: one that drops everything, one that keeps events to assert on. */
import type { Fields, Log } from '../../lib/log.js';

/** A logger that drops everything. */
export const silentLog: Log = { info() {}, warn() {}, error() {} };

/** A logger that keeps events in memory. */
export function memoryLog(): Log & { events: Array<{ level: string; event: string } & Fields> } {
  const events: Array<{ level: string; event: string } & Fields> = [];
  return {
    events,
    info: (event, fields) => { events.push({ level: 'info', event, ...fields }); },
    warn: (event, fields) => { events.push({ level: 'warn', event, ...fields }); },
    error: (event, fields) => { events.push({ level: 'error', event, ...fields }); },
  };
}
