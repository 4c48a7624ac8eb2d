/** The behaviour every BlobStore must have; each backend's test file calls storeContract once. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import type { StoreFixture } from './support/app.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array | undefined) => (data === undefined ? undefined : new TextDecoder().decode(data));

/** What a backend's test server can be trusted with; a false entry skips those cases, loudly. */
export interface Capabilities { conditionalWrites: boolean; listPaging: boolean }

/** Runs the contract against stores from `open` (a fresh store and prefix per test). */
export function storeContract(name: string, open: (t: TestContext) => Promise<StoreFixture>, capabilities: () => Promise<Capabilities> = async () => ({ conditionalWrites: true, listPaging: true })) {
  describe(`BlobStore contract: ${name}`, () => {
    test('get of a missing key is undefined', async (t) => {
      const { store, prefix } = await open(t);
      assert.equal(await store.get(`${prefix}missing`), undefined);
    });

    test('put then get returns the same bytes; put replaces', async (t) => {
      const { store, prefix } = await open(t);
      await store.put(`${prefix}a/b.bin`, bytes('one'));
      assert.equal(text(await store.get(`${prefix}a/b.bin`)), 'one');
      await store.put(`${prefix}a/b.bin`, bytes('two'));
      assert.equal(text(await store.get(`${prefix}a/b.bin`)), 'two');
    });

    test('put of parts stores them one after another', async (t) => {
      const { store, prefix } = await open(t);
      const parts = [randomBytes(3 * 1024 * 1024), randomBytes(5), new Uint8Array(0), randomBytes(7 * 1024 * 1024)];
      await store.put(`${prefix}parts`, parts);
      assert.ok(Buffer.from((await store.get(`${prefix}parts`))!).equals(Buffer.concat(parts)));
      await store.put(`${prefix}small-parts`, [bytes('ab'), bytes('cd')]);
      assert.equal(text(await store.get(`${prefix}small-parts`)), 'abcd');
    });

    test('put of a stream stores what it yields, and a stream that fails stores nothing', async (t) => {
      const { store, prefix } = await open(t);
      const chunks = Array.from({ length: 12 }, () => randomBytes(1024 * 1024));
      await store.put(`${prefix}stream`, (async function* () { for (const chunk of chunks) yield chunk; })());
      assert.ok(Buffer.from((await store.get(`${prefix}stream`))!).equals(Buffer.concat(chunks)));
      const failing = (async function* () {
        for (const chunk of chunks) yield chunk;
        throw new Error('the producer failed');
      })();
      await assert.rejects(store.put(`${prefix}torn`, failing), /the producer failed/);
      assert.equal(await store.get(`${prefix}torn`), undefined);
      assert.deepEqual(await store.list(`${prefix}torn`), []);
    });

    test('an empty object is stored and read back as empty, not missing', async (t) => {
      const { store, prefix } = await open(t);
      await store.put(`${prefix}empty`, new Uint8Array(0));
      assert.equal((await store.get(`${prefix}empty`))?.byteLength, 0);
    });

    test('a large body (over one multipart part) round-trips byte for byte', async (t) => {
      const { store, prefix } = await open(t);
      const body = randomBytes(9 * 1024 * 1024 + 123);
      await store.put(`${prefix}large`, body);
      const back = await store.get(`${prefix}large`);
      assert.ok(back);
      assert.equal(back.byteLength, body.byteLength);
      assert.ok(Buffer.from(back).equals(body));
    });

    test('putIfAbsent creates once, then answers false and keeps the first body', async (t) => {
      if (!(await capabilities()).conditionalWrites) {
        t.skip('this S3 server ignores If-None-Match: * (not checked here)');
        return;
      }
      const { store, prefix } = await open(t);
      assert.equal(await store.putIfAbsent(`${prefix}c`, bytes('first')), true);
      assert.equal(await store.putIfAbsent(`${prefix}c`, bytes('second')), false);
      assert.equal(text(await store.get(`${prefix}c`)), 'first');
    });

    test('of racing putIfAbsent calls on one key exactly one wins', async (t) => {
      if (!(await capabilities()).conditionalWrites) {
        t.skip('this S3 server ignores If-None-Match: * (not checked here)');
        return;
      }
      const { store, prefix } = await open(t);
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => store.putIfAbsent(`${prefix}race`, bytes(`writer ${i}`))));
      assert.equal(results.filter(Boolean).length, 1);
      assert.equal(text(await store.get(`${prefix}race`)), `writer ${results.indexOf(true)}`);
    });

    test('getVersioned gives the bytes and a version that names them; a missing key is undefined', async (t) => {
      const { store, prefix } = await open(t);
      assert.equal(await store.getVersioned(`${prefix}v/missing`), undefined);
      await store.put(`${prefix}v/a`, bytes('one'));
      const first = await store.getVersioned(`${prefix}v/a`);
      assert.equal(text(first?.body), 'one');
      assert.equal((await store.getVersioned(`${prefix}v/a`))?.version, first?.version, 'the same bytes read again: the same version');
      await store.put(`${prefix}v/a`, bytes('two'));
      const second = await store.getVersioned(`${prefix}v/a`);
      assert.equal(text(second?.body), 'two');
      assert.notEqual(second?.version, first?.version);
    });

    test('putIfMatch replaces only the version it names, and never creates', async (t) => {
      if (!(await capabilities()).conditionalWrites) {
        t.skip('this S3 server ignores If-Match (not checked here)');
        return;
      }
      const { store, prefix } = await open(t);
      assert.equal(await store.putIfAbsent(`${prefix}m`, bytes('first')), true);
      const first = (await store.getVersioned(`${prefix}m`))!;
      assert.equal(await store.putIfMatch(`${prefix}m`, bytes('second'), first.version), true);
      const second = (await store.getVersioned(`${prefix}m`))!;
      assert.equal(text(second.body), 'second');
      assert.equal(await store.putIfMatch(`${prefix}m`, bytes('stale'), first.version), false, 'a version that was replaced');
      assert.equal(text(await store.get(`${prefix}m`)), 'second');
      assert.equal(await store.putIfMatch(`${prefix}m`, bytes('third'), second.version), true, 'a second swap in a row (Ceph: once the bare ETag form is learnt)');
      assert.equal(text(await store.get(`${prefix}m`)), 'third');
      assert.equal(await store.putIfMatch(`${prefix}gone`, bytes('x'), first.version), false, 'a missing key (Ceph answers 412, AWS 404)');
      assert.equal(await store.get(`${prefix}gone`), undefined);
      assert.deepEqual(await store.list(`${prefix}gone`), []);
    });

    test('of racing putIfMatch calls on one version exactly one wins', async (t) => {
      if (!(await capabilities()).conditionalWrites) {
        t.skip('this S3 server ignores If-Match (not checked here)');
        return;
      }
      const { store, prefix } = await open(t);
      await store.put(`${prefix}cas`, bytes('start'));
      for (let round = 0; round < 5; round++) {
        const { version } = (await store.getVersioned(`${prefix}cas`))!;
        const results = await Promise.all(Array.from({ length: 8 }, (_, i) => store.putIfMatch(`${prefix}cas`, bytes(`round ${round} writer ${i}`), version)));
        assert.equal(results.filter(Boolean).length, 1, `round ${round}: ${results}`);
        assert.equal(text(await store.get(`${prefix}cas`)), `round ${round} writer ${results.indexOf(true)}`);
      }
      assert.deepEqual(await store.list(`${prefix}cas`), [`${prefix}cas`], 'no lock or temp file left to list');
    });

    test('list returns the keys under a prefix, sorted, and nothing else', async (t) => {
      const { store, prefix } = await open(t);
      for (const key of ['x/2', 'x/1', 'x/sub/3', 'y/1', 'x2']) await store.put(`${prefix}${key}`, bytes(key));
      assert.deepEqual(await store.list(`${prefix}x/`), [`${prefix}x/1`, `${prefix}x/2`, `${prefix}x/sub/3`]);
      assert.deepEqual(await store.list(`${prefix}x`), [`${prefix}x/1`, `${prefix}x/2`, `${prefix}x/sub/3`, `${prefix}x2`]);
      assert.deepEqual(await store.list(`${prefix}none/`), []);
    });

    test('list pages through more than one listing page', async (t) => {
      if (!(await capabilities()).listPaging) {
        t.skip('this S3 server fails ListObjectsV2 continuation (not checked here)');
        return;
      }
      const { store, prefix } = await open(t);
      const keys = Array.from({ length: 1010 }, (_, i) => `${prefix}many/${String(i).padStart(5, '0')}`);
      for (let i = 0; i < keys.length; i += 8) await Promise.all(keys.slice(i, i + 8).map((key) => store.put(key, bytes('.'))));
      assert.deepEqual(await store.list(`${prefix}many/`), keys);
    });

    test('delete removes; deleting a missing key is not an error', async (t) => {
      const { store, prefix } = await open(t);
      await store.put(`${prefix}d`, bytes('x'));
      await store.delete(`${prefix}d`);
      assert.equal(await store.get(`${prefix}d`), undefined);
      assert.deepEqual(await store.list(`${prefix}d`), []);
      await store.delete(`${prefix}d`);
    });
  });
}
