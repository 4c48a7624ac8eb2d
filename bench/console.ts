/**
 * The console's load time: from navigation to the first map drawn on its canvas (the page's own
 * performance mark 'cubecache:first-map', whose time counts from navigation start), in headless Chromium,
 * against the compiled server with the default world (256×256×256, 64 MiB) holding a terrain. The first
 * load is cold (a fresh browser profile); the others reuse the browser. Also: a step of the time slider
 * (an instant in the past chosen, until that map is drawn), and what the map request itself took
 * (the server's Server-Timing header).
 * Target: a load in 1 s or less (p50).
 *
 *   npm run bench:console      BENCH_LOADS=10
 */
import { launchBrowser, openPage } from '../test/support/browser.js';
import { AUTH, fillWorld, fmtMs, http, main, median, s3dump, startCubecache, table, verdicts } from './support.js';

const LOADS = Number(process.env.BENCH_LOADS ?? 10);
const STEPS = Number(process.env.BENCH_STEPS ?? 10);
const TARGET_MS = 1000;
const SIDE = 256;

/** A 256³ world in xzy order (y slowest): rolling terrain of stone, dirt and grass, water in the hollows. */
function terrain(): Uint8Array {
  const bytes = new Uint8Array(SIDE * SIDE * SIDE * 4);
  const layer = SIDE * SIDE;
  for (let z = 0; z < SIDE; z++) {
    for (let x = 0; x < SIDE; x++) {
      const height = Math.round(60 + 18 * Math.sin(x / 23) * Math.cos(z / 31) + 9 * Math.sin((x + 2 * z) / 11));
      for (let y = 0; y <= Math.max(height, 56); y++) {
        const category = y > height ? 4 : y === height ? 2 : y > height - 4 ? 3 : 1;
        bytes[(y * layer + z * SIDE + x) * 4] = category;
      }
    }
  }
  return bytes;
}

await main('console: load time in Chromium', async () => {
  const server = await startCubecache('console', { env: { WORLD_SHAPE: `${SIDE}x${SIDE}x${SIDE}`, SHIP_INTERVAL_SECONDS: '1' } });
  await fillWorld(server, terrain());
  await s3dump(server); // history starts here
  const past = new Date().toISOString();
  // A few changes after it, so a past instant is a replay, not the snapshot itself.
  for (let i = 0; i < 20; i++) {
    const answer = await http(`${server.url}/cells?box=${i * 10},100,${i * 10},8,4,8&by=builder`, { method: 'PUT', body: new Uint8Array(8 * 4 * 8 * 4).fill(5) });
    if (answer.status !== 200) throw new Error(`PUT /cells?box: ${answer.status} ${answer.body.toString()}`);
  }
  const browser = await launchBrowser();
  try {
    const loads: number[] = [];
    const mapRequests: number[] = [];
    let waterfall: Array<{ name: string; startTime: number; responseEnd: number }> = [];
    for (let i = 0; i < LOADS; i++) {
      const { page, problems } = await openPage(browser.browser, AUTH);
      let timing = '';
      page.on('response', (response) => {
        if (response.url().includes('/map.png')) timing = response.headers()['server-timing'] ?? '';
      });
      await page.goto(`${server.url}/console`);
      await page.waitForFunction(() => document.body.dataset.map === 'map.png?view=top', { timeout: 60_000 });
      loads.push(await page.evaluate(() => performance.getEntriesByName('cubecache:first-map')[0]!.startTime));
      waterfall = await page.evaluate(() => [
        ...performance.getEntriesByType('navigation'),
        ...performance.getEntriesByType('resource'),
      ].map((e) => ({ name: e.name.replace(location.origin, ''), startTime: e.startTime, responseEnd: (e as PerformanceResourceTiming).responseEnd })));
      mapRequests.push([...timing.matchAll(/dur=([\d.]+)/g)].reduce((sum, m) => sum + Number(m[1]), 0));
      if (problems.length) throw new Error(`the page had problems: ${problems.join('; ')}`);
      await page.close();
    }
    // Slider steps: an instant in the past (between the snapshot and the changes), then now, each until drawn.
    const { page } = await openPage(browser.browser, AUTH);
    await page.goto(`${server.url}/console`);
    await page.waitForFunction(() => document.body.dataset.map === 'map.png?view=top', { timeout: 60_000 });
    const steps: number[] = [];
    for (let i = 0; i < STEPS; i++) {
      const hash = i % 2 === 0 ? `#at=${past}&view=top` : '#view=top';
      const want = i % 2 === 0 ? `map.png?view=top&at=${past}` : 'map.png?view=top';
      const started = performance.now();
      await page.evaluate((h) => { location.hash = h; }, hash);
      await page.waitForFunction((url) => document.body.dataset.map === url && document.body.dataset.busy === '0', { timeout: 60_000 }, want);
      steps.push(performance.now() - started);
    }
    await page.close();
    table(`Console in Chromium (${LOADS} loads, ${STEPS} slider steps; world ${SIDE}³, the top view)`, ['measure', 'p50', 'max', 'first (cold)'], [
      ['navigation → first map drawn', fmtMs(median(loads)), fmtMs(Math.max(...loads)), fmtMs(loads[0]!)],
      ['of which GET /map.png on the server', fmtMs(median(mapRequests)), fmtMs(Math.max(...mapRequests)), fmtMs(mapRequests[0]!)],
      ['time step (past ↔ now) → map drawn', fmtMs(median(steps)), fmtMs(Math.max(...steps)), '-'],
    ]);
    table('Where the last load spent its time (ms from navigation start)', ['request', 'start', 'answered'], waterfall.map((e) => [e.name, fmtMs(e.startTime), fmtMs(e.responseEnd)]));
    verdicts([{ target: `load <= ${TARGET_MS} ms (p50)`, measured: fmtMs(median(loads)), pass: median(loads) <= TARGET_MS }]);
  } finally {
    await browser.close();
    await server.stop();
  }
});
