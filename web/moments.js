// Moments for the audience: a shop's first sale of the event and the
// sale's total passing a milestone. The wasm says what they are
// (`globe.moments_json()`) and where their marks go on screen each frame
// (`globe.moment_marks(t)`); this module words them, keeps the short
// visible feed, and paces what the screen-reader live region says.
//
// Pacing: at the start of a sale thousands of shops sell for the first
// time each second, and even the few a tick the server passes on would
// make a live region unusable. A milestone is announced at once; first
// sales at most once per FIRST_SALE_EVERY_MS, the newest named and the
// rest counted ("and 4 more shops").

import { countryName } from './panels.js';

export const FIRST_SALE_EVERY_MS = 15_000;
/** Items in the visible feed: the newest milestone, and first sales. */
export const FEED_ITEMS = 3;

/** Round milestones read round: "$1M", "$10M", "$1B" (per locale). */
const milestoneFmt = new Intl.NumberFormat(undefined, {
  style: 'currency', currency: 'USD', notation: 'compact', maximumFractionDigits: 0,
});

/** "a shop near Lyon, France" / "a shop in France" / "a shop". */
function shopPhrase(m) {
  const country = m.country ? countryName(m.country) : '';
  if (m.place && country) return `a shop near ${m.place}, ${country}`;
  if (m.place) return `a shop near ${m.place}`;
  if (country) return `a shop in ${country}`;
  return 'a shop';
}

/** One moment in words, for the feed and the live region. */
export function describe(m) {
  if (m.kind === 'milestone') return `${milestoneFmt.format(Math.max(0, m.usd_cents) / 100)} in sales: a new milestone`;
  const phrase = shopPhrase(m);
  return `First sale of the event for ${phrase}`;
}

/** Decides what the live region says, and when. */
export class Announcer {
  constructor(everyMs = FIRST_SALE_EVERY_MS) {
    this.everyMs = everyMs;
    this.lastFirstSaleAt = -Infinity;
    /** First sales not yet said: the newest, and how many came with it. */
    this.waiting = null;
    this.waitingCount = 0;
  }

  /**
   * Takes new moments (oldest first) at `now` (ms); returns the text to
   * announce now, or null.
   */
  take(moments, now) {
    const said = [];
    for (const m of moments) {
      if (m.kind === 'milestone') {
        said.push(describe(m));
      } else {
        this.waiting = m;
        this.waitingCount += 1;
      }
    }
    if (this.waiting && now - this.lastFirstSaleAt >= this.everyMs) {
      const more = this.waitingCount - 1;
      const shops = more === 1 ? 'shop' : 'shops';
      said.push(describe(this.waiting) + (more > 0 ? `, and ${more} more ${shops} made their first sale` : ''));
      this.lastFirstSaleAt = now;
      this.waiting = null;
      this.waitingCount = 0;
    }
    return said.length > 0 ? said.join('. ') + '.' : null;
  }
}

/** Moments in `list` (from `moments_json`) after `seq`, oldest first. */
export function newSince(list, seq) {
  if (!Array.isArray(list)) return [];
  return list.filter((m) => m && Number.isFinite(m.seq) && m.seq > seq);
}
