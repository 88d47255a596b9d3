// Unit tests for the page's moments (no browser): wording and the pacing
// of the screen-reader announcements.
// Usage: node --test e2e/moments.test.mjs
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Announcer, FIRST_SALE_EVERY_MS, describe, newSince } from '../web/moments.js';

const sale = (seq, place, country) => ({ seq, kind: 'first_sale', place, country });
const milestone = (seq, usd_cents) => ({ seq, kind: 'milestone', usd_cents });

test('moments are worded for people', () => {
  assert.match(describe(sale(1, 'Lyon', 'FR')), /^First sale of the event for a shop near Lyon, France$/);
  assert.match(describe(sale(1, '', 'JP')), /a shop in Japan$/);
  assert.match(describe(sale(1, '', '')), /for a shop$/);
  assert.match(describe(milestone(2, 1_000_000_000)), /^\$10M in sales: a new milestone$/);
});

test('milestones are announced at once, first sales at most every 15 s, counted', () => {
  const a = new Announcer();
  assert.equal(a.take([], 0), null);
  assert.match(a.take([sale(1, 'Lyon', 'FR')], 0), /Lyon/);
  // Within the pause: nothing about shops, but a milestone goes out.
  assert.equal(a.take([sale(2, 'Oslo', 'NO')], 1_000), null);
  assert.match(a.take([milestone(3, 100_000_000), sale(4, 'Lima', 'PE')], 2_000), /^\$1M in sales: a new milestone\.$/);
  assert.equal(a.take([sale(5, 'Kyiv', 'UA')], FIRST_SALE_EVERY_MS - 1), null);
  // Then the newest shop, and how many more came meanwhile.
  const said = a.take([], FIRST_SALE_EVERY_MS);
  assert.match(said, /Kyiv, Ukraine, and 2 more shops made their first sale\.$/);
  assert.equal(a.take([], FIRST_SALE_EVERY_MS * 3), null);
});

test('only moments past the cursor are new', () => {
  const list = [sale(3, 'A', 'FR'), sale(4, 'B', 'FR'), { seq: 'x' }, null];
  assert.deepEqual(newSince(list, 3).map((m) => m.seq), [4]);
  assert.deepEqual(newSince('nonsense', 0), []);
});
