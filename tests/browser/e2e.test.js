// End-to-end tests of the web pages in a real browser: Debian's chromium, headless,
// driven by playwright-core, against a real cluster of the centrum binary (CENTRUM_BIN).
// Two tabs play the arena demo, each knows its own player from the game's `you` message
// and sees the other's player move, and a toast tells them when someone scores; the admin
// dashboard, behind its token, shows both clients; in the lobby, a tab makes a room of
// type `match` and another joins it from the list. Screenshots go to CENTRUM_SCREENSHOTS
// (default target/screenshots), and README.md shows them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

import { Client } from '../../clients/js/src/index.js';
import { startCluster } from '../../clients/js/test/cluster.js';
import { collectCoin, within, yourPlayer } from '../../clients/js/test/util.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCREENSHOTS = process.env.CENTRUM_SCREENSHOTS ?? path.join(here, '../../target/screenshots');
const ADMIN_TOKEN = 'browser-test-admin-token';
/** Every wait in these tests is bounded by this. */
const WAIT_MS = 20_000;

let cluster;
let browser;
/** Errors the pages logged or threw; a page with any fails the test. */
const pageErrors = [];

before(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  cluster = await startCluster({ adminToken: ADMIN_TOKEN, rooms: [{ type: 'match', app: 'arena', max_clients: 8 }] });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
  await cluster?.stop();
});

/** A new tab at 1280×800 whose console errors and exceptions are collected. */
async function newPage() {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (err) => pageErrors.push(`${page.url()}: ${err.message}`));
  page.on('console', (msg) => {
    // The login form is the 401 answer to /admin, which chromium logs as a failed load.
    const loginForm = /status of 401/.test(msg.text()) && new URL(page.url()).pathname === '/admin';
    if (msg.type() === 'error' && !loginForm) pageErrors.push(`${page.url()}: ${msg.text()}`);
  });
  return page;
}

/** The latest server position a page shows for `name`, from its score list. */
async function positionOf(page, name) {
  return page.locator(`[data-testid=scores] li[data-name="${name}"]`).evaluate((li) => ({
    x: Number(li.dataset.x),
    y: Number(li.dataset.y),
  }));
}

/** The entity id a page says is its own player: the `you` message's, on the HUD. */
async function myPlayer(page) {
  const me = page.locator('[data-testid=me][data-player]');
  await me.waitFor();
  return Number(await me.getAttribute('data-player'));
}

/** The entity id a page's score list gives the player named `name`. */
async function idOf(page, name) {
  return Number(await page.locator(`[data-testid=scores] li[data-name="${name}"]`).getAttribute('data-id'));
}

/** Holds `key` on `mover` until `watcher` sees `name` move by at least 2 units `axis`-wise. */
async function moveAndWatch(mover, watcher, name, key, axis, sign) {
  const start = await positionOf(watcher, name);
  await mover.bringToFront();
  await mover.keyboard.down(key);
  try {
    await watcher.waitForFunction(
      ({ name, axis, sign, from }) => {
        const li = document.querySelector(`[data-testid=scores] li[data-name="${name}"]`);
        return li && sign * (Number(li.dataset[axis]) - from) >= 2;
      },
      { name, axis, sign, from: start[axis] },
    );
  } finally {
    await mover.keyboard.up(key);
  }
}

test('two tabs play the demo, each sees the other move, and the dashboard shows both', async () => {
  const [ana, bob] = [await newPage(), await newPage()];
  await ana.goto(`${cluster.masterHttp}/?name=ana`);
  await bob.goto(`${cluster.masterHttp}/?name=bob`);
  for (const page of [ana, bob]) {
    await page.locator('[data-testid=state]', { hasText: 'playing' }).waitFor();
    // Each tab lists both players: it sees the other one.
    await page.locator('[data-testid=scores] li[data-name="ana"]').waitFor();
    await page.locator('[data-testid=scores] li[data-name="bob"]').waitFor();
  }
  // Each tab learned its own player from the game's `you` message: the id on its HUD is
  // the entity the other tab lists under its name, and its own list marks that one.
  const anaId = await myPlayer(ana);
  const bobId = await myPlayer(bob);
  assert.notEqual(anaId, bobId);
  assert.equal(await idOf(bob, 'ana'), anaId, 'bob\'s tab lists ana\'s player under that id');
  assert.equal(await idOf(ana, 'bob'), bobId, 'ana\'s tab lists bob\'s player under that id');
  for (const [page, name, id] of [[ana, 'ana', anaId], [bob, 'bob', bobId]]) {
    const mine = page.locator('[data-testid=scores] li.me');
    await mine.waitFor();
    assert.equal(await mine.count(), 1);
    assert.deepEqual([await mine.getAttribute('data-name'), Number(await mine.getAttribute('data-id'))], [name, id]);
  }

  // Each player walks away from the wall it might start against; the other tab sees it.
  const anaX = (await positionOf(ana, 'ana')).x;
  await moveAndWatch(ana, bob, 'ana', anaX < 32 ? 'ArrowRight' : 'ArrowLeft', 'x', anaX < 32 ? 1 : -1);
  // Holding the mouse on the field steers too: ana heads for a point across the field.
  const anaAt = await positionOf(ana, 'ana');
  const box = await ana.locator('[data-testid=field]').boundingBox();
  const targetX = anaAt.x < 32 ? 60 : 4;
  await ana.bringToFront();
  await ana.mouse.move(box.x + (targetX / 64) * box.width, box.y + (anaAt.y / 36) * box.height);
  await ana.mouse.down();
  try {
    await bob.waitForFunction(
      ({ from, sign }) => sign * (Number(document.querySelector('[data-testid=scores] li[data-name="ana"]').dataset.x) - from) >= 2,
      { from: anaAt.x, sign: Math.sign(targetX - anaAt.x) },
    );
  } finally {
    await ana.mouse.up();
  }

  // The header's tick is the state's: it advances with every patch, so while bob moves.
  const tick = Number(await ana.locator('[data-testid=tick]').textContent());
  const bobY = (await positionOf(bob, 'bob')).y;
  await moveAndWatch(bob, ana, 'bob', bobY < 18 ? 'ArrowDown' : 'ArrowUp', 'y', bobY < 18 ? 1 : -1);
  assert.ok(Number(await ana.locator('[data-testid=tick]').textContent()) > tick, 'the tick advanced');
  // And it shows a ping in milliseconds.
  await ana.waitForFunction(() => /^\d+ ms$/.test(document.querySelector('[data-testid=ping]').textContent));
  await ana.bringToFront();
  await ana.screenshot({ path: path.join(SCREENSHOTS, 'demo.png') });

  // The dashboard asks for the token, then shows the cluster with both clients.
  const admin = await newPage();
  await admin.goto(`${cluster.masterHttp}/admin`);
  await admin.locator('input[name=token]').fill(ADMIN_TOKEN);
  await admin.locator('input[name=token]').press('Enter');
  await admin.waitForURL(`${cluster.masterHttp}/admin`);
  await admin.locator('[data-testid=total-clients]', { hasText: /^2$/ }).waitFor();
  for (const id of cluster.nodeIds) {
    await admin.locator(`[data-testid=nodes] tr[data-node="${id}"] [data-field=status]`, { hasText: 'live' }).waitFor();
  }
  await admin.locator('[data-testid=channels] tr[data-channel="arena"] [data-field=clients]', { hasText: /^2$/ }).waitFor();
  // Ana dances left and right (two inputs a press) so that the dashboard has traffic to
  // show: the arena's inputs and patch bytes per second rise above 0.
  let dancing = true;
  const dance = (async () => {
    for (let i = 0; dancing && i < 600; i++) {
      await ana.keyboard.press(i % 2 ? 'ArrowLeft' : 'ArrowRight', { delay: 100 });
    }
  })();
  try {
    for (const field of ['inputs_per_s', 'patch_bytes_per_s']) {
      await admin.waitForFunction(
        (field) => Number(document.querySelector(`[data-testid=channels] tr[data-channel="arena"] [data-field=${field}]`)?.dataset.value) > 0,
        field,
      );
    }
    // The charts draw from their history: wait for a few seconds of it for the screenshot.
    await admin.waitForFunction(() => Number(document.querySelector('[data-testid=chart-clients] canvas, canvas[data-testid=chart-clients]')?.dataset.samples) >= 5);
    await admin.screenshot({ path: path.join(SCREENSHOTS, 'admin.png'), fullPage: true });
  } finally {
    dancing = false;
    await dance;
  }

  assert.deepEqual(pageErrors, [], 'the pages logged errors');
});

test('a tab shows a toast when another player scores', async () => {
  const page = await newPage();
  await page.goto(`${cluster.masterHttp}/?name=cy`);
  await page.locator('[data-testid=state]', { hasText: 'playing' }).waitFor();
  // Another player, through the SDK, steers to a coin.
  const zed = await within('zed connects', Client.connect({ gate: cluster.masterHttp, channel: 'arena' }));
  try {
    const arena = await within('zed joins', zed.join('arena', { name: 'zed' }));
    const id = await yourPlayer(arena);
    await page.locator('[data-testid=scores] li[data-name="zed"]').waitFor();
    const { data } = await collectCoin(arena, id);
    await page.locator('[data-testid=toast]', { hasText: `zed scored! ${data.scored.score} coin` }).waitFor();
  } finally {
    await zed.close();
  }
  assert.deepEqual(pageErrors, [], 'the page logged errors');
});

test('the dashboard refuses a wrong token', async () => {
  const admin = await newPage();
  await admin.goto(`${cluster.masterHttp}/admin`);
  await admin.locator('input[name=token]').fill('not-the-token-at-all');
  await admin.locator('input[name=token]').press('Enter');
  await admin.waitForURL(/login=failed/);
  assert.match(await admin.locator('body').textContent(), /wrong token/i);
  const status = await admin.evaluate(async () => (await fetch('/status')).status);
  assert.equal(status, 401);
});

test('the lobby: a tab makes a room, another joins it from the list, and both play in it', async () => {
  const [dee, eli] = [await newPage(), await newPage()];
  await dee.goto(`${cluster.masterHttp}/?name=dee`);
  await eli.goto(`${cluster.masterHttp}/?name=eli`);
  for (const page of [dee, eli]) {
    await page.locator('[data-testid=state]', { hasText: 'playing' }).waitFor();
    assert.equal(await page.locator('[data-testid=room]').textContent(), 'arena', 'the static channel first');
  }

  await dee.locator('[data-testid=new-room]').click();
  const here = dee.locator('[data-testid=room][data-room]');
  await here.waitFor();
  const id = await here.getAttribute('data-room');
  assert.match(id, /^match\.[a-z2-7]{12}\.back-1$/);
  assert.equal(new URL(dee.url()).searchParams.get('room'), id, 'the address names the room');
  // Dee plays the room now, alone: the arena's players are not in it.
  await dee.locator('[data-testid=players]', { hasText: /^1$/ }).waitFor();
  await dee.locator('[data-testid=me][data-player]').waitFor();

  // Eli's lobby lists the room (refreshed every second) and joins it.
  const listed = eli.locator(`[data-testid=rooms] li[data-room="${id}"]`);
  await listed.waitFor();
  await listed.locator('[data-testid=join-room]', { hasText: 'Join' }).click();
  await eli.locator(`[data-testid=room][data-room="${id}"]`).waitFor();
  for (const page of [dee, eli]) {
    await page.locator('[data-testid=players]', { hasText: /^2$/ }).waitFor();
    await page.locator('[data-testid=scores] li[data-name="dee"]').waitFor();
    await page.locator('[data-testid=scores] li[data-name="eli"]').waitFor();
    // The listing counts both, and marks the room the tab is in.
    await page.locator(`[data-testid=rooms] li.here[data-room="${id}"][data-clients="2"][data-max="8"]`).waitFor();
  }
  const deeId = await myPlayer(dee);
  const eliId = await myPlayer(eli);
  assert.notEqual(deeId, eliId);
  assert.equal(await idOf(dee, 'eli'), eliId, 'dee\'s tab lists eli\'s player under that id');
  // Eli moves in the room; dee sees it.
  const eliX = (await positionOf(eli, 'eli')).x;
  await moveAndWatch(eli, dee, 'eli', eliX < 32 ? 'ArrowRight' : 'ArrowLeft', 'x', eliX < 32 ? 1 : -1);
  await dee.bringToFront();
  await dee.screenshot({ path: path.join(SCREENSHOTS, 'lobby.png') });

  // Back to the arena: eli leaves the room, which dee sees.
  await eli.locator('[data-testid=to-arena]').click();
  await eli.locator('[data-testid=room]:not([data-room])', { hasText: 'arena' }).waitFor();
  assert.equal(new URL(eli.url()).searchParams.get('room'), null);
  await dee.locator('[data-testid=players]', { hasText: /^1$/ }).waitFor();
  await dee.locator(`[data-testid=rooms] li[data-room="${id}"][data-clients="1"]`).waitFor();
  assert.deepEqual(pageErrors, [], 'the pages logged errors');
});
