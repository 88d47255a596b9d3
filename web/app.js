// Live sales map page: loads the Rust/wasm globe, feeds it snapshots, and
// keeps the counters, the panels (panels.js), the timeline (timeline.js)
// and the connection indicator current.
//
// Transport: a WebSocket to /ws (one binary FlatBuffers frame per message:
// a keyframe with everything every few seconds, deltas between). It
// reconnects with exponential backoff plus jitter (and, when the server
// says it is restarting, after a random pause of up to five seconds); if it
// fails before opening twice in a row, the page long-polls
// /api/poll?v=<version>&k=<keyframe version> instead (200: the same frames,
// 204: nothing new yet, 503: come back after Retry-After) and retries the
// WebSocket every minute or so, switching back when it opens.
//
// The panels' lists come from the wasm (`globe.board_json()`), re-read only
// when `globe.board_version()` moves and at most a few times a second. The
// timeline's per-minute history is JSON from /api/history, fetched here on
// start, after every reconnect and every few minutes; between fetches the
// newest minutes of each snapshot (from the board) are applied onto it.
//
// For tests and operators: document.body.dataset.transport is
// "connecting" | "ws" | "longpoll"; window.livemap = { version, frames,
// transport, stale, arcs, panels: { trends, countries, channels, shops,
// cities, minutes }, timeline: { bars, historyLoads, replays } } is kept
// current (replays: replays that reached now);
// each counter element carries data-value, the number it shows in the unit
// of data-unit (sales: whole US dollars; carbon: kg, even when shown in
// tonnes). `?kiosk=1` is for unattended screens: no controls, no cursor.
// `?bench=N` draws N made-up arcs in flight (and 2,000 rings) and connects
// to nothing, so that a harness measures the renderer alone
// (bench/renderer/); window.livemap.firstFrameMs is when the first frame
// was drawn, in ms since navigation started; quality is the renderer's
// quality tier, wasmBytes the size of its memory, flat is true where
// there is no WebGL2 and a flat map is drawn instead, contextLosses and
// contextRestores count lost WebGL contexts and rebuilt globes, and
// wsAttempts counts WebSocket connections tried. For profiling the renderer:
// `?aa=1` turns multisampling on (the shaders smooth their own edges), `?layers=N` draws only the layers whose
// bits are set in N (see Globe.set_layers).
//
// The wasm never touches the network: this file fetches, the globe gets bytes.

import { fmt, money, panelElements, renderBoard } from './panels.js';
import { History, drawTimeline } from './timeline.js';
import { Announcer, FEED_ITEMS, describe, newSince } from './moments.js';

const WS_URL = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
const POLL_URL = '/api/poll';
/// A server that is restarting (WebSocket close 1012, or 503) is rejoined
/// after a random pause of up to this, so that its viewers come back spread
/// out rather than in one wave.
const RESTART_SPREAD_MS = 5_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30_000;
const WS_PROBE_EVERY_MS = 60_000;
/// An open socket that has said nothing for this long is presumed dead.
const WS_SILENCE_MS = 30_000;
/// A socket that has not opened after this long is given up (a link that
/// swallows the handshake never fails it by itself).
const WS_CONNECT_TIMEOUT_MS = 10_000;
/// No snapshot for this long: show the data as stale.
const QUIET_STALE_MS = 15_000;
const POLL_TIMEOUT_MS = 90_000;
const HISTORY_URL = '/api/history';
/// Late orders still change recent minutes, so the history is re-read this often.
const HISTORY_EVERY_MS = 5 * 60_000;
const HISTORY_RETRY_MS = 30_000;
/// A history with holes (minutes this page missed) is re-read, but at most this often.
const HISTORY_GAP_REFETCH_MS = 15_000;
/// Panels and the timeline redraw at most this often while live.
const PANELS_EVERY_MS = 400;

const $ = (id) => document.getElementById(id);

const state = {
  version: 0,
  frames: 0,
  transport: 'connecting',
  stale: false,
  arcs: 0,
  panels: { trends: 0, countries: 0, channels: 0, shops: 0, cities: 0, minutes: 0 },
  timeline: { bars: 0, historyLoads: 0, replays: 0 },
  firstFrameMs: 0,
  quality: 0,
  wasmBytes: 0,
  flat: false,
  contextLosses: 0,
  contextRestores: 0,
  wsAttempts: 0,
  moments: { marks: 0, firstSales: 0, milestones: 0, announced: 0, lastAnnouncement: '', alerts: '' },
};
window.livemap = state;

const params = new URLSearchParams(location.search);
const kiosk = params.get('kiosk') === '1';
if (kiosk) {
  document.body.classList.add('kiosk');
  // Browsers go fullscreen only on a person's gesture: the first tap or
  // key on a kiosk does it (a kiosk browser started with --kiosk already is).
  const goFullscreen = () => {
    if (!document.fullscreenElement) document.documentElement.requestFullscreen?.().catch(() => {});
  };
  window.addEventListener('pointerdown', goFullscreen, { once: true });
  window.addEventListener('keydown', goFullscreen, { once: true });
}
const benchArcs = Math.max(0, Math.min(100_000, Number.parseInt(params.get('bench') ?? '', 10) || 0));
const antialias = params.get('aa') === '1';
const onlyLayers = params.has('layers') ? Number(params.get('layers')) : null;
const trailSegments = params.has('segments') ? Number(params.get('segments')) : null;
// `?quality=N` fixes the renderer's quality tier (0 best .. 4); by default
// it follows the frame rate.
const fixedQuality = params.has('quality') ? Number(params.get('quality')) : null;
const reducedMotion = window.matchMedia?.('(prefers-reduced-motion: reduce)');
// The night side of the globe is shaded from the viewer's clock;
// `?night=0` keeps it day everywhere.
const dayNight = params.get('night') !== '0';
/// Screen readers hear the totals this often, not at every tick.
const SUMMARY_EVERY_MS = 60_000;

const net = {
  ws: null,
  failStreak: 0, // WebSocket attempts in a row that never opened
  attempt: 0, // for backoff
  everOpened: false,
  reconnectTimer: 0,
  probeTimer: 0,
  pollGen: 0, // bumps to stop a long-poll loop
  pollAbort: null,
  pollFailing: false,
  lastDataAt: 0,
};

let globe = null;
let wasm = null;
let wasmMemory = null; // the wasm's linear memory, for window.livemap.wasmBytes
let lastSnapshot = null; // the latest good bytes, replayed into a rebuilt globe

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Exponential backoff with "equal jitter": half fixed, half random. */
function backoff(n) {
  const base = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(n, 16));
  return base / 2 + Math.random() * (base / 2);
}

// ---------------------------------------------------------------- status

const statusEl = $('status');
const statusLabel = statusEl.querySelector('.status-label');

function setTransport(t) {
  state.transport = t;
  document.body.dataset.transport = t;
  renderStatus();
}

function renderStatus() {
  const quiet = net.lastDataAt > 0 && performance.now() - net.lastDataAt > QUIET_STALE_MS;
  let key;
  let label;
  if (state.stale || (quiet && state.transport !== 'connecting')) {
    [key, label] = ['stale', 'Stale data'];
  } else if (state.transport === 'ws') {
    [key, label] = ['live', 'Live'];
  } else if (state.transport === 'longpoll') {
    [key, label] = net.pollFailing ? ['reconnecting', 'Reconnecting'] : ['longpoll', 'Live · long-poll'];
  } else if (net.everOpened || net.failStreak > 0) {
    [key, label] = ['reconnecting', 'Reconnecting'];
  } else {
    [key, label] = ['connecting', 'Connecting'];
  }
  if (statusEl.dataset.state !== key) statusEl.dataset.state = key;
  if (statusLabel.textContent !== label) statusLabel.textContent = label;
}

function showMessage(text, err) {
  const el = $('message');
  el.textContent = text;
  el.hidden = false;
  if (err) console.error(text, err);
}

// ---------------------------------------------------------------- snapshots

/** Hands one snapshot to the globe. Returns whether it was new. */
function ingest(bytes) {
  if (!globe) return false;
  let fresh = false;
  try {
    fresh = globe.ingest(bytes, performance.now());
  } catch (e) {
    console.warn('ignoring a snapshot that does not decode:', e);
    return false;
  }
  lastSnapshot = bytes;
  net.lastDataAt = performance.now();
  state.version = globe.version();
  state.stale = globe.stale();
  renderStatus();
  renderViewers(globe.viewers());
  renderAlerts(globe.alerts());
  return fresh;
}

const viewersEl = $('viewers');
const viewersCount = viewersEl.querySelector('.viewers-count');

/** "N watching now": the browsers on this server, this one included. */
function renderViewers(n) {
  if (!(n >= 1)) return;
  const text = fmt0.format(n);
  if (viewersCount.textContent !== text) viewersCount.textContent = text;
  if (viewersEl.hidden) viewersEl.hidden = false;
}

// ---------------------------------------------------------------- moments

const marksEl = $('moment-marks');
const momentsEl = $('moments');
const srMomentsEl = $('sr-moments');
const alertEl = $('alert');
/** Mark elements, reused frame to frame (at most the wasm's MAX_MARKS). */
const markPool = [];
const MARK_PX = 56;
/** The milestone mark's ring sits at this share of its box's radius
 *  (style.css). */
const RING_AT = 0.92;
const announcer = new Announcer();
let momentsSeen = 0;

const ALERT_TEXT = {
  orders_per_minute: 'Orders per minute are well below what this sale expects',
  sales_per_minute: 'Sales per minute are well below what this sale expects',
};

/** The anomaly flags, where the operator shows them (`--public-anomalies`). */
function renderAlerts(csv) {
  if (csv === state.moments.alerts) return;
  state.moments.alerts = csv;
  const flagged = csv.split(',').filter(Boolean);
  const both = flagged.includes('orders_per_minute') && flagged.includes('sales_per_minute');
  const text = both
    ? 'Orders and sales per minute are well below what this sale expects'
    : flagged.map((a) => ALERT_TEXT[a] ?? a).join('. ');
  alertEl.textContent = text;
  alertEl.hidden = text === '';
}

/** The flat map's marks (x, y from 0 to 1, age, kind) in the globe's form
 *  (x, y in CSS pixels, age, kind, a milestone's radius): the map is the
 *  largest 2:1 rectangle in the slot, as drawFlat draws it. */
function flatMarks(flat) {
  const slot = slotEl.getBoundingClientRect();
  const mw = Math.min(slot.width, slot.height * 2);
  const mx = slot.left + slot.width / 2 - mw / 2;
  const my = slot.top + slot.height / 2 - mw / 4;
  const out = new Float32Array((flat.length / 4) * 5);
  for (let i = 0, j = 0; i + 3 < flat.length; i += 4, j += 5) {
    out[j] = mx + flat[i] * mw;
    out[j + 1] = my + flat[i + 1] * (mw / 2);
    out[j + 2] = flat[i + 2];
    out[j + 3] = flat[i + 3];
    out[j + 4] = mw / 4;
  }
  return out;
}

/** Places the moments' marks over the globe, and words new moments for
 *  the feed and (paced) for the live region. */
function updateMoments(now) {
  const marks = state.flat ? flatMarks(globe.flat_moment_marks(now)) : globe.moment_marks(now);
  const n = Math.floor(marks.length / 5);
  while (markPool.length < n) {
    const el = document.createElement('div');
    el.className = 'moment-mark';
    marksEl.append(el);
    markPool.push(el);
  }
  const still = Boolean(reducedMotion?.matches);
  for (let i = 0; i < markPool.length; i++) {
    const el = markPool[i];
    if (i >= n) {
      if (!el.hidden) el.hidden = true;
      continue;
    }
    const [x, y, age, kind, size] = marks.subarray(i * 5, i * 5 + 5);
    const milestone = kind === 1;
    const grow = still ? 1 : milestone ? 0.92 + 0.2 * age : 0.4 + 1.6 * age;
    const scale = milestone ? (size / (RING_AT * MARK_PX / 2)) * grow : grow;
    el.hidden = false;
    el.classList.toggle('milestone', milestone);
    el.style.transform = `translate(${x.toFixed(1)}px, ${y.toFixed(1)}px) scale(${scale.toFixed(3)})`;
    el.style.opacity = (1 - age).toFixed(3);
  }
  state.moments.marks = n;
  let fresh = [];
  const seq = globe.moments_seq();
  if (seq !== momentsSeen) {
    try {
      fresh = newSince(JSON.parse(globe.moments_json()), momentsSeen);
    } catch (e) {
      console.warn('unreadable moments:', e);
    }
    momentsSeen = seq;
    // The newest milestone stays on top; first sales come and go below.
    for (const m of fresh) {
      const li = document.createElement('li');
      li.textContent = `${m.kind === 'milestone' ? '★' : '✦'} ${describe(m)}`;
      const pinned = momentsEl.querySelector('li.milestone');
      if (m.kind === 'milestone') {
        li.className = 'milestone';
        pinned?.remove();
        momentsEl.prepend(li);
        state.moments.milestones += 1;
      } else {
        if (pinned) pinned.after(li);
        else momentsEl.prepend(li);
        const sales = momentsEl.querySelectorAll('li:not(.milestone)');
        for (let i = FEED_ITEMS - 1; i < sales.length; i++) sales[i].remove();
        state.moments.firstSales += 1;
      }
    }
  }
  const said = announcer.take(fresh, now);
  if (said) {
    setText(srMomentsEl, said);
    state.moments.announced += 1;
    state.moments.lastAnnouncement = said;
  }
}

// ---------------------------------------------------------------- WebSocket

/** Opens a WebSocket. A probe (from long-poll) failing changes nothing. */
function connectWs(probe = false) {
  clearTimeout(net.reconnectTimer);
  if (net.ws) return;
  let ws;
  try {
    ws = new WebSocket(WS_URL);
  } catch (e) {
    wsFailed(probe);
    return;
  }
  ws.binaryType = 'arraybuffer';
  net.ws = ws;
  state.wsAttempts += 1;
  let opened = false;
  const giveUp = setTimeout(() => {
    if (!opened && net.ws === ws) {
      abandonWs(ws);
      wsFailed(probe);
    }
  }, WS_CONNECT_TIMEOUT_MS);
  ws.onopen = () => {
    clearTimeout(giveUp);
    opened = true;
    net.everOpened = true;
    net.failStreak = 0;
    net.attempt = 0;
    net.lastDataAt = performance.now();
    stopLongPoll();
    setTransport('ws');
    // Whatever happened while the connection was down is in the history.
    loadHistory();
  };
  ws.onmessage = (ev) => {
    if (ev.data instanceof ArrayBuffer) ingest(new Uint8Array(ev.data));
  };
  ws.onerror = () => {}; // a close event always follows
  ws.onclose = (ev) => {
    clearTimeout(giveUp);
    if (net.ws === ws) net.ws = null;
    if (opened) {
      if (state.transport === 'ws') reconnectWs(ev.code === 1012 ? 500 + Math.random() * RESTART_SPREAD_MS : 0);
    } else {
      wsFailed(probe);
    }
  };
}

/** Drops a socket without waiting for its close, which a dead link never
 *  completes. */
function abandonWs(ws) {
  if (net.ws === ws) net.ws = null;
  ws.onopen = ws.onmessage = ws.onclose = null;
  try {
    ws.close();
  } catch {
    /* already closed */
  }
}

function wsFailed(probe) {
  net.ws = null;
  if (probe || state.transport === 'longpoll') {
    scheduleProbe();
    return;
  }
  net.failStreak += 1;
  if (net.failStreak >= 2) startLongPoll();
  else reconnectWs();
}

/** Reconnects after the backoff, or after `delay` ms if that is longer. */
function reconnectWs(delay = 0) {
  setTransport('connecting');
  clearTimeout(net.reconnectTimer);
  net.reconnectTimer = setTimeout(() => connectWs(false), Math.max(delay, backoff(net.attempt++)));
}

function scheduleProbe() {
  clearTimeout(net.probeTimer);
  const delay = WS_PROBE_EVERY_MS * (0.75 + Math.random() * 0.5);
  net.probeTimer = setTimeout(() => {
    if (state.transport === 'longpoll') connectWs(true);
  }, delay);
}

// ---------------------------------------------------------------- long-poll

function startLongPoll() {
  if (state.transport === 'longpoll') return;
  clearTimeout(net.reconnectTimer);
  setTransport('longpoll');
  loadHistory();
  pollLoop(++net.pollGen);
  scheduleProbe();
}

function stopLongPoll() {
  net.pollGen += 1;
  net.pollAbort?.abort();
  net.pollAbort = null;
  net.pollFailing = false;
  clearTimeout(net.probeTimer);
}

async function pollLoop(gen) {
  let failures = 0;
  while (gen === net.pollGen) {
    const ctl = new AbortController();
    net.pollAbort = ctl;
    const timeout = setTimeout(() => ctl.abort(), POLL_TIMEOUT_MS);
    try {
      // v: the last version seen; k: the last keyframe (the server sends
      // the lists only when they are newer than k).
      const k = globe ? globe.keyframe_version() : 0;
      const res = await fetch(`${POLL_URL}?v=${encodeURIComponent(state.version)}&k=${encodeURIComponent(k)}`, {
        cache: 'no-store',
        signal: ctl.signal,
      });
      if (res.status === 200) {
        const bytes = new Uint8Array(await res.arrayBuffer());
        if (gen !== net.pollGen) break;
        const fresh = ingest(bytes);
        // An answer that brings nothing new must not become a busy loop.
        if (!fresh) await sleep(1_000);
      } else if (res.status === 503 || res.status === 429) {
        // Restarting or full: come back after the server's Retry-After,
        // spread out.
        const after = Number(res.headers.get('retry-after')) || 5;
        throw Object.assign(new Error(`HTTP ${res.status}`), { pauseMs: after * 1000 * (0.5 + Math.random()) });
      } else if (res.status !== 204) {
        throw new Error(`HTTP ${res.status}`);
      }
      failures = 0;
      if (net.pollFailing) {
        net.pollFailing = false;
        renderStatus();
        loadHistory();
      }
    } catch (e) {
      if (gen !== net.pollGen) break;
      failures += 1;
      net.pollFailing = true;
      renderStatus();
      await sleep(Math.max(e.pauseMs ?? 0, backoff(failures - 1)));
    } finally {
      clearTimeout(timeout);
    }
  }
}

// ---------------------------------------------------------------- counters

const fmt0 = fmt.count;
const fmt1 = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const counterEls = {
  sales: $('sales'),
  opm: $('opm'),
  shoppers: $('shoppers'),
  carbon: $('carbon'),
};

function formatCarbon(kg) {
  if (kg < 10_000) return `${fmt0.format(kg)} kg`;
  const t = kg / 1000;
  return `${t < 1000 ? fmt1.format(t) : fmt0.format(t)} t`;
}

/** Updates a counter element; returns whether anything changed. The
 *  text's length goes to CSS (--chars), which shrinks the type to keep a
 *  long number inside its column (style.css, .value). */
function setCounter(el, value, text) {
  const v = String(value);
  if (el.dataset.value === v) return false;
  el.dataset.value = v;
  el.textContent = text;
  const chars = String(text.length);
  if (el.style.getPropertyValue('--chars') !== chars) el.style.setProperty('--chars', chars);
  return true;
}

function updateCounters(now) {
  const c = globe.counters(now);
  const dollars = Math.floor(c[0] / 100);
  const opm = Math.round(c[1]);
  const shoppers = Math.floor(c[2]);
  const kg = Math.floor(c[3]);
  const sales = fmt.usd.format(dollars);
  setCounter(counterEls.sales, dollars, sales);
  setCounter(counterEls.opm, opm, fmt0.format(opm));
  setCounter(counterEls.shoppers, shoppers, fmt0.format(shoppers));
  setCounter(counterEls.carbon, kg, formatCarbon(kg));
  if (state.version > 0 && now - summaryAt > SUMMARY_EVERY_MS) {
    summaryAt = now;
    setText(summaryEl, `Total sales ${sales}. ${fmt0.format(opm)} orders per minute. ${fmt0.format(shoppers)} unique shoppers. ${formatCarbon(kg)} of carbon offset.`);
  }
}

const summaryEl = $('sr-summary');
let summaryAt = -Infinity;

// ---------------------------------------------------------------- panels

const panelEls = panelElements();
let boardSeen = -1;
let panelsAt = -Infinity;

/** Re-reads the board when it moved; at most every PANELS_EVERY_MS. */
function updatePanels(now) {
  const v = globe.board_version();
  if (v === boardSeen || now - panelsAt < PANELS_EVERY_MS) return;
  let board;
  try {
    board = JSON.parse(globe.board_json());
  } catch (e) {
    console.warn('unreadable board:', e);
    boardSeen = v;
    return;
  }
  boardSeen = v;
  panelsAt = now;
  latestMinutes = Array.isArray(board.minutes) ? board.minutes : [];
  history.apply(latestMinutes);
  // Minutes this page missed were filled with zeros: the server has them.
  if (history.filled > 0 && historyNet.failures === 0 && now - historyNet.startedAt > HISTORY_GAP_REFETCH_MS) loadHistory();
  Object.assign(state.panels, renderBoard(panelEls, board), { minutes: history.length });
}

// ---------------------------------------------------------------- timeline

const history = new History();
let latestMinutes = [];
const historyNet = { inflight: false, timer: 0, failures: 0, startedAt: -Infinity };

/** Fetches the whole sale's minutes; on failure tries again later. */
async function loadHistory() {
  if (historyNet.inflight) return;
  historyNet.inflight = true;
  historyNet.startedAt = performance.now();
  clearTimeout(historyNet.timer);
  let next = HISTORY_EVERY_MS * (0.9 + Math.random() * 0.2);
  try {
    const res = await fetch(HISTORY_URL, { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    if (!history.load(await res.json())) throw new Error('not a history document');
    // The snapshot may be newer than the history: its minutes win.
    history.apply(latestMinutes);
    historyNet.failures = 0;
    state.timeline.historyLoads += 1;
    state.panels.minutes = history.length;
  } catch (e) {
    // Until it loads, the timeline grows from the snapshots' minutes.
    historyNet.failures += 1;
    next = Math.min(HISTORY_EVERY_MS, HISTORY_RETRY_MS * 2 ** Math.min(historyNet.failures - 1, 4));
    if (historyNet.failures === 1) console.warn('history unavailable:', e);
  } finally {
    historyNet.inflight = false;
    historyNet.timer = setTimeout(loadHistory, next);
  }
}

const timelineCanvas = $('timeline');
const readoutEl = $('timeline-readout');
const replayBtn = $('replay');
const speedSel = $('replay-speed');
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'short', hour: 'numeric' });
const cursorFormat = new Intl.DateTimeFormat(undefined, { weekday: 'short', hour: 'numeric', minute: '2-digit' });
const timelineDrawn = { revision: -1, dirty: true, at: -Infinity, labelAt: -Infinity };
new ResizeObserver(() => {
  timelineDrawn.dirty = true;
}).observe(timelineCanvas);
const replay = { on: false, cursorMs: 0, lastT: 0 };

let timelineFontCss = 12;

function sizeTimeline() {
  if (timelineDrawn.dirty) timelineFontCss = parseFloat(getComputedStyle(timelineCanvas).fontSize) || 12;
  const r = timelineCanvas.getBoundingClientRect();
  const dpr = Math.min(2, window.devicePixelRatio || 1);
  const w = Math.max(1, Math.round(r.width * dpr));
  const h = Math.max(1, Math.round(r.height * dpr));
  if (timelineCanvas.width !== w) timelineCanvas.width = w;
  if (timelineCanvas.height !== h) timelineCanvas.height = h;
  return dpr;
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function updateTimeline(now) {
  if (replay.on) {
    replay.cursorMs += Number(speedSel.value) * ((now - replay.lastT) / 1000);
    replay.lastT = now;
    if (history.endMs === null || replay.cursorMs >= history.endMs) {
      state.timeline.replays += 1;
      stopReplay();
    }
  } else if (!timelineDrawn.dirty && (history.revision === timelineDrawn.revision || now - timelineDrawn.at < PANELS_EVERY_MS)) {
    return;
  }
  const dpr = sizeTimeline();
  const cursorMs = replay.on ? replay.cursorMs : null;
  state.timeline.bars = drawTimeline(timelineCanvas, history, {
    dpr,
    fontCss: timelineFontCss,
    cursorMs,
    timeFormat,
    dayFormat,
  });
  Object.assign(timelineDrawn, { revision: history.revision, dirty: false, at: now });

  const n = history.length;
  if (replay.on) {
    const c = history.cumulativeAt(replay.cursorMs);
    setText(readoutEl, `${cursorFormat.format(replay.cursorMs)} · ${fmt.usd.format(Math.floor(c.gmv / 100))} · ${fmt.count.format(c.orders)} orders`);
  } else if (n > 0) {
    setText(readoutEl, `This minute ${money(history.gmv[n - 1])}`);
  } else {
    setText(readoutEl, '');
  }
  // Screen readers get the gist of the picture, refreshed now and then.
  if (n > 0 && now - timelineDrawn.labelAt > 10_000) {
    timelineDrawn.labelAt = now;
    const peak = history.peak();
    const label =
      `Sales per minute from ${timeFormat.format(history.startMs)} to ${timeFormat.format(history.lastMs)}.` +
      (peak ? ` Peak ${money(peak.value)} at ${timeFormat.format(peak.atMs)}.` : '') +
      ` This minute so far ${money(history.gmv[n - 1])}.`;
    timelineCanvas.setAttribute('aria-label', label);
  }
}

function startReplay() {
  if (history.length === 0) return;
  replay.on = true;
  replay.cursorMs = history.startMs;
  replay.lastT = performance.now();
  document.body.classList.add('replaying');
  replayBtn.setAttribute('aria-pressed', 'true');
  replayBtn.textContent = 'Back to live';
}

/** The cursor reached now (or the viewer stopped it): back to live. */
function stopReplay() {
  replay.on = false;
  document.body.classList.remove('replaying');
  replayBtn.setAttribute('aria-pressed', 'false');
  replayBtn.textContent = 'Replay';
  timelineDrawn.dirty = true;
}

replayBtn.addEventListener('click', () => (replay.on ? stopReplay() : startReplay()));

// ---------------------------------------------------------------- rendering

let canvas = $('globe');
let resizeObserver = null;
let raf = 0;
let sized = { w: 0, h: 0, dpr: 0 };

function resize() {
  if (!globe) return;
  const r = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  if (r.width !== sized.w || r.height !== sized.h || dpr !== sized.dpr) {
    sized = { w: r.width, h: r.height, dpr };
    globe.resize(r.width, r.height, dpr);
  }
  placeGlobe();
}

const slotEl = $('globe-slot');

/** Centres the globe in the room the panels leave (the page's layout
 *  decides where that is, per screen). */
function placeGlobe() {
  const c = canvas.getBoundingClientRect();
  const s = slotEl.getBoundingClientRect();
  globe.set_globe_slot(s.left - c.left, s.top - c.top, s.width, s.height);
}

// ---------------------------------------------------------------- flat map

/** The 2D fallback: land dots (drawn once per size) and the arcs in
 *  flight, on an equirectangular map fitted into the globe's room. */
const flatMap = { canvas: $('flat'), land: null, landImage: null, key: '' };

function drawFlat(now) {
  const c = flatMap.canvas;
  const dpr = Math.min(2, window.devicePixelRatio || 1);
  const w = Math.round(c.clientWidth * dpr);
  const h = Math.round(c.clientHeight * dpr);
  if (c.width !== w) c.width = w;
  if (c.height !== h) c.height = h;
  const slot = slotEl.getBoundingClientRect();
  // The largest 2:1 rectangle in the slot, centred.
  const mw = Math.min(slot.width, slot.height * 2) * dpr;
  const mh = mw / 2;
  const mx = (slot.left + slot.width / 2) * dpr - mw / 2;
  const my = (slot.top + slot.height / 2) * dpr - mh / 2;
  const key = `${w}x${h}:${mx},${my},${mw}`;
  if (flatMap.key !== key) {
    flatMap.key = key;
    // A plain canvas, not an OffscreenCanvas: the browsers that need this
    // map (no WebGL2) are often too old to have one.
    const img = document.createElement('canvas');
    img.width = Math.max(1, w);
    img.height = Math.max(1, h);
    const g = img.getContext('2d');
    g.fillStyle = 'rgba(120, 160, 220, 0.55)';
    const r = Math.max(1, mw / 700);
    const land = flatMap.land ?? [];
    for (let i = 0; i < land.length; i += 2) g.fillRect(mx + land[i] * mw - r / 2, my + land[i + 1] * mh - r / 2, r, r);
    flatMap.landImage = img;
  }
  const ctx = c.getContext('2d');
  ctx.clearRect(0, 0, w, h);
  ctx.drawImage(flatMap.landImage, 0, 0);
  ctx.globalCompositeOperation = 'lighter';
  ctx.lineWidth = Math.max(1, 1.5 * dpr);
  ctx.lineCap = 'round';
  const a = globe.flat_arcs(now);
  for (let i = 0; i < a.length; ) {
    const n = a[i];
    const rgb = `${Math.round(a[i + 1] * 255)}, ${Math.round(a[i + 2] * 255)}, ${Math.round(a[i + 3] * 255)}`;
    ctx.strokeStyle = `rgba(${rgb}, ${a[i + 4]})`;
    ctx.beginPath();
    for (let k = 0; k < n; k++) {
      const x = mx + a[i + 5 + 2 * k] * mw;
      const y = my + a[i + 6 + 2 * k] * mh;
      if (k === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    }
    ctx.stroke();
    i += 5 + 2 * n;
  }
  ctx.globalCompositeOperation = 'source-over';
}

function frame(t) {
  raf = 0;
  if (document.hidden || !globe) return;
  if ((window.devicePixelRatio || 1) !== sized.dpr) resize();
  if (dayNight) globe.set_clock(Date.now());
  globe.frame(t);
  if (state.flat) drawFlat(t);
  if (!state.firstFrameMs) state.firstFrameMs = performance.now();
  state.quality = globe.quality();
  state.wasmBytes = wasmMemory?.buffer.byteLength ?? 0;
  updateCounters(t);
  updatePanels(t);
  updateTimeline(t);
  updateMoments(t);
  state.frames += 1;
  state.arcs = globe.active_arcs();
  raf = requestAnimationFrame(frame);
}

function startRendering() {
  if (!raf && !document.hidden && globe) raf = requestAnimationFrame(frame);
}

document.addEventListener('visibilitychange', () => {
  if (document.hidden) {
    cancelAnimationFrame(raf);
    raf = 0;
  } else {
    startRendering();
  }
});

function wirePointer() {
  const now = (e) => e.timeStamp || performance.now();
  canvas.addEventListener('pointerdown', (e) => {
    if (!globe || (e.pointerType === 'mouse' && e.button !== 0)) return;
    canvas.setPointerCapture?.(e.pointerId);
    globe.pointer_down(e.clientX, e.clientY, now(e));
  });
  canvas.addEventListener('pointermove', (e) => {
    if (globe && canvas.hasPointerCapture?.(e.pointerId)) globe.pointer_move(e.clientX, e.clientY, now(e));
  });
  const end = (e) => globe?.pointer_up(now(e));
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  canvas.addEventListener('lostpointercapture', end);
}

/** What the page's parameters and the viewer's settings ask of a globe. */
function configureGlobe(g) {
  if (fixedQuality !== null) g.set_quality(fixedQuality);
  if (onlyLayers !== null) g.set_layers(onlyLayers);
  if (trailSegments !== null) g.set_trail_segments(trailSegments);
  g.set_reduced_motion(Boolean(reducedMotion?.matches));
}

reducedMotion?.addEventListener?.('change', () => globe?.set_reduced_motion(reducedMotion.matches));

/** A lost WebGL context (a driver reset, days into a kiosk run) gets a
 *  new globe. Frames go on meanwhile (the renderer draws nothing while its
 *  context is lost), so the counters and panels stay live. A context the
 *  browser does not give back within CONTEXT_RESTORE_WAIT_MS is replaced
 *  with a fresh canvas. */
const CONTEXT_RESTORE_WAIT_MS = 10_000;

function wireContextLoss(el) {
  let giveUp = 0;
  el.addEventListener('webglcontextlost', (e) => {
    e.preventDefault();
    state.contextLosses += 1;
    clearTimeout(giveUp);
    giveUp = setTimeout(() => {
      const fresh = el.cloneNode(false);
      el.replaceWith(fresh);
      canvas = fresh;
      resizeObserver?.observe(fresh);
      wirePointer();
      wireContextLoss(fresh);
      rebuildGlobe();
    }, CONTEXT_RESTORE_WAIT_MS);
  });
  el.addEventListener('webglcontextrestored', () => {
    clearTimeout(giveUp);
    if (el === canvas) rebuildGlobe();
  });
}

/** A new Globe on `canvas`, fed the last snapshot; reloads if that fails. */
function rebuildGlobe() {
  try {
    const fresh = new wasm.Globe(canvas, antialias);
    configureGlobe(fresh);
    globe.free();
    globe = fresh;
    sized = { w: 0, h: 0, dpr: 0 };
    resize();
    if (lastSnapshot) ingest(lastSnapshot);
    state.contextRestores += 1;
    startRendering();
  } catch (e) {
    location.reload();
  }
}

// ---------------------------------------------------------------- kiosk care

/** Hide the cursor when idle, and nudge the overlay a few pixels every few
 *  minutes so static text does not burn into a TV left on for days. */
function kioskCare() {
  let idleTimer = 0;
  const wake = () => {
    document.body.classList.remove('idle');
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => document.body.classList.add('idle'), 3_000);
  };
  window.addEventListener('pointermove', wake, { passive: true });
  wake();
  setInterval(() => {
    const px = () => `${Math.round(Math.random() * 8 - 4)}px`;
    document.documentElement.style.setProperty('--shift-x', px());
    document.documentElement.style.setProperty('--shift-y', px());
  }, 180_000);
}

function watchdog() {
  setInterval(() => {
    const silent = performance.now() - net.lastDataAt;
    if (state.transport === 'ws' && net.ws && silent > WS_SILENCE_MS) {
      abandonWs(net.ws);
      reconnectWs();
    }
    renderStatus();
  }, 5_000);
}

// ---------------------------------------------------------------- start

async function main() {
  try {
    wasm = await import('./pkg/livemap_viz.js');
    wasmMemory = (await wasm.default()).memory;
  } catch (e) {
    showMessage('The live map could not load its renderer. Reload the page to try again.', e);
    return;
  }
  try {
    globe = new wasm.Globe(canvas, antialias);
  } catch (e) {
    // Keep the numbers going, and the arcs on a flat map, where the globe
    // cannot be drawn.
    globe = wasm.Globe.withoutGraphics();
    canvas.hidden = true;
    flatMap.canvas.hidden = false;
    flatMap.land = globe.flat_land();
    state.flat = true;
    console.warn('no WebGL2, drawing a flat map:', e);
  }
  configureGlobe(globe);
  resize();
  resizeObserver = new ResizeObserver(resize);
  resizeObserver.observe(canvas);
  resizeObserver.observe(slotEl);
  window.addEventListener('resize', resize);
  wirePointer();
  wireContextLoss(canvas);
  kioskCare();
  watchdog();
  startRendering();
  if (benchArcs > 0) {
    globe.start_bench(benchArcs);
    return;
  }
  connectWs(false);
}

// The timeline does not need the globe: start on it while the wasm loads.
if (benchArcs === 0) loadHistory();

main();
