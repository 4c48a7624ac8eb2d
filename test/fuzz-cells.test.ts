/** Fuzzes GET and PUT /cells against a real server (test/support/fuzz-run.ts: FUZZ_SEED, FUZZ_REQUESTS, FUZZ_KNOWN_BUGS). */
import { test } from 'node:test';
import { runFuzz } from './support/fuzz-run.js';

test('fuzz: random, edge-case and malformed GET and PUT /cells never crash or 5xx the server, and the world matches the model', { timeout: 120_000 }, (t) => runFuzz(t, 'cells', 'test/fuzz-cells.test.ts'));
