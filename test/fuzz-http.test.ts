/**
 * Fuzzes the HTTP layer against a real server: routing, odd headers, the other routes, broken framing over raw
 * sockets, pipelines, slow and stalled clients (test/support/fuzz-run.ts: FUZZ_SEED, FUZZ_REQUESTS, FUZZ_KNOWN_BUGS).
 */
import { test } from 'node:test';
import { runFuzz } from './support/fuzz-run.js';

test('fuzz: random methods, paths, headers, broken framing, pipelines and slow clients never crash or 5xx the server, and the world matches the model', { timeout: 120_000 }, (t) => runFuzz(t, 'http', 'test/fuzz-http.test.ts'));
