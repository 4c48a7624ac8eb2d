/**
 * One HTTP request, run as a child process so that a caller can wait for it synchronously (spawnSync):
 * reads {url, method, content, contentType, headers} as JSON on stdin, prints {status, body} or
 * {error: {code, message}} (no answer: refused, reset, timeout) as JSON on stdout, and exits 0 either way.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

const TIMEOUT_MS = 10_000; // a CloudScript execution has 10 s in all

let input = '';
process.stdin.setEncoding('utf8');
for await (const chunk of process.stdin) input += chunk;

const { url, method, content, contentType, headers } = JSON.parse(input);
const body = content === undefined || content === null ? '' : String(content);
const target = new URL(url);
const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
const allHeaders = { ...headers, 'Content-Length': String(Buffer.byteLength(body)) };
if (contentType) allHeaders['Content-Type'] = contentType;

const outcome = await new Promise((resolve) => {
  const req = send(target, { method, headers: allHeaders, agent: false, timeout: TIMEOUT_MS }, (res) => {
    const chunks = [];
    res.on('data', (chunk) => chunks.push(chunk));
    res.on('error', (err) => resolve({ error: { code: err.code ?? 'ERESPONSE', message: err.message } }));
    res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
  });
  req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${TIMEOUT_MS} ms`), { code: 'ETIMEDOUT' })));
  req.on('error', (err) => resolve({ error: { code: err.code ?? 'EREQUEST', message: err.message } }));
  req.end(body);
});
process.stdout.write(JSON.stringify(outcome));
