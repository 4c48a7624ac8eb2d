/** The fuzzer's raw-socket cases: broken framing, early hang-ups, pipelining, slow and stalled clients. */
import assert from 'node:assert/strict';
import { trips, HEADERS_MS, type Verdict, judgeRequestBody, tripsDuplicateKeyBug, answer, seen, preview, record, assertError, assertJson200, checkRequestAnswer } from './fuzz-oracle.js';
import { type Probe, GOOD_AUTH, KNOWN_METHODS, bodyOf, annotate } from './fuzz-routes.js';
import { send, serialize, rawExchange } from './fuzz-wire.js';
import { type Worker, type Fuzz, pickCell, otherQuad, ws, renderCommand, renderBatch, intentFor, requestReq, type Gen, genSingle, genBatch, genBadBatch, genEdge, genMutated, genStructural, genCellsRead, genMisc, genRouting } from './fuzz-generators.js';


export interface RawCase {
  what: string;
  bytes: Buffer;
  finish: 'end' | 'destroy';
  /**
   * reject: at most one answer, a 4xx, then the connection closes; nothing written.
   * lenient: node:http may also take it as a request: a 4xx, or the answer `verdict` predicts.
   * prefix: the first answer is `verdict`'s (for the body Content-Length delimits); anything after, a 4xx.
   * gone: we hang up: no answer expected, nothing written.
   */
  accept: 'reject' | 'lenient' | 'prefix' | 'gone';
  verdict?: Verdict;
  /** node:http answers this itself (see KNOWN BUGS: bare errors). */
  bare?: boolean;
  /** A cell whose value to read back afterwards (the embedded write must not have happened unless answered). */
  cell: number;
}

export function rawCase(f: Fuzz, w: Worker): RawCase {
  const r = w.rng;
  const cell = pickCell(w);
  // ASCII, so string offsets are byte offsets in the cases below.
  const [category, rotation, sideA, sideB] = otherQuad(r, f.world.get(cell));
  const B = JSON.stringify({ action: 1, index: cell, category, rotation, sideA, sideB }).replace(/,/g, () => `,${ws(r)}`);
  const verdict = judgeRequestBody(Buffer.from(B));
  const H = `Host: x\r\nAuthorization: ${GOOD_AUTH}\r\n`;
  const post = `POST /request HTTP/1.1\r\n${H}`;
  const len = Buffer.byteLength(B);
  const hex = len.toString(16);
  const cut = r.between(1, len - 1);
  type Case = [string, string | Buffer, RawCase['accept'], Partial<RawCase>?];
  const cases: Case[] = [
    ['LF line ends', `POST /request HTTP/1.1\n${H.replace(/\r\n/g, '\n')}Content-Length: ${len}\n\n${B}`, 'lenient'],
    ['CR line ends', `POST /request HTTP/1.1\r${H.replace(/\r\n/g, '\r')}Content-Length: ${len}\r\r${B}`, 'reject'],
    ['obs-fold', `${post}X-A: a\r\n b\r\nContent-Length: ${len}\r\n\r\n${B}`, 'reject'],
    ['header without colon', `${post}Bogus\r\nContent-Length: ${len}\r\n\r\n${B}`, 'reject'],
    ['space in a header name', `${post}Bad Header: 1\r\nContent-Length: ${len}\r\n\r\n${B}`, 'reject'],
    ['space before the colon', `${post}Content-Length : ${len}\r\n\r\n${B}`, 'reject'],
    ['control byte in a header', `${post}X-A: a\u0001b\r\nContent-Length: ${len}\r\n\r\n${B}`, 'reject'],
    ['NUL in the target', `POST /req\u0000uest HTTP/1.1\r\n${H}Content-Length: ${len}\r\n\r\n${B}`, 'reject'],
    ['space in the target', `POST /req uest HTTP/1.1\r\n${H}Content-Length: ${len}\r\n\r\n${B}`, 'reject'],
    ['8-bit target', `POST /r\u00e9quest HTTP/1.1\r\n${H}Content-Length: ${len}\r\n\r\n${B}`, 'reject'],
    ...['abc', '-1', '+5', '1 2', '99999999999999999999999', '', '0x10', `${len}.0`].map((v): Case => [`Content-Length: ${v}`, `${post}Content-Length: ${v}\r\n\r\n${B}`, 'reject']),
    ['two Content-Lengths that differ', `${post}Content-Length: ${len}\r\nContent-Length: ${len - 1}\r\n\r\n${B}`, 'reject'],
    ['two equal Content-Lengths', `${post}Content-Length: ${len}\r\nContent-Length: ${len}\r\n\r\n${B}`, 'lenient'],
    ['Content-Length and chunked', `${post}Content-Length: ${len}\r\nTransfer-Encoding: chunked\r\n\r\n${hex}\r\n${B}\r\n0\r\n\r\n`, 'reject'],
    ...['gzip', 'chunked, gzip', 'xchunked', 'identity', 'chunked\r\nTransfer-Encoding: chunked'].map((v): Case => [`Transfer-Encoding: ${v.split('\r')[0]}`, `${post}Transfer-Encoding: ${v}\r\n\r\n${hex}\r\n${B}\r\n0\r\n\r\n`, 'reject']),
    ['Transfer-Encoding: gzip, chunked', `${post}Transfer-Encoding: gzip, chunked\r\n\r\n${hex}\r\n${B}\r\n0\r\n\r\n`, 'lenient'],
    ['chunk extensions and trailers', `${post}Transfer-Encoding: chunked\r\n\r\n${hex};a=b\r\n${B}\r\n0\r\nX-T: 1\r\n\r\n`, 'lenient'],
    ['chunk size not hex', `${post}Transfer-Encoding: chunked\r\n\r\nzz\r\n${B}\r\n0\r\n\r\n`, 'reject'],
    ['chunk size overflows', `${post}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n${B}\r\n0\r\n\r\n`, 'reject'],
    ['chunk without its CRLF', `${post}Transfer-Encoding: chunked\r\n\r\n${hex}\r\n${B}XX0\r\n\r\n`, 'reject'],
    ['chunked body that stops, then EOF', `${post}Transfer-Encoding: chunked\r\n\r\n${hex}\r\n${B.slice(0, cut)}`, 'reject'],
    ['chunked body that stops, then hang-up', `${post}Transfer-Encoding: chunked\r\n\r\n${hex}\r\n${B.slice(0, cut)}`, 'gone', { finish: 'destroy' }],
    ['chunked body without its last chunk, then hang-up', `${post}Transfer-Encoding: chunked\r\n\r\n${hex}\r\n${B}\r\n`, 'gone', { finish: 'destroy' }],
    ['Content-Length over the body, then EOF', `${post}Content-Length: ${len + r.between(1, 50)}\r\n\r\n${B}`, 'reject'],
    ['Content-Length over the body, then hang-up', `${post}Content-Length: ${len + r.between(1, 50)}\r\n\r\n${B}`, 'gone', { finish: 'destroy' }],
    ['Content-Length under the body', `${post}Content-Length: ${cut}\r\n\r\n${B}`, 'prefix', { verdict: judgeRequestBody(Buffer.from(B).subarray(0, cut)) }],
    ['headers that stop, then EOF', `${post}Content-Le`, 'reject'],
    ['headers that stop, then hang-up', `${post}Content-Length: ${len}\r\n`, 'gone', { finish: 'destroy' }],
    ['HTTP/0.9-style request line', `POST /request\r\n${H}Content-Length: ${len}\r\n\r\n${B}`, 'lenient'],
    ['HTTP/1.1x', `POST /request HTTP/1.1x\r\n${H}Content-Length: ${len}\r\n\r\n${B}`, 'reject'],
    ['HTTP/9.9', `POST /request HTTP/9.9\r\n${H}Content-Length: ${len}\r\n\r\n${B}`, 'reject'],
    ['HTTP/1.0', `POST /request HTTP/1.0\r\n${H}Content-Length: ${len}\r\n\r\n${B}`, 'lenient'],
    ['two spaces in the request line', `POST  /request  HTTP/1.1\r\n${H}Content-Length: ${len}\r\n\r\n${B}`, 'lenient'],
    ['tab in the request line', `POST\t/request HTTP/1.1\r\n${H}Content-Length: ${len}\r\n\r\n${B}`, 'reject'],
    ['empty lines first', `\r\n\r\n${post}Content-Length: ${len}\r\n\r\n${B}`, 'lenient'],
    ['method in lower case', `post /request HTTP/1.1\r\n${H}Content-Length: ${len}\r\n\r\n${B}`, 'reject'],
    ['unknown method', `${r.pick(['FOO', 'BREW', 'P0ST', 'POST_', 'GET/'])} /request HTTP/1.1\r\n${H}Content-Length: ${len}\r\n\r\n${B}`, 'reject'],
    ['TLS hello', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, ...r.bytes(32)]), 'reject'],
    ['HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'reject'],
    ['random bytes', r.bytes(r.between(1, 200)), 'reject'],
    ['3000 headers', `${post}${Array.from({ length: 3000 }, (_, i) => `X-${i}: ${i}\r\n`).join('')}Content-Length: ${len}\r\n\r\n${B}`, 'reject'],
    ['a 20 KB header', `${post}X-Big: ${'a'.repeat(20_000)}\r\nContent-Length: ${len}\r\n\r\n${B}`, 'reject'],
    ['a 20 KB target', `GET /${'t'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 'reject'],
    ['no Host', `POST /request HTTP/1.1\r\nAuthorization: ${GOOD_AUTH}\r\nContent-Length: ${len}\r\n\r\n${B}`, 'reject', { bare: true }],
    ['Expect: garbage', `${post}Expect: garbage\r\nContent-Length: ${len}\r\n\r\n${B}`, 'reject', { bare: true }],
    ['CONNECT', 'CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n', 'reject'],
    ['Upgrade: websocket', `${post}Upgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: ${len}\r\n\r\n${B}`, 'lenient'],
    ['Upgrade: h2c', `${post}Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nContent-Length: ${len}\r\n\r\n${B}`, 'lenient'],
    ['two Authorization headers, bad first', `POST /request HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eA==\r\nAuthorization: ${GOOD_AUTH}\r\nContent-Length: ${len}\r\n\r\n${B}`, 'lenient'],
  ];
  const [what, bytes, accept, extra] = r.pick(cases);
  return { what, bytes: typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes, finish: 'end', accept, verdict, cell, ...extra };
}

export async function runRawCase(f: Fuzz, w: Worker, c: RawCase): Promise<void> {
  // Sent in one write, or split at random points (the parser must not care).
  const steps: Buffer[] = [];
  for (let at = 0, n = w.rng.between(1, 3); at < c.bytes.length; n--) {
    const end = n <= 1 ? c.bytes.length : w.rng.between(at + 1, c.bytes.length);
    steps.push(c.bytes.subarray(at, end));
    at = end;
  }
  const result = await rawExchange(f.port, steps, { finish: c.finish });
  seen.raw++;
  assert.ok(!result.timedOut, `no answer and no close within 10 s (a hang); got ${preview(result.raw)}`);
  result.responses.forEach(record);
  switch (c.accept) {
    case 'gone':
      assert.equal(result.responses.length, 0, 'an answer to a request we hung up on before it was whole');
      break;
    case 'reject':
      assert.ok(result.responses.length <= 1, `${result.responses.length} answers to one broken request: ${preview(result.raw)}`);
      for (const res of result.responses) assertError(res, [400, 404, 405, 408, 411, 413, 414, 417, 431], { bare: c.bare ?? false });
      break;
    case 'lenient':
      assert.ok(result.responses.length <= 1, `${result.responses.length} answers: ${preview(result.raw)}`);
      for (const res of result.responses) {
        if (res.status >= 400) assertError(res, [400, 401, 404, 405, 411, 413, 417, 431, 505]);
        else checkRequestAnswer(c.verdict!, res, f.world);
      }
      break;
    case 'prefix':
      assert.ok(result.responses.length >= 1, `no answer to the request Content-Length delimits: ${preview(result.raw)}`);
      checkRequestAnswer(c.verdict!, result.responses[0]!, f.world);
      for (const res of result.responses.slice(1)) assertError(res, [400, 404, 405, 413, 431]);
      break;
  }
  await readBack(f, w, c.cell);
}

/** Reads a cell back over node:http: it must hold what the model says. */
export async function readBack(f: Fuzz, w: Worker, cell: number): Promise<void> {
  w.sent++;
  const res = await send(f.agent, f.port, { method: 'POST', path: '/request', headers: { Authorization: GOOD_AUTH }, body: Buffer.from(`{"index":${cell}}`) });
  record(res);
  assert.deepEqual(assertJson200(res), answer(f.world.get(cell)), `cell ${cell} read back afterwards`);
}

/** Pipelines: several requests written at once on one keep-alive connection; the answers come in order. */
export async function runPipeline(f: Fuzz, w: Worker): Promise<void> {
  const r = w.rng;
  const n = r.between(2, 10);
  const probes: Probe[] = [];
  let wrote = false;
  const gens: Gen[] = [genSingle, genSingle, genBatch, genBadBatch, genMutated, genEdge, genStructural, genCellsRead, genMisc, genRouting];
  for (let tries = 0; probes.length < n && tries < 100; tries++) {
    const p = r.pick(gens)(f, w);
    if (!p || p.closes || (p.req.method === 'HEAD' && r.chance(0.5))) continue;
    if (!KNOWN_METHODS.has(p.req.method) || p.req.path.length > 1000 || p.req.headers.Expect) continue;
    // Bug "pipelining" (fixed): with FUZZ_KNOWN_BUGS=none, no GET /cells after a request that may write.
    if (!trips('pipelining') && wrote && p.req.method === 'GET' && p.req.path.startsWith('/cells')) continue;
    wrote ||= p.writes;
    probes.push(p);
  }
  if (probes.length === 0) return;
  const bytes = Buffer.concat(probes.map((p) => serialize(p.req)));
  const steps: Array<Buffer | number> = [];
  for (let at = 0, parts = r.between(1, 4); at < bytes.length; parts--) {
    const end = parts <= 1 ? bytes.length : r.between(at + 1, bytes.length);
    steps.push(bytes.subarray(at, end));
    at = end;
  }
  const heads = probes.map((p) => p.req.method === 'HEAD');
  const result = await rawExchange(f.port, steps, { finish: 'open', want: probes.length, heads });
  assert.ok(!result.timedOut && result.responses.length === probes.length,
    `${result.responses.length} of ${probes.length} pipelined answers (closed: ${result.closed}): ${probes.map((p) => p.what).join('; ')}; got ${preview(result.raw, 600)}`);
  w.sent += probes.length;
  seen.pipelines++;
  seen.pipelined += probes.length;
  probes.forEach((p, i) => {
    const res = result.responses[i]!;
    record(res);
    try {
      p.judge(res);
    } catch (err) {
      throw annotate(err, `pipelined request ${i + 1} of ${probes.length} (${probes.map((q) => q.what).join('; ')}): ${p.what}`, p.req);
    }
  });
}

/** A valid write whose body trickles in over 1-2 s must still be answered, and right. */
export async function runSlowSender(f: Fuzz, w: Worker): Promise<void> {
  const r = w.rng;
  let text: string;
  do {
    const cmds = Array.from({ length: r.between(1, 4) }, () => intentFor(w, f.world));
    text = cmds.length === 1 ? renderCommand(r, cmds[0]!) : renderBatch(r, cmds.map((c) => renderCommand(r, c)));
  } while (!trips('duplicates') && tripsDuplicateKeyBug(Buffer.from(text)));
  const req = requestReq(Buffer.from(text), r, { Authorization: GOOD_AUTH });
  const verdict = judgeRequestBody(bodyOf(req));
  const wire = serialize(req);
  const headEnd = wire.indexOf('\r\n\r\n') + 4;
  const steps: Array<Buffer | number> = [wire.subarray(0, headEnd)];
  const pieces = r.between(6, 9);
  let paused = 0;
  for (let i = 0, at = headEnd; i < pieces; i++) {
    const end = i === pieces - 1 ? wire.length : Math.min(wire.length, at + Math.ceil((wire.length - headEnd) / pieces));
    const pause = r.between(110, 180);
    paused += pause;
    steps.push(pause, wire.subarray(at, end));
    at = end;
  }
  const result = await rawExchange(f.port, steps, { finish: 'open', want: 1, deadlineMs: 15_000 });
  w.sent++;
  assert.equal(result.responses.length, 1, `a slow sender (${paused} ms) got no answer (closed: ${result.closed}): ${preview(result.raw)}`);
  assert.ok(result.ms >= paused, 'the answer came after the whole body');
  seen.slow.push(Math.round(result.ms));
  record(result.responses[0]!);
  checkRequestAnswer(verdict, result.responses[0]!, f.world);
}

/** A client that stops (or crawls) mid-headers, or sends nothing at all, is cut off soon after headersMs. */
export async function runStall(f: Fuzz, w: Worker, kind: 'stop' | 'crawl' | 'idle'): Promise<void> {
  const r = w.rng;
  const partial = `POST /request HTTP/1.1\r\nHost: x\r\nAuthorization: ${GOOD_AUTH}\r\n${r.pick(['Content-Le', 'X-Slow: a', ''])}`;
  const steps = kind === 'idle' ? [] : [Buffer.from(partial)];
  const deadlineMs = HEADERS_MS + 1000 + 5000; // the limit, node:http's check every second, a busy machine
  const result = await rawExchange(f.port, steps, { finish: 'open', deadlineMs, ...(kind === 'crawl' ? { trickle: Buffer.from('a') } : {}) });
  w.sent++;
  assert.ok(result.closed, `a client that ${kind === 'idle' ? 'sends nothing' : kind === 'stop' ? 'stops mid-headers' : 'crawls through its headers'} was not cut off within ${deadlineMs} ms`);
  assert.ok(result.ms >= HEADERS_MS * 0.8, `cut off after ${Math.round(result.ms)} ms, before headersMs (${HEADERS_MS})`);
  seen.cutOff.push(Math.round(result.ms));
  for (const res of result.responses) {
    record(res);
    assertError(res, [408, 400]);
  }
}
