// Sales per minute over the whole sale, for the strip along the bottom of
// the page.
//
// `History` holds the dense per-minute series: app.js loads it from
// /api/history (on start, after every reconnect, and every few minutes,
// because late orders still change recent minutes) and, between fetches,
// applies the newest minutes of each snapshot onto it, so the bar of the
// minute still filling grows live. `drawTimeline` draws it on a 2D canvas.
// Everything here except the drawing is plain data and is unit-tested in
// e2e/timeline.test.mjs.

export const STEP_MS = 60_000;
/** Most minutes kept: two weeks, far beyond a BFCM weekend. Older minutes
 *  fall off the front, so a kiosk left running stays bounded. */
export const MAX_MINUTES = 14 * 24 * 60;
/** The axis always spans at least this many minutes: early in a sale the
 *  bars fill it from the left instead of a few bars stretching across the
 *  whole strip. */
export const MIN_SPAN_MINUTES = 60;

/** A count from JSON: a finite number >= 0, else 0. */
const count = (v) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0);
const isTime = (v) => typeof v === 'number' && Number.isFinite(v);

export class History {
  constructor() {
    this.revision = 0;
    this.clear();
  }

  clear() {
    this.startMs = null;
    /** Minutes filled with zeros since the last load: ones this page never
     *  saw (a hidden tab, a slow connection, a server catching up). A
     *  non-zero count means the history is worth fetching again soon. */
    this.filled = 0;
    this.stepMs = STEP_MS;
    this.orders = [];
    this.gmv = [];
    this.carbon = [];
    this.changed();
  }

  get length() {
    return this.orders.length;
  }

  /** Start of the newest minute (the one still filling), or null. */
  get lastMs() {
    return this.startMs === null || this.length === 0 ? null : this.startMs + (this.length - 1) * this.stepMs;
  }

  /** End of the newest minute: where a replay stops. */
  get endMs() {
    const last = this.lastMs;
    return last === null ? null : last + this.stepMs;
  }

  changed() {
    this.revision += 1;
    this.prefix = null;
  }

  /**
   * Replaces everything with an /api/history document. Returns false, and
   * keeps what it had, when `doc` is not one (an older server's 404 page
   * parsed by mistake, a proxy's error).
   */
  load(doc) {
    if (!doc || typeof doc !== 'object') return false;
    const step = doc.step_ms;
    if (!(Number.isInteger(step) && step > 0)) return false;
    const { orders, gmv_usd_cents: gmv, carbon_grams: carbon } = doc;
    if (![orders, gmv, carbon].every(Array.isArray)) return false;
    if (doc.start_ms === null || doc.start_ms === undefined) {
      this.clear();
      this.stepMs = step;
      return true;
    }
    if (!isTime(doc.start_ms)) return false;
    const n = Math.min(orders.length, gmv.length, carbon.length);
    const skip = Math.max(0, n - MAX_MINUTES);
    this.stepMs = step;
    this.startMs = doc.start_ms + skip * step;
    this.orders = orders.slice(skip, n).map(count);
    this.gmv = gmv.slice(skip, n).map(count);
    this.carbon = carbon.slice(skip, n).map(count);
    this.filled = 0;
    this.changed();
    return true;
  }

  /**
   * Puts a snapshot's newest minutes ({start_ms, orders, usd_cents,
   * carbon_grams}, any order) in place: a minute already here is replaced,
   * a newer one is appended with zeros for any minutes between (counted in
   * `filled`). Minutes before the start are left to the next full fetch.
   * Returns whether anything changed.
   */
  apply(minutes) {
    if (!Array.isArray(minutes)) return false;
    let changed = false;
    const sorted = minutes.filter((m) => m && isTime(m.start_ms)).sort((a, b) => a.start_ms - b.start_ms);
    for (const m of sorted) {
      if (this.startMs === null) this.startMs = m.start_ms - (m.start_ms % this.stepMs);
      let i = Math.floor((m.start_ms - this.startMs) / this.stepMs);
      if (i < 0) continue;
      if (i - this.length > MAX_MINUTES) {
        // A jump of weeks (a clock set right, a replayed topic): the old
        // series says nothing about the new time, so start over there.
        this.clear();
        this.startMs = m.start_ms - (m.start_ms % this.stepMs);
        i = 0;
      }
      if (i > this.length) this.filled += i - this.length;
      while (this.length < i) {
        this.orders.push(0);
        this.gmv.push(0);
        this.carbon.push(0);
      }
      const [o, g, c] = [count(m.orders), count(m.usd_cents), count(m.carbon_grams)];
      if (this.orders[i] !== o || this.gmv[i] !== g || this.carbon[i] !== c) {
        this.orders[i] = o;
        this.gmv[i] = g;
        this.carbon[i] = c;
        changed = true;
      }
    }
    const over = this.length - MAX_MINUTES;
    if (over > 0) {
      this.orders.splice(0, over);
      this.gmv.splice(0, over);
      this.carbon.splice(0, over);
      this.startMs += over * this.stepMs;
      changed = true;
    }
    if (changed) this.changed();
    return changed;
  }

  /** Orders and sales (US cents) of every minute that started at or before `ms`. */
  cumulativeAt(ms) {
    if (this.startMs === null || !isTime(ms)) return { orders: 0, gmv: 0 };
    if (!this.prefix) {
      const orders = new Float64Array(this.length + 1);
      const gmv = new Float64Array(this.length + 1);
      for (let i = 0; i < this.length; i += 1) {
        orders[i + 1] = orders[i] + this.orders[i];
        gmv[i + 1] = gmv[i] + this.gmv[i];
      }
      this.prefix = { orders, gmv };
    }
    const n = Math.max(0, Math.min(this.length, Math.floor((ms - this.startMs) / this.stepMs) + 1));
    return { orders: this.prefix.orders[n], gmv: this.prefix.gmv[n] };
  }

  /** Index and value of the largest minute, or null when empty. */
  peak(values = this.gmv) {
    let best = null;
    for (let i = 0; i < values.length; i += 1) {
      if (best === null || values[i] > values[best]) best = i;
    }
    return best === null ? null : { index: best, value: values[best], atMs: this.startMs + best * this.stepMs };
  }
}

/**
 * Downsamples `values` to `n` columns: each column holds the largest
 * minute it covers (the largest, not the sum, so a bar's height still
 * reads as "sales in a minute" however long the sale). With fewer values
 * than columns, use one bar per value instead.
 */
export function columns(values, n) {
  const cols = Math.max(0, Math.floor(n));
  const out = new Float64Array(cols);
  const len = values.length;
  if (len === 0 || cols === 0) return out;
  for (let c = 0; c < cols; c += 1) {
    const from = Math.floor((c * len) / cols);
    const to = Math.max(from + 1, Math.floor(((c + 1) * len) / cols));
    let max = 0;
    for (let i = from; i < to && i < len; i += 1) if (values[i] > max) max = values[i];
    out[c] = max;
  }
  return out;
}

const TICK_MINUTES = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880];

/**
 * Axis ticks between `fromMs` and `toMs` for a strip `widthCss` wide: the
 * smallest round interval that keeps labels at least `minGapCss` apart,
 * aligned to the viewer's local clock (`offsetMin` = the Date's
 * getTimezoneOffset(), so 10:00 means 10:00 on the wall).
 */
export function ticks(fromMs, toMs, widthCss, minGapCss = 110, offsetMin = new Date(fromMs).getTimezoneOffset()) {
  const span = toMs - fromMs;
  if (!(span > 0) || !(widthCss > 0)) return { stepMin: 0, at: [] };
  const maxLabels = Math.max(1, Math.floor(widthCss / minGapCss));
  const stepMin = TICK_MINUTES.find((m) => span / (m * 60_000) <= maxLabels) ?? TICK_MINUTES[TICK_MINUTES.length - 1];
  const step = stepMin * 60_000;
  const offset = offsetMin * 60_000;
  const at = [];
  for (let t = Math.ceil((fromMs - offset) / step) * step + offset; t <= toMs; t += step) at.push(t);
  return { stepMin, at };
}

// ---------------------------------------------------------------- drawing

const BAR = ['#2f7bd8', '#6fd3ff'];
const BAR_DIM = 'rgba(111, 182, 255, 0.22)';
const NOW = 'rgba(255, 255, 255, 0.92)';
const CURSOR = '#ffb547';
const AXIS = 'rgba(147, 166, 198, 0.95)';
const GRID = 'rgba(147, 166, 198, 0.16)';

/**
 * Draws `history` on `canvas` (already sized in device pixels; `dpr` is
 * the ratio to CSS pixels, `fontCss` the label size in CSS pixels). `cursorMs`, when not null, is the replay
 * cursor: minutes after it are dimmed. Returns the number of bars drawn.
 */
export function drawTimeline(canvas, history, { dpr = 1, fontCss = 12, cursorMs = null, timeFormat, dayFormat } = {}) {
  const ctx = canvas.getContext('2d');
  if (!ctx) return 0;
  const { width: W, height: H } = canvas;
  ctx.clearRect(0, 0, W, H);
  const n = history.length;
  if (n === 0 || W < 2 || H < 2) return 0;

  const fontPx = Math.round(Math.max(9, fontCss) * dpr);
  const axisH = Math.round(fontPx * 1.5);
  const plotH = H - axisH;
  const values = history.gmv;
  const perPixel = n > W;
  const cols = perPixel ? columns(values, W) : values;
  const m = cols.length;
  let max = 0;
  for (let i = 0; i < m; i += 1) if (cols[i] > max) max = cols[i];
  const scale = max > 0 ? (plotH * 0.92) / max : 0;
  const slots = perPixel ? m : Math.max(m, MIN_SPAN_MINUTES);
  const colW = W / slots;
  const gap = colW >= 4 * dpr ? Math.max(1, Math.round(colW * 0.18)) : 0;
  const spanMs = (perPixel ? n : slots) * history.stepMs;
  const xOf = (ms) => ((ms - history.startMs) / spanMs) * W;

  // Baseline and a faint half-height guide.
  ctx.fillStyle = GRID;
  ctx.fillRect(0, plotH - Math.max(1, dpr), W, Math.max(1, dpr));
  ctx.fillRect(0, Math.round(plotH - (plotH * 0.92) / 2), W, Math.max(1, Math.round(dpr / 2)));

  const cursorX = cursorMs === null ? null : xOf(cursorMs);
  const grad = ctx.createLinearGradient(0, plotH, 0, 0);
  grad.addColorStop(0, BAR[0]);
  grad.addColorStop(1, BAR[1]);
  let drawn = 0;
  for (let i = 0; i < m; i += 1) {
    const h = Math.max(cols[i] > 0 ? Math.max(1, dpr) : 0, cols[i] * scale);
    if (h <= 0) continue;
    const x0 = Math.round(i * colW);
    const x1 = Math.round((i + 1) * colW) - gap;
    const last = i === m - 1;
    const future = cursorX !== null && x0 > cursorX;
    ctx.fillStyle = future ? BAR_DIM : last && cursorX === null ? NOW : grad;
    ctx.fillRect(x0, plotH - h, Math.max(1, x1 - x0), h);
    drawn += 1;
  }

  // The minute still filling: a bright bar, and a line with a dot over
  // it, so "now" is findable even while that bar is still short.
  if (cursorX === null) {
    const x = Math.min(W - dpr, Math.round((m - 0.5) * colW));
    const line = Math.max(1, Math.round(dpr));
    ctx.fillStyle = 'rgba(255, 255, 255, 0.55)';
    ctx.fillRect(x - Math.floor(line / 2), 0, line, plotH);
    ctx.fillStyle = NOW;
    ctx.shadowColor = 'rgba(255, 255, 255, 0.9)';
    ctx.shadowBlur = 8 * dpr;
    const r = 3.5 * dpr;
    ctx.beginPath();
    ctx.arc(Math.min(W - r, x), r + dpr, r, 0, Math.PI * 2);
    ctx.fill();
    ctx.shadowBlur = 0;
  } else {
    ctx.fillStyle = CURSOR;
    ctx.fillRect(Math.round(Math.min(W - 2 * dpr, cursorX)), 0, Math.max(2, Math.round(2 * dpr)), plotH);
  }

  // Time labels under the bars, in the viewer's local time.
  const { stepMin, at } = ticks(history.startMs, history.startMs + spanMs, W / dpr, fontCss * 6.5);
  ctx.font = `600 ${fontPx}px system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif`;
  ctx.textBaseline = 'bottom';
  ctx.fillStyle = AXIS;
  let lastRight = -Infinity;
  for (const t of at) {
    const x = xOf(t);
    const whole = new Date(t);
    const midnight = whole.getHours() === 0 && whole.getMinutes() === 0;
    const format = (stepMin >= 1440 || midnight) && dayFormat ? dayFormat : timeFormat;
    const label = format ? format.format(t) : '';
    const w = ctx.measureText(label).width;
    // Kept inside the strip; a label pushed into its neighbour is left out.
    const lx = Math.max(0, Math.min(W - w, x - w / 2));
    if (lx < lastRight + fontPx) continue;
    lastRight = lx + w;
    ctx.textAlign = 'left';
    ctx.fillRect(Math.round(x), plotH, Math.max(1, dpr), Math.round(fontPx * 0.3));
    ctx.fillText(label, lx, H);
  }
  return drawn;
}
