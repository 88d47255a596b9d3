// Unit tests for the page's plain-data modules (no browser): the timeline's
// history merging, downsampling and axis ticks, and the panels' formatting.
// Usage: node --test e2e/
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { History, MAX_MINUTES, STEP_MS, columns, ticks } from '../web/timeline.js';
import { change, countryName, flagEmoji, money, amount, splitCategory } from '../web/panels.js';

const T0 = 1_795_788_000_000; // a whole minute
const doc = (orders, start = T0) => ({
  version: 1,
  generated_at: '2026-11-27T10:00:00Z',
  step_ms: STEP_MS,
  start_ms: start,
  orders,
  gmv_usd_cents: orders.map((o) => o * 100),
  carbon_grams: orders.map((o) => o * 10),
});
const minute = (i, orders) => ({ start_ms: T0 + i * STEP_MS, orders, usd_cents: orders * 100, carbon_grams: orders * 10 });

test('loads a history document', () => {
  const h = new History();
  assert.ok(h.load(doc([1, 2, 3])));
  assert.equal(h.length, 3);
  assert.equal(h.startMs, T0);
  assert.equal(h.lastMs, T0 + 2 * STEP_MS);
  assert.equal(h.endMs, T0 + 3 * STEP_MS);
  assert.deepEqual(h.gmv, [100, 200, 300]);
});

test('an empty sale and documents that are not histories', () => {
  const h = new History();
  assert.ok(h.load(doc([5])));
  assert.ok(h.load({ ...doc([]), start_ms: null }));
  assert.equal(h.length, 0);
  assert.equal(h.lastMs, null);
  h.load(doc([5]));
  for (const bad of [null, 'x', {}, { ...doc([1]), step_ms: 0 }, { ...doc([1]), orders: 'no' }, { ...doc([1]), start_ms: 'soon' }]) {
    assert.equal(h.load(bad), false);
    assert.deepEqual(h.orders, [5], 'kept what it had');
  }
  // Ragged arrays are cut to the shortest; junk values count as zero.
  h.load({ ...doc([1, 2, 3]), carbon_grams: [1, 2], orders: [1, -4, 'x'] });
  assert.deepEqual(h.orders, [1, 0]);
});

test('snapshot minutes replace, append and fill gaps with zeros', () => {
  const h = new History();
  h.load(doc([1, 2, 3]));
  const rev = h.revision;
  assert.ok(h.apply([minute(2, 30), minute(1, 20)]));
  assert.deepEqual(h.orders, [1, 20, 30]);
  assert.ok(h.revision > rev);
  assert.equal(h.apply([minute(2, 30)]), false, 'no change, no new revision');
  assert.equal(h.filled, 0);
  h.apply([minute(5, 7)]);
  assert.deepEqual(h.orders, [1, 20, 30, 0, 0, 7]);
  assert.equal(h.filled, 2, 'two minutes this page never saw');
  h.load(doc([1, 2, 3, 4, 5, 6]));
  assert.equal(h.filled, 0, 'a fresh history has no holes');
  // Before the start: left to the next fetch.
  assert.equal(h.apply([minute(-1, 9)]), false);
  assert.equal(h.length, 6);
});

test('minutes alone start a timeline, and a jump of weeks starts over', () => {
  const h = new History();
  h.apply([minute(0, 1), minute(1, 2)]);
  assert.equal(h.startMs, T0);
  assert.deepEqual(h.orders, [1, 2]);
  h.apply([minute(MAX_MINUTES + 10, 4)]);
  assert.equal(h.startMs, T0 + (MAX_MINUTES + 10) * STEP_MS);
  assert.deepEqual(h.orders, [4]);
});

test('the history stays bounded', () => {
  const h = new History();
  h.load(doc(new Array(MAX_MINUTES + 5).fill(1)));
  assert.equal(h.length, MAX_MINUTES);
  assert.equal(h.startMs, T0 + 5 * STEP_MS);
  h.apply([minute(MAX_MINUTES + 5, 9)]);
  assert.equal(h.length, MAX_MINUTES);
  assert.equal(h.orders[h.length - 1], 9);
});

test('cumulative sales at a time and the peak', () => {
  const h = new History();
  h.load(doc([1, 2, 3, 4]));
  assert.deepEqual(h.cumulativeAt(T0 - 1), { orders: 0, gmv: 0 });
  assert.deepEqual(h.cumulativeAt(T0), { orders: 1, gmv: 100 });
  assert.deepEqual(h.cumulativeAt(T0 + 2.5 * STEP_MS), { orders: 6, gmv: 600 });
  assert.deepEqual(h.cumulativeAt(T0 + 99 * STEP_MS), { orders: 10, gmv: 1000 });
  h.apply([minute(3, 10)]);
  assert.equal(h.cumulativeAt(T0 + 99 * STEP_MS).orders, 16, 'recomputed after a change');
  assert.deepEqual(h.peak(), { index: 3, value: 1000, atMs: T0 + 3 * STEP_MS });
});

test('columns keep each column\'s largest minute', () => {
  assert.deepEqual([...columns([1, 5, 2, 8, 3, 1], 3)], [5, 8, 3]);
  assert.deepEqual([...columns([1, 5, 2, 8, 3, 1], 2)], [5, 8]);
  assert.deepEqual([...columns([4], 3)], [4, 4, 4]);
  assert.deepEqual([...columns([], 3)], [0, 0, 0]);
  const many = Array.from({ length: 10_000 }, (_, i) => i % 97);
  const cols = columns(many, 1920);
  assert.equal(cols.length, 1920);
  assert.equal(Math.max(...cols), 96);
});

test('ticks are round, local and far enough apart', () => {
  const from = T0 + 7 * STEP_MS;
  const t = ticks(from, from + 6 * 60 * STEP_MS, 1200, 100, 0);
  assert.equal(t.stepMin, 30);
  assert.ok(t.at.every((ms) => ms % (30 * STEP_MS) === 0));
  assert.ok(t.at[0] >= from);
  // Aligned to the viewer's clock: at UTC-5:30, ticks fall on :00 local.
  const local = ticks(from, from + 6 * 60 * STEP_MS, 600, 100, 330);
  assert.ok(local.at.every((ms) => (ms - 330 * STEP_MS) % (local.stepMin * STEP_MS) === 0));
  assert.deepEqual(ticks(from, from, 600).at, []);
});

test('panel formatting', () => {
  assert.equal(flagEmoji('CA'), '\u{1F1E8}\u{1F1E6}');
  assert.equal(flagEmoji('ca'), '');
  assert.equal(flagEmoji('XYZ'), '');
  assert.equal(countryName('DE'), 'Germany');
  assert.equal(countryName(''), '?');
  assert.deepEqual(splitCategory('Apparel & Accessories > Shoes'), { leaf: 'Shoes', parent: 'Apparel & Accessories' });
  assert.deepEqual(splitCategory('Toys'), { leaf: 'Toys', parent: '' });
  // Node's default locale in CI is en-US; the page uses the viewer's.
  assert.equal(change(0.48), '+48%');
  assert.equal(change(-0.12), '-12%');
  assert.equal(change(0.034), '+3.4%');
  assert.equal(change(0), '0%');
  assert.equal(money(123_456), '$1,234');
  assert.equal(money(123_456_789), '$1.2M');
  assert.equal(amount(99_999), '99,999');
  assert.equal(amount(1_234_567), '1.2M');
});
