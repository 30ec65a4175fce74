// The browser build the master serves (master/web/centrum.js) must be what the sources
// build to today, or the demo would run an older SDK than the one tested here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { BUNDLE, buildBundle } from '../scripts/bundle.js';

test('master/web/centrum.js is a fresh build of the SDK', async () => {
  const committed = readFileSync(BUNDLE, 'utf8');
  const fresh = await buildBundle();
  assert.ok(committed === fresh, 'master/web/centrum.js is stale: run npm run bundle in clients/js');
});
