// Live sales map page: loads the Rust/wasm globe, feeds it snapshots, and
// keeps the counters and the connection indicator current.
//
// Transport: a WebSocket to /ws (one binary FlatBuffers Snapshot per
// message). It reconnects with exponential backoff plus jitter; if it fails
// before opening twice in a row, the page long-polls /api/poll?v=<version>
// instead (200: the same Snapshot bytes, 204: nothing new yet) and retries
// the WebSocket every minute or so, switching back when it opens.
//
// For tests and operators: document.body.dataset.transport is
// "connecting" | "ws" | "longpoll"; window.livemap = { version, frames,
// transport, stale, arcs } is kept current; each counter element carries
// data-value, the number it shows in the unit of data-unit (sales: whole
// US dollars; carbon: kg, even when shown in tonnes).
//
// The wasm never touches the network: this file fetches, the globe gets bytes.

const WS_URL = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
const POLL_URL = '/api/poll?v=';
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30_000;
const WS_PROBE_EVERY_MS = 60_000;
/// An open socket that has said nothing for this long is presumed dead.
const WS_SILENCE_MS = 30_000;
/// No snapshot for this long: show the data as stale.
const QUIET_STALE_MS = 15_000;
const POLL_TIMEOUT_MS = 90_000;

const $ = (id) => document.getElementById(id);

const state = { version: 0, frames: 0, transport: 'connecting', stale: false, arcs: 0 };
window.livemap = state;

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
  return fresh;
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
  let opened = false;
  ws.onopen = () => {
    opened = true;
    net.everOpened = true;
    net.failStreak = 0;
    net.attempt = 0;
    net.lastDataAt = performance.now();
    stopLongPoll();
    setTransport('ws');
  };
  ws.onmessage = (ev) => {
    if (ev.data instanceof ArrayBuffer) ingest(new Uint8Array(ev.data));
  };
  ws.onerror = () => {}; // a close event always follows
  ws.onclose = () => {
    if (net.ws === ws) net.ws = null;
    if (opened) {
      if (state.transport === 'ws') reconnectWs();
    } else {
      wsFailed(probe);
    }
  };
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

function reconnectWs() {
  setTransport('connecting');
  clearTimeout(net.reconnectTimer);
  net.reconnectTimer = setTimeout(() => connectWs(false), backoff(net.attempt++));
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
      const res = await fetch(POLL_URL + encodeURIComponent(state.version), {
        cache: 'no-store',
        signal: ctl.signal,
      });
      if (res.status === 200) {
        const bytes = new Uint8Array(await res.arrayBuffer());
        if (gen !== net.pollGen) break;
        const fresh = ingest(bytes);
        // An answer that brings nothing new must not become a busy loop.
        if (!fresh) await sleep(1_000);
      } else if (res.status !== 204) {
        throw new Error(`HTTP ${res.status}`);
      }
      failures = 0;
      if (net.pollFailing) {
        net.pollFailing = false;
        renderStatus();
      }
    } catch (e) {
      if (gen !== net.pollGen) break;
      failures += 1;
      net.pollFailing = true;
      renderStatus();
      await sleep(backoff(failures - 1));
    } finally {
      clearTimeout(timeout);
    }
  }
}

// ---------------------------------------------------------------- counters

const fmt0 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const fmt1 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
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

/** Updates a counter element; returns whether anything changed. */
function setCounter(el, value, text) {
  const v = String(value);
  if (el.dataset.value === v) return false;
  el.dataset.value = v;
  el.textContent = text;
  return true;
}

function updateCounters(now) {
  const c = globe.counters(now);
  const dollars = Math.floor(c[0] / 100);
  const opm = Math.round(c[1]);
  const shoppers = Math.floor(c[2]);
  const kg = Math.floor(c[3]);
  const sales = `$${fmt0.format(dollars)}`;
  if (setCounter(counterEls.sales, dollars, sales)) {
    // $100,000,000 and up: step the hero size down so it stays clear of the globe.
    counterEls.sales.classList.toggle('long', sales.length > 12);
  }
  setCounter(counterEls.opm, opm, fmt0.format(opm));
  setCounter(counterEls.shoppers, shoppers, fmt0.format(shoppers));
  setCounter(counterEls.carbon, kg, formatCarbon(kg));
}

// ---------------------------------------------------------------- rendering

const canvas = $('globe');
let raf = 0;
let sized = { w: 0, h: 0, dpr: 0 };

function resize() {
  if (!globe) return;
  const r = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  if (r.width === sized.w && r.height === sized.h && dpr === sized.dpr) return;
  sized = { w: r.width, h: r.height, dpr };
  globe.resize(r.width, r.height, dpr);
}

function frame(t) {
  raf = 0;
  if (document.hidden || !globe) return;
  if ((window.devicePixelRatio || 1) !== sized.dpr) resize();
  globe.frame(t);
  updateCounters(t);
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

/** A lost WebGL context (driver reset, days into a kiosk run) gets a new globe. */
function wireContextLoss() {
  canvas.addEventListener('webglcontextlost', (e) => {
    e.preventDefault();
    cancelAnimationFrame(raf);
    raf = 0;
  });
  canvas.addEventListener('webglcontextrestored', () => {
    try {
      const fresh = new wasm.Globe(canvas);
      globe.free();
      globe = fresh;
      sized = { w: 0, h: 0, dpr: 0 };
      resize();
      if (lastSnapshot) ingest(lastSnapshot);
      startRendering();
    } catch (e) {
      location.reload();
    }
  });
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
    if (state.transport === 'ws' && net.ws && silent > WS_SILENCE_MS) net.ws.close();
    renderStatus();
  }, 5_000);
}

// ---------------------------------------------------------------- start

async function main() {
  try {
    wasm = await import('./pkg/livemap_viz.js');
    await wasm.default();
  } catch (e) {
    showMessage('The live map could not load its renderer. Reload the page to try again.', e);
    return;
  }
  try {
    globe = new wasm.Globe(canvas);
  } catch (e) {
    // Keep the numbers going even where the globe cannot be drawn.
    globe = wasm.Globe.withoutGraphics();
    canvas.hidden = true;
    showMessage('This screen cannot show the 3D globe (WebGL2 is not available). The totals are still live.', e);
  }
  resize();
  new ResizeObserver(resize).observe(canvas);
  window.addEventListener('resize', resize);
  wirePointer();
  wireContextLoss();
  kioskCare();
  watchdog();
  startRendering();
  connectWs(false);
}

main();
