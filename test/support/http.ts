/** A small HTTP client for tests: one fresh connection per call, so no pool outlives a server. */
import { request } from 'node:http';

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

export interface CallOptions {
  method?: string;
  body?: string | Uint8Array | object;
  headers?: Record<string, string>;
  /** user:password for Basic auth; `false` sends none. */
  auth?: { user: string; password: string } | false;
}

/** Sends one request to `base` + `path` and reads the whole answer; `json` is the parsed body or undefined. */
export function call(base: string, path: string, options: CallOptions = {}): Promise<Answer> {
  const url = new URL(path, base);
  const body = options.body === undefined ? undefined
    : typeof options.body === 'string' || options.body instanceof Uint8Array ? options.body
    : JSON.stringify(options.body);
  const headers: Record<string, string> = { ...options.headers };
  if (options.auth) headers.Authorization = basicHeader(options.auth.user, options.auth.password);
  if (body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(body));
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? (body === undefined ? 'GET' : 'POST'), headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The Authorization header value for Basic credentials. */
export function basicHeader(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/** A cell's four fields as the protocol spells them in answers and in `expect`. */
export const cell = (category: number, rotation = 0, sideA = 0, sideB = 0) => ({ category, rotation, sideA, sideB });

/** Polls `check` until it returns a truthy value or the deadline passes (then throws with `what`). */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 20_000, everyMs = 20): Promise<NonNullable<Awaited<T>>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<Awaited<T>>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
