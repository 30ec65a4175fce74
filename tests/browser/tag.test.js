// The tag example (examples/tag) in a real browser, as docs/GUIDE.md ends: its own
// binary (TAG_BIN) serves its page, two tabs join as ann and bo, each knows its own
// player, sees the other and who is "it", sees the other move, and hears what the other
// says. Headless chromium driven by playwright-core, like e2e.test.js.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

import { startCluster } from '../../clients/js/test/cluster.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCREENSHOTS = process.env.CENTRUM_SCREENSHOTS ?? path.join(here, '../../target/screenshots');
const TAG_BIN = process.env.TAG_BIN ?? path.join(here, '../../target/debug/tag');
const WAIT_MS = 20_000;

let cluster;
let browser;
const pageErrors = [];

before(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  cluster = await startCluster({ bin: TAG_BIN, channels: [{ name: 'tag', app: 'tag' }] });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
  await cluster?.stop();
});

async function open(name) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (err) => pageErrors.push(`${name}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') pageErrors.push(`${name}: ${msg.text()}`);
  });
  await page.goto(`${cluster.masterHttp}/?name=${name}`);
  await page.locator('[data-testid=status]', { hasText: 'playing' }).waitFor();
  return page;
}

/** The row of the players list for `name` on `page`. */
const row = (page, name) => page.locator(`[data-testid=players] li[data-name="${name}"]`);

test('two tabs play tag: each sees both players, the other move, and what the other says', async () => {
  const ann = await open('ann');
  const bo = await open('bo');
  for (const page of [ann, bo]) {
    await row(page, 'ann').waitFor();
    await row(page, 'bo').waitFor();
  }
  // Each tab knows which player is its own (the game's `you` message), and ann, who
  // joined first, is "it" on both.
  assert.equal(await row(ann, 'ann').getAttribute('data-me'), 'true');
  assert.equal(await row(ann, 'bo').getAttribute('data-me'), 'false');
  assert.equal(await row(bo, 'bo').getAttribute('data-me'), 'true');
  for (const page of [ann, bo]) {
    await page.locator('[data-testid=players] li[data-name="ann"][data-it="true"]').waitFor();
  }

  // Ann runs away from the wall she is nearest; bo's tab sees her go.
  const x0 = Number(await row(bo, 'ann').getAttribute('data-x'));
  const key = x0 < 24 ? 'ArrowRight' : 'ArrowLeft';
  await ann.bringToFront();
  await ann.keyboard.down(key);
  try {
    await bo.waitForFunction(
      ({ x0, sign }) => {
        const li = document.querySelector('[data-testid=players] li[data-name="ann"]');
        return li && sign * (Number(li.dataset.x) - x0) >= 2;
      },
      { x0, sign: key === 'ArrowRight' ? 1 : -1 },
    );
  } finally {
    await ann.keyboard.up(key);
  }

  // Bo says something; ann's log shows it.
  await bo.bringToFront();
  await bo.locator('[data-testid=say]').fill('catch me if you can');
  await bo.locator('[data-testid=say]').press('Enter');
  await ann.locator('[data-testid=log] li', { hasText: 'bo: catch me if you can' }).waitFor();
  await ann.screenshot({ path: path.join(SCREENSHOTS, 'tag.png') });
  assert.deepEqual(pageErrors, [], 'the pages logged errors');
});
