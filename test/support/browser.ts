/**
 * A real browser for tests and benchmarks: Debian's Chromium (/usr/bin/chromium, installed by .ci/run),
 * headless, driven over the DevTools protocol by puppeteer-core, with a fresh profile each time. A page
 * opened here answers the server's Basic-auth challenge as a user would, and records every console error,
 * uncaught exception and failed request, so a test can require that there were none.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

/** Where Debian's chromium package puts the browser. */
export const CHROMIUM = '/usr/bin/chromium';

/** Launches headless Chromium with a profile of its own; close() stops it and removes the profile. */
export async function launchBrowser(): Promise<{ browser: Browser; close: () => Promise<void> }> {
  const profile = await mkdtemp(join(tmpdir(), 'cubecache-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    // Nothing but the page under test talks to the network: no updates, sync, QUIC probes or first-run pages.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return {
    browser,
    close: async () => {
      await browser.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** A page and what went wrong on it so far. */
export interface WatchedPage {
  page: Page;
  /** Console errors, uncaught exceptions and failed requests (network failures and 4xx/5xx answers), as lines. */
  problems: string[];
}

/** A new 1280×800 page that answers Basic-auth challenges with `auth` and records its problems. */
export async function openPage(browser: Browser, auth: { user: string; password: string }, viewport = { width: 1280, height: 800 }): Promise<WatchedPage> {
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`uncaught: ${err instanceof Error ? err.message : String(err)}`));
  page.on('requestfailed', (request) => problems.push(`request failed: ${request.method()} ${request.url()}: ${request.failure()?.errorText}`));
  page.on('response', (response) => {
    // The server's 401 challenge is answered inside the browser (page.authenticate) and never shows here.
    if (response.status() >= 400) problems.push(`answer ${response.status()}: ${response.request().method()} ${response.url()}`);
  });
  await page.setViewport(viewport);
  await page.authenticate({ username: auth.user, password: auth.password });
  return { page, problems };
}
