/** Fuzzes POST /request bodies against a real server (test/support/fuzz-run.ts: FUZZ_SEED, FUZZ_REQUESTS, FUZZ_KNOWN_BUGS). */
import { test } from 'node:test';
import { runFuzz } from './support/fuzz-run.js';

test('fuzz: random, edge-case and malformed POST /request bodies never crash or 5xx the server, and the world matches the model', { timeout: 120_000 }, (t) => runFuzz(t, 'request', 'test/fuzz-request.test.ts'));
