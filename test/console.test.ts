/**
 * The console (GET /console) in a real browser: Debian's Chromium, headless, against a real server holding
 * a world of a known shape and history. The test reads the canvas's pixels and checks them against the
 * world it built, moves the time slider, clicks a column, previews and applies a rollback, and fails on
 * any console error or failed request. It also writes the screenshots the README shows (docs/console-*.png).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import type { Page } from 'puppeteer-core';
import { AUTH, openFileStore, openWalDir, startServer, type Running } from './support/app.js';
import { launchBrowser, openPage, type WatchedPage } from './support/browser.js';

/** A small world, longer along x than z and not square anywhere, so a swapped or flipped axis shows. */
const SHAPE = { x: 24, y: 6, z: 16, order: 'xzy' };
const CELLS = SHAPE.x * SHAPE.y * SHAPE.z;
/** The test's clock: the world's history happens at these instants (ms), one phase every ten seconds. */
const T0 = Date.parse('2026-12-01T12:00:00.000Z');
const AT = { snapshot: T0, floor: T0 + 10_000, wall: T0 + 20_000, grief: T0 + 30_000, repair: T0 + 40_000, now: T0 + 50_000 };
/** The console's colours for empty columns and for a rollback preview (lib/console/console.js). */
const EMPTY = [35, 40, 47];

type Box = [number, number, number, number, number, number];

/** The world as the test built it: 4 bytes a cell in the shape's order, and its index function. */
class Model {
  readonly bytes = new Uint8Array(CELLS * 4);
  static index(x: number, y: number, z: number): number {
    return x + z * SHAPE.x + y * SHAPE.x * SHAPE.z; // xzy: x fastest, then z, then y
  }
  fill(box: Box, category: number): Uint8Array {
    const [x0, y0, z0, w, h, d] = box;
    const out: number[] = [];
    // A box's cells in ascending index order: y slowest, then z, then x.
    for (let y = y0; y < y0 + h; y++) for (let z = z0; z < z0 + d; z++) for (let x = x0; x < x0 + w; x++) {
      this.bytes.set([category, 0, 0, 0], Model.index(x, y, z) * 4);
      out.push(category, 0, 0, 0);
    }
    return Uint8Array.from(out);
  }
  /** The topmost non-empty cell of column (x, z): its height and category, or undefined for an empty column. */
  top(x: number, z: number): { y: number; category: number } | undefined {
    for (let y = SHAPE.y - 1; y >= 0; y--) {
      const category = this.bytes[Model.index(x, y, z) * 4]!;
      if (category !== 0) return { y, category };
    }
    return undefined;
  }
}

let clock = AT.snapshot;
let server: Running;
let browser: Awaited<ReturnType<typeof launchBrowser>>;
const worlds: Record<string, Model> = {};

/** Writes `category` into `box` as `by` at the test clock's instant, in the server and in `model`. */
async function build(model: Model, box: Box, category: number, by: string): Promise<void> {
  const body = model.fill(box, category);
  const answer = await server.call(`/cells?box=${box.join(',')}&by=${by}`, { method: 'PUT', body, auth: AUTH });
  assert.equal(answer.status, 200, answer.text);
}

const copy = (model: Model) => Object.assign(new Model(), { bytes: model.bytes.slice() }) as Model;

// One server and one browser for the file: the steps below are one operator's session, in order.
// node:test's `before` has no TestContext: a stand-in collects the cleanups, and `after` runs them.
const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

before(async () => {
  const t = { after: (fn: () => unknown) => cleanups.push(fn) } as unknown as Parameters<typeof startServer>[0];
  server = await startServer(t, await openFileStore(t), {
    cells: CELLS, shape: SHAPE, now: () => clock, wal: { dir: await openWalDir(t), sync: 'write' }, shipIntervalMs: 50,
  });
  browser = await launchBrowser();
  cleanups.push(() => browser.close());

  // The history: a snapshot of the empty world, alice's floor, bob's wall in the shape of an F, mallory's
  // grief (lava over a patch of floor, the top of the F's upper bar, and one block far off), carol building
  // over part of the lava.
  const model = new Model();
  assert.equal((await server.post('/s3dump')).status, 200);
  worlds.empty = copy(model);
  clock = AT.floor;
  await build(model, [0, 0, 0, 20, 1, 14], 1, 'alice');
  worlds.floor = copy(model);
  clock = AT.wall;
  await build(model, [3, 1, 2, 1, 3, 11], 2, 'bob');
  await build(model, [4, 1, 2, 9, 3, 1], 2, 'bob');
  await build(model, [4, 1, 7, 6, 3, 1], 2, 'bob');
  worlds.wall = copy(model);
  clock = AT.grief;
  await build(model, [14, 1, 9, 6, 2, 5], 3, 'mallory');
  await build(model, [8, 3, 2, 5, 1, 1], 3, 'mallory');
  await build(model, [22, 0, 14, 1, 1, 1], 3, 'mallory'); // outside the box the rollback names: it stays
  worlds.grief = copy(model);
  clock = AT.repair;
  await build(model, [14, 1, 9, 2, 2, 5], 4, 'carol');
  worlds.now = copy(model);
  clock = AT.now;
  await mkdir('docs', { recursive: true });
});

/** The state after `#` in the page's address. */
async function hashState(page: Page): Promise<URLSearchParams> {
  return new URLSearchParams((await page.evaluate(() => location.hash)).slice(1));
}

/** Waits until the page shows the map at `mapUrl` and has no request in flight. */
async function mapShown(page: Page, mapUrl: string): Promise<void> {
  await page.waitForFunction((url) => document.body.dataset.map === url && document.body.dataset.busy === '0', { timeout: 20_000 }, mapUrl);
}

/** The canvas pixel (R, G, B) at the centre of each column, with the column's screen position. */
async function columnPixels(page: Page): Promise<Map<string, { rgb: number[]; px: number; py: number }>> {
  const hash = await hashState(page);
  const zoom = Number(hash.get('zoom'));
  const ox = Math.round(-Number(hash.get('x')) * zoom);
  const oz = Math.round(-Number(hash.get('z')) * zoom);
  assert.ok(zoom >= 2, `zoom ${zoom}: a column covers whole pixels`);
  const points: Array<{ key: string; px: number; py: number }> = [];
  for (let z = 0; z < SHAPE.z; z++) for (let x = 0; x < SHAPE.x; x++) {
    points.push({ key: `${x},${z}`, px: ox + x * zoom + Math.floor(zoom / 2), py: oz + z * zoom + Math.floor(zoom / 2) });
  }
  const colours = await page.evaluate((list) => {
    const canvas = document.getElementById('map') as HTMLCanvasElement;
    const g = canvas.getContext('2d')!;
    const ratio = canvas.width / canvas.clientWidth;
    return list.map(({ px, py }) => [...g.getImageData(Math.floor(px * ratio), Math.floor(py * ratio), 1, 1).data.slice(0, 3)]);
  }, points);
  return new Map(points.map((p, i) => [p.key, { rgb: colours[i]!, px: p.px, py: p.py }]));
}

/**
 * The map on the canvas is `model` seen from above: every empty column shows the empty colour, and
 * columns show the same colour exactly when their topmost cells have the same category at the same height.
 * The colours themselves are the server's PNG's (read back in the page).
 */
async function assertMapShows(page: Page, model: Model, label: string): Promise<void> {
  const pixels = await columnPixels(page);
  const byTop = new Map<string, string>();
  const byColour = new Map<string, string>();
  for (let z = 0; z < SHAPE.z; z++) for (let x = 0; x < SHAPE.x; x++) {
    const { rgb } = pixels.get(`${x},${z}`)!;
    const top = model.top(x, z);
    if (!top) {
      assert.deepEqual(rgb, EMPTY, `${label}: column ${x},${z} is empty`);
      continue;
    }
    assert.notDeepEqual(rgb, EMPTY, `${label}: column ${x},${z} holds category ${top.category} at y ${top.y}`);
    const topKey = `${top.category}@${top.y}`;
    const colour = rgb.join(',');
    byTop.set(topKey, byTop.get(topKey) ?? colour);
    assert.equal(colour, byTop.get(topKey), `${label}: column ${x},${z} (${topKey}) has the colour of the other ${topKey} columns`);
    byColour.set(colour, byColour.get(colour) ?? topKey);
    assert.equal(byColour.get(colour), topKey, `${label}: column ${x},${z} (${topKey}) has a colour of its own`);
  }
  // The canvas shows the server's picture, pixel for pixel.
  const url = await page.evaluate(() => document.body.dataset.map!);
  const png = await page.evaluate(async (mapUrl) => {
    const bitmap = await createImageBitmap(await (await fetch(mapUrl, { credentials: 'same-origin' })).blob());
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const g = canvas.getContext('2d')!;
    g.drawImage(bitmap, 0, 0);
    return { width: bitmap.width, height: bitmap.height, data: [...g.getImageData(0, 0, bitmap.width, bitmap.height).data] };
  }, url);
  assert.deepEqual([png.width, png.height], [SHAPE.x, SHAPE.z], 'one pixel per column, x across and z down');
  for (let z = 0; z < SHAPE.z; z++) for (let x = 0; x < SHAPE.x; x++) {
    const at = (z * SHAPE.x + x) * 4;
    if (png.data[at + 3] === 255) assert.deepEqual(pixels.get(`${x},${z}`)!.rgb, png.data.slice(at, at + 3), `${label}: column ${x},${z} as the PNG draws it`);
  }
}

/** Clicks the centre of column (x, z) on the canvas. */
async function clickColumn(page: Page, x: number, z: number): Promise<void> {
  const { px, py } = (await columnPixels(page)).get(`${x},${z}`)!;
  const frame = (await (await page.$('#map'))!.boundingBox())!;
  await page.mouse.click(frame.x + px, frame.y + py);
}

async function text(page: Page, selector: string): Promise<string> {
  return page.$eval(selector, (el) => el.textContent ?? '');
}

test('the console in Chromium: the map, the past, a cell\'s authors, a rollback previewed and applied', async (t) => {
  const { page, problems }: WatchedPage = await openPage(browser.browser, AUTH);
  t.after(() => page.close());

  // 1. The map, as the world is now, where the shape says; no scrollbars at 1280×800.
  await page.goto(`${server.url}/console`);
  await mapShown(page, 'map.png?view=top');
  await assertMapShows(page, worlds.now!, 'now');
  assert.equal(await text(page, '#world'), `${SHAPE.x}×${SHAPE.y}×${SHAPE.z} (x×y×z, y up), order xzy`);
  const size = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight, innerWidth, innerHeight]);
  assert.deepEqual(size.slice(0, 2), size.slice(2), 'no scrollbars: the page is as large as the window');
  assert.match(await text(page, '#health-role'), /role: /);
  await page.screenshot({ path: 'docs/console-map.png' });

  // 2. The slider at 25 s after history's start: between bob's wall and mallory's grief.
  const slider = (await page.$('#time'))!;
  await slider.focus();
  await page.keyboard.press('Home');
  for (let i = 0; i < 25; i++) await page.keyboard.press('ArrowRight');
  const earlier = new Date(AT.snapshot + 25_000).toISOString();
  await mapShown(page, `map.png?view=top&at=${earlier}`);
  assert.equal((await hashState(page)).get('at'), earlier, 'the address says which instant is shown');
  assert.equal(await text(page, '#instant'), earlier);
  await assertMapShows(page, worlds.wall!, 'at +25 s');

  // 3. A click on a column at that instant: its topmost cell then was alice's floor.
  await clickColumn(page, 17, 11);
  await page.waitForFunction(() => document.body.dataset.inspected === '17,11' && document.body.dataset.busy === '0');
  assert.match(await text(page, '#cell-summary'), new RegExp(`^x 17, y 0, z 11 \\(cell ${Model.index(17, 0, 11)}\\): category 1.* at ${earlier}`));
  await page.screenshot({ path: 'docs/console-past.png' });

  // Back to now: the same column's topmost cell is mallory's lava, and its history names her.
  await page.click('#time-now');
  await mapShown(page, 'map.png?view=top');
  await page.waitForFunction(() => document.body.dataset.busy === '0' && /y 2/.test(document.getElementById('cell-summary')!.textContent!));
  assert.match(await text(page, '#cell-summary'), new RegExp(`^x 17, y 2, z 11 \\(cell ${Model.index(17, 2, 11)}\\): category 3`));
  const rows = await page.$$eval('#cell-history tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  assert.deepEqual(rows.map((r) => r.slice(1)), [['mallory', 'empty', 'cat 3']]);
  assert.equal(rows[0]![0], '2026-12-01 12:00:30');
  await page.screenshot({ path: 'docs/console-cell.png' });

  // 4. Draw a box over the grief and name mallory: the preview colours the columns to restore and those kept.
  await page.click('#tool-box');
  const frame = (await (await page.$('#map'))!.boundingBox())!;
  const pixels = await columnPixels(page);
  const from = pixels.get('8,1')!;
  const to = pixels.get('19,13')!;
  await page.mouse.move(frame.x + from.px, frame.y + from.py);
  await page.mouse.down();
  await page.mouse.move(frame.x + (from.px + to.px) / 2, frame.y + (from.py + to.py) / 2, { steps: 4 });
  await page.mouse.move(frame.x + to.px, frame.y + to.py, { steps: 4 });
  await page.mouse.up();
  const box = [8, 0, 1, 12, SHAPE.y, 13];
  assert.equal(await page.$eval('#rollback-box', (el) => (el as HTMLInputElement).value), box.join(','));
  await page.type('#rollback-by', 'mallory');
  await page.click('#rollback-preview');
  await page.waitForFunction(() => document.body.dataset.preview !== undefined && document.body.dataset.busy === '0');
  // The same preview through the API: which columns hold cells to restore, and which cells that stay.
  const history = (await server.call('/backups', { auth: AUTH })).json.history;
  const preview = await server.post('/rollback', { by: 'mallory', since: history.earliest, box, preview: true });
  assert.equal(preview.status, 200, preview.text);
  const runs = (list: Array<[number, number]> | undefined, cells: Array<{ index: number }>) => (list ? list.flatMap(([start, count]) => Array.from({ length: count }, (_, i) => start + i)) : cells.map((c) => c.index));
  const column = (index: number) => `${index % SHAPE.x},${Math.floor(index / SHAPE.x) % SHAPE.z}`;
  const kept = new Set(runs(preview.json.skippedRuns, preview.json.skippedCells).map(column));
  const restore = new Set(runs(preview.json.restore, preview.json.cells).map(column).filter((c) => !kept.has(c)));
  assert.equal(restore.size, 4 * 5 + 5, 'mallory\'s lava (4 × 5 columns) and the F\'s upper bar (5)');
  assert.equal(kept.size, 2 * 5, 'carol built over 2 × 5 columns of the lava');
  const colour = async (id: string) => (await page.$eval(id, (el) => (el as HTMLElement).style.backgroundColor)).match(/\d+/g)!.map(Number);
  const [restoreColour, keptColour] = [await colour('#swatch-restore'), await colour('#swatch-kept')];
  const shown = await columnPixels(page);
  for (const [key, { rgb }] of shown) {
    if (restore.has(key)) assert.deepEqual(rgb, restoreColour, `column ${key} is to be restored`);
    else if (kept.has(key)) assert.deepEqual(rgb, keptColour, `column ${key} is kept`);
    else {
      assert.notDeepEqual(rgb, restoreColour, `column ${key} is not in the preview`);
      assert.notDeepEqual(rgb, keptColour, `column ${key} is not in the preview`);
    }
  }
  assert.equal(await text(page, '#rollback-result'), `${preview.json.restored} cells to put back in 25 columns; ${preview.json.skipped} kept (someone else changed them later) in 10.`);
  assert.equal((await hashState(page)).get('box'), box.join(','));
  assert.equal((await hashState(page)).get('by'), 'mallory');
  await page.screenshot({ path: 'docs/console-rollback.png' });

  // 5. Apply it: an in-page confirmation first, then the world changes and the map shows it.
  await page.click('#rollback-apply');
  await page.waitForSelector('#confirm:not([hidden])');
  assert.match(await text(page, '#confirm-text'), new RegExp(`^Put back ${preview.json.restored} cells that mallory changed in box ${box.join(',')}`));
  await page.screenshot({ path: 'docs/console-confirm.png' });
  await page.click('#confirm-yes');
  await page.waitForFunction(() => document.body.dataset.applied !== undefined && document.body.dataset.busy === '0');
  await mapShown(page, 'map.png?view=top');
  const after = copy(worlds.wall!);
  after.fill([14, 1, 9, 2, 2, 5], 4); // carol's cells stay
  after.fill([22, 0, 14, 1, 1, 1], 3); // and so does mallory's block outside the box
  const cells = await server.call('/cells', { auth: AUTH });
  assert.deepEqual(new Uint8Array(Buffer.from(cells.text, 'latin1')), after.bytes, 'the world is the wall and carol\'s cells, mallory\'s gone');
  await assertMapShows(page, after, 'after the rollback');
  assert.match(await text(page, '#rollback-result'), new RegExp(`^Rolled back: ${preview.json.restored} cells put back, ${preview.json.skipped} kept\\.`));

  assert.deepEqual(problems, [], 'no console error and no failed request');
});

test('the address reproduces the screen: a slice at a height, zoomed and panned, at an instant', async (t) => {
  const { page, problems } = await openPage(browser.browser, AUTH);
  t.after(() => page.close());
  const at = new Date(AT.snapshot + 35_000).toISOString(); // after the grief, before carol
  await page.goto(`${server.url}/console#at=${at}&view=slice&y=1&zoom=4&x=-2&z=-3`);
  await mapShown(page, `map.png?view=slice&y=1&at=${at}`);
  const state = await hashState(page);
  assert.deepEqual([state.get('view'), state.get('y'), state.get('zoom'), state.get('x'), state.get('z'), state.get('at')], ['slice', '1', '4', '-2', '-3', at]);
  assert.equal(await page.$eval('#height', (el) => (el as HTMLInputElement).value), '1');
  // At y 1 then: bob's F and mallory's lava; at the top-left corner, column (0, 0) starts 2 and 3 columns in.
  const pixels = await columnPixels(page);
  assert.deepEqual([pixels.get('0,0')!.px, pixels.get('0,0')!.py], [8 + 2, 12 + 2]);
  const slice = worlds.grief!;
  const wall = pixels.get('3,5')!.rgb;
  const lava = pixels.get('17,11')!.rgb;
  assert.notDeepEqual(wall, lava);
  for (let z = 0; z < SHAPE.z; z++) for (let x = 0; x < SHAPE.x; x++) {
    const category = slice.bytes[Model.index(x, 1, z) * 4];
    const rgb = pixels.get(`${x},${z}`)!.rgb;
    assert.deepEqual(rgb, category === 2 ? wall : category === 3 ? lava : EMPTY, `column ${x},${z} at y 1`);
  }
  assert.deepEqual(problems, []);
});

test('GET /console and its files: behind Basic auth, with a strict Content-Security-Policy; the icon is open', async () => {
  for (const path of ['/console', '/console/console.js', '/console/console.css']) {
    assert.equal((await server.call(path)).status, 401, `${path} needs the credentials`);
    const answer = await server.call(path, { auth: AUTH });
    assert.equal(answer.status, 200, path);
    assert.match(String(answer.headers['content-security-policy']), /^default-src 'self';.*frame-ancestors 'none'/);
    assert.equal(answer.headers['x-content-type-options'], 'nosniff');
  }
  assert.match(String((await server.call('/console', { auth: AUTH })).headers['content-type']), /^text\/html/);
  assert.match(String((await server.call('/console/console.js', { auth: AUTH })).headers['content-type']), /^text\/javascript/);
  const icon = await server.call('/favicon.ico');
  assert.equal(icon.status, 200);
  assert.equal(icon.headers['content-type'], 'image/x-icon');
  assert.equal((await server.call('/console', { method: 'HEAD', auth: AUTH })).text, '');
  assert.equal((await server.call('/console/nothing.js', { auth: AUTH })).status, 404);
  // The page loads nothing from elsewhere: every src and href is relative to this server.
  const html = (await server.call('/console', { auth: AUTH })).text;
  for (const [, url] of html.matchAll(/(?:src|href)="([^"]+)"/g)) assert.doesNotMatch(url!, /^(?:[a-z]+:)?\/\//i, url);
  assert.doesNotMatch(html, /<script>|style="/, 'no inline script or style (the policy would refuse them)');
});

test('a page on another site cannot write with the credentials the browser holds: its fetch and its form get 403s, the world stays', async (t) => {
  // The operator's browser has logged in to the console (the credentials are cached for its origin)...
  const own = await openPage(browser.browser, AUTH);
  t.after(() => own.page.close());
  await own.page.goto(`${server.url}/console`);
  await mapShown(own.page, 'map.png?view=top');
  // ...and then opens another site's page, which posts to the server: a fetch, then the classic form that spells a JSON body.
  const evil = createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html', Connection: 'close' });
    res.end(`<!doctype html><title>elsewhere</title>
<form id="f" method="POST" action="${server.url}/request" enctype="text/plain"><input name='{"action":1,"index":0,"category":7,"pad":"' value='"}'></form>
<script>
fetch(${JSON.stringify(`${server.url}/request`)}, { method: 'POST', mode: 'no-cors', credentials: 'include', body: '{"action":1,"index":0,"category":7}' })
  .then(() => document.getElementById('f').submit());
</script>`);
  });
  evil.listen(0, '127.0.0.1');
  await once(evil, 'listening');
  t.after(() => {
    evil.closeAllConnections();
    return new Promise((resolve) => evil.close(resolve));
  });
  const refused = async () => Number(/cubecache_http_requests_total\{route="\/request",status="403"\} (\d+)/.exec((await server.call('/metrics', { auth: AUTH })).text)?.[1] ?? 0);
  const before = await refused();
  // Another origin: the same address under another name and port.
  const { page } = await openPage(browser.browser, AUTH);
  t.after(() => page.close());
  const formAnswer = page.waitForResponse((response) => response.url() === `${server.url}/request` && response.request().isNavigationRequest());
  await page.goto(`http://localhost:${(evil.address() as AddressInfo).port}/`);
  const answer = await formAnswer;
  assert.equal(answer.status(), 403);
  assert.match(await answer.text(), /a write from another site is refused/);
  assert.equal(await refused(), before + 2, 'the fetch and the form were both refused');
  assert.equal((await server.post('/request', { index: 0 })).json.category, 1, 'cell 0 is still alice\'s floor');
});

test('a flat world: the console says the map needs a shape, and nothing fails', async (t) => {
  const flat = await startServer(t, await openFileStore(t));
  const { page, problems } = await openPage(browser.browser, AUTH);
  t.after(() => page.close());
  await page.goto(`${flat.url}/console`);
  await page.waitForSelector('#map-note:not([hidden])');
  assert.match(await text(page, '#map-note'), /This world is flat.*WORLD_SHAPE/);
  assert.equal(await text(page, '#world'), '4,096 cells, flat');
  await page.waitForFunction(() => document.body.dataset.busy === '0');
  assert.deepEqual(problems, [], 'no map is asked for, so no request fails');
});
