/**
 * A worker thread holding a PlayFab-like classic CloudScript sandbox (a node:vm context with handlers, log,
 * server.GetTitleInternalData, http.request and currentPlayerId, and no Buffer, btoa or require).
 *
 * It lives in a worker because CloudScript's http.request is synchronous: the sandbox blocks its thread
 * (spawnSync of sync-http.mjs) until the answer is in, and the server under test runs on the main thread,
 * which must stay free to answer. Blocking the main thread would deadlock against an in-process server.
 *
 * Messages in: {id, type: 'run', handler, args, context, titleData} or {id, type: 'call', name, args}.
 * Messages out: {id, result, logs, requests} or {id, error}.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { parentPort, workerData } from 'node:worker_threads';

const HELPER = fileURLToPath(new URL('./sync-http.mjs', import.meta.url));
/** The helper's environment: no coverage collection (it covers no server code and would slow every request). */
const HELPER_ENV = Object.fromEntries(Object.entries(process.env).filter(([name]) => name !== 'NODE_V8_COVERAGE'));

/** @type {{sources: {name: string, code: string}[], routes: Record<string, string>, httpErrors: 'return' | 'throw'}} */
const options = workerData;

/** Per run: what the script logged and the requests it made. */
let logs = [];
let requests = [];
/** Per run: the Title Internal Data the test set. */
let titleData = {};

const logger = (level) => (message, data) => {
  logs.push(data === undefined ? { level, message: String(message) } : { level, message: String(message), data: JSON.stringify(data) });
};

/** The URL actually requested: a prefix listed in `routes` replaced by its target (e.g. the seed's https host → the test server). */
function route(url) {
  for (const [from, to] of Object.entries(options.routes)) {
    if (url === from || url.startsWith(`${from}/`)) return to + url.slice(from.length);
  }
  return url;
}

/**
 * CloudScript's http.request(url, method, content, contentType, headers[, logRequestAndResponse]): synchronous,
 * returns the response body as a string.
 * Assumptions (PlayFab documents neither): an HTTP answer of any status returns its body, 4xx and 5xx included
 * ('return', the default), or, with httpErrors 'throw', a non-2xx throws an Error whose message holds the status
 * and the body, as PlayFab does for some statuses. No answer at all (refused, reset, timeout) always throws.
 */
function request(url, method, content, contentType, headers) {
  const target = route(String(url));
  const record = { url: String(url), target, method: String(method), contentType, headers: { ...headers }, content };
  requests.push(record);
  const child = spawnSync(process.execPath, [HELPER], {
    input: JSON.stringify({ url: target, method: record.method.toUpperCase(), content, contentType, headers }),
    encoding: 'utf8',
    env: HELPER_ENV,
    timeout: 15_000,
  });
  if (child.error || child.status !== 0) throw new Error(`sandbox: the HTTP helper failed: ${child.error?.message ?? child.stderr}`);
  const outcome = JSON.parse(child.stdout);
  if (outcome.error) throw new Error(`HTTP request to ${url} failed: ${outcome.error.code} ${outcome.error.message}`);
  record.status = outcome.status;
  if (options.httpErrors === 'throw' && (outcome.status < 200 || outcome.status > 299)) {
    throw new Error(`HTTP request to ${url} failed with status ${outcome.status}: ${outcome.body}`);
  }
  return outcome.body;
}

const sandbox = {
  handlers: {},
  log: { debug: logger('debug'), info: logger('info'), error: logger('error') },
  server: {
    GetTitleInternalData(req) {
      const data = {};
      for (const key of req?.Keys ?? Object.keys(titleData)) {
        if (Object.hasOwn(titleData, key)) data[key] = titleData[key];
      }
      return { Data: data };
    },
  },
  http: { request },
  currentPlayerId: 'TESTPLAYERID',
};
const context = vm.createContext(sandbox);
for (const source of options.sources) vm.runInContext(source.code, context, { filename: source.name });

/** A value made inside the sandbox, as PlayFab hands over args parsed from the call's JSON. */
const inside = (value) => (value === undefined ? undefined : vm.runInContext('JSON.parse', context)(JSON.stringify(value)));

parentPort.on('message', (message) => {
  logs = [];
  requests = [];
  try {
    let result;
    if (message.type === 'run') {
      titleData = { ...message.titleData };
      const handler = sandbox.handlers[message.handler];
      if (typeof handler !== 'function') throw new Error(`no handler ${message.handler}`);
      result = handler(inside(message.args), inside(message.context ?? {}));
    } else {
      result = context[message.name](...message.args.map(inside));
    }
    // Through JSON, as PlayFab returns a handler's result to its caller.
    parentPort.postMessage({ id: message.id, result: result === undefined ? undefined : JSON.parse(JSON.stringify(result)), logs, requests });
  } catch (err) {
    parentPort.postMessage({ id: message.id, error: err instanceof Error || (err && err.stack) ? String(err.stack) : String(err), logs, requests });
  }
});
