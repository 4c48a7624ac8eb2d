/** One JSON line per event on stdout (Elastic Beanstalk ships stdout to its logs). */

export type Fields = Record<string, unknown>;

export interface Log {
  info(event: string, fields?: Fields): void;
  warn(event: string, fields?: Fields): void;
  error(event: string, fields?: Fields): void;
}

/** A logger writing JSON lines through `write` (stdout by default); errors in fields become {name, message, stack}. */
export function createLog(write: (line: string) => void = (line) => process.stdout.write(line)): Log {
  const emit = (level: string, event: string, fields: Fields = {}) => {
    write(JSON.stringify({ time: new Date().toISOString(), level, event, ...fields }, replaceErrors) + '\n');
  };
  return {
    info: (event, fields) => emit('info', event, fields),
    warn: (event, fields) => emit('warn', event, fields),
    error: (event, fields) => emit('error', event, fields),
  };
}

function replaceErrors(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    const status = (value as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    return { name: value.name, message: value.message, ...(code ? { code } : {}), ...(status ? { httpStatus: status } : {}), stack: value.stack };
  }
  return value;
}
