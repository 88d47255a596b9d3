// The panels beside the globe: trending categories, top countries, the
// channel split, top shops and top buyer cities, rendered from the board
// the wasm hands out (`Globe.board_json()`, shape in wasm-viz/src/board.rs).
//
// They are real DOM text (headings and lists) so screen readers read them,
// and they are updated in place: a row's text is only touched when it
// changed, so nothing flickers and assistive tech is not flooded. Numbers
// are formatted for the viewer's locale.

const locale = undefined; // the viewer's

export const fmt = {
  count: new Intl.NumberFormat(locale, { maximumFractionDigits: 0 }),
  countCompact: new Intl.NumberFormat(locale, { notation: 'compact', maximumFractionDigits: 1 }),
  usd: new Intl.NumberFormat(locale, { style: 'currency', currency: 'USD', maximumFractionDigits: 0 }),
  usdCompact: new Intl.NumberFormat(locale, {
    style: 'currency',
    currency: 'USD',
    notation: 'compact',
    minimumFractionDigits: 1,
    maximumFractionDigits: 1,
  }),
  change: new Intl.NumberFormat(locale, { style: 'percent', signDisplay: 'exceptZero', maximumFractionDigits: 0 }),
  changeSmall: new Intl.NumberFormat(locale, { style: 'percent', signDisplay: 'exceptZero', maximumFractionDigits: 1 }),
  share: new Intl.NumberFormat(locale, { style: 'percent', maximumFractionDigits: 0 }),
};

/** Whole dollars up to $100,000, compact above ("$1.2M", "$9.0M": one
 *  decimal always, so a column of them lines up), so a row stays short. */
export function money(cents) {
  const dollars = Math.max(0, cents) / 100;
  return dollars < 100_000 ? fmt.usd.format(Math.floor(dollars)) : fmt.usdCompact.format(dollars);
}

/** Exact counts up to 100,000, compact above. */
export function amount(n) {
  return n < 100_000 ? fmt.count.format(Math.floor(Math.max(0, n))) : fmt.countCompact.format(n);
}

/** A trend's change as a signed percentage: "+48%", "−12%" (per locale). */
export function change(ratio) {
  return (Math.abs(ratio) < 0.1 ? fmt.changeSmall : fmt.change).format(ratio);
}

const ISO = /^[A-Z]{2}$/;

/** The flag emoji for an ISO 3166 alpha-2 code, or '' for anything else. */
export function flagEmoji(code) {
  if (!ISO.test(code)) return '';
  return String.fromCodePoint(...[...code].map((c) => 0x1f1e6 + c.charCodeAt(0) - 65));
}

let regionNames = null;
try {
  regionNames = new Intl.DisplayNames(locale, { type: 'region' });
} catch {
  // Older browsers: country codes are shown as they are.
}

export function countryName(code) {
  if (!ISO.test(code)) return code || '?';
  try {
    return regionNames?.of(code) ?? code;
  } catch {
    return code;
  }
}

/** "Apparel & Accessories > Shoes" → { leaf: "Shoes", parent: "Apparel & Accessories" } */
export function splitCategory(path) {
  const parts = String(path).split('>').map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) return { leaf: '?', parent: '' };
  return { leaf: parts[parts.length - 1], parent: parts.slice(0, -1).join(' › ') };
}

// Many systems (Windows, a bare Linux kiosk) draw flag emoji as two
// letters, which looks broken; there the code is shown as a small badge.
let flagsRender = null;
function canDrawFlags() {
  if (flagsRender !== null) return flagsRender;
  flagsRender = false;
  try {
    const c = document.createElement('canvas');
    c.width = c.height = 16;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    ctx.font = '14px sans-serif';
    ctx.textBaseline = 'top';
    ctx.fillText('\u{1F1E8}\u{1F1E6}', 0, 0);
    const d = ctx.getImageData(0, 0, 16, 16).data;
    // A colour emoji has coloured pixels; letters drawn in the default
    // black do not.
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] > 0 && (Math.abs(d[i] - d[i + 1]) > 40 || Math.abs(d[i + 1] - d[i + 2]) > 40)) {
        flagsRender = true;
        break;
      }
    }
  } catch {
    flagsRender = false;
  }
  return flagsRender;
}

// ---------------------------------------------------------------- DOM helpers

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function setAttr(el, name, value) {
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

/** A span with a class, created once per row. */
function part(li, cls, tag = 'span') {
  let el = li.querySelector(`:scope > .${cls}`);
  if (!el) {
    el = document.createElement(tag);
    el.className = cls;
    li.append(el);
  }
  return el;
}

/**
 * Makes `ol` hold one `li` per item (reusing rows), fills each with
 * `render(li, item, i)`, and marks the panel empty or not.
 */
function fillList(ol, items, render) {
  while (ol.children.length > items.length) ol.lastElementChild.remove();
  while (ol.children.length < items.length) ol.append(document.createElement('li'));
  items.forEach((item, i) => render(ol.children[i], item, i));
  ol.closest('.panel')?.classList.toggle('is-empty', items.length === 0);
}

function flagPart(li, code) {
  const el = part(li, 'flag');
  setAttr(el, 'aria-hidden', 'true');
  const emoji = canDrawFlags() ? flagEmoji(code) : '';
  el.classList.toggle('code', !emoji);
  setText(el, emoji || (ISO.test(code) ? code : ''));
}

/** The bar behind a ranking row: its value as a share of the first row's. */
function barWidth(li, value, top) {
  const w = top > 0 ? `${Math.max(2, Math.round((value / top) * 100))}%` : '0%';
  if (li.style.getPropertyValue('--w') !== w) li.style.setProperty('--w', w);
}

// ---------------------------------------------------------------- panels

const CHANNEL_NAMES = {
  online_store: 'Online store',
  pos: 'Point of sale',
  mobile_app: 'Mobile app',
  social: 'Social',
  other: 'Other',
};

function renderTrends(ol, trends) {
  fillList(ol, trends, (li, t) => {
    const { leaf, parent } = splitCategory(t.category);
    const up = t.change > 0;
    const down = t.change < 0;
    li.classList.toggle('up', up);
    li.classList.toggle('down', down);
    const label = part(li, 'label');
    const leafEl = part(label, 'leaf');
    setText(leafEl, leaf);
    const parentEl = part(label, 'parent');
    setText(parentEl, parent);
    setAttr(label, 'title', t.category);
    const arrow = part(li, 'arrow');
    setAttr(arrow, 'aria-hidden', 'true');
    setText(arrow, up ? '▲' : down ? '▼' : '•');
    setText(part(li, 'value'), change(t.change));
  });
}

function renderCountries(ol, countries) {
  const top = countries[0]?.usd_cents ?? 0;
  fillList(ol, countries, (li, c) => {
    flagPart(li, c.key);
    setText(part(li, 'label'), countryName(c.key));
    setText(part(li, 'value'), money(c.usd_cents));
    barWidth(li, c.usd_cents, top);
  });
}

function renderShops(ol, shops) {
  const top = shops[0]?.value ?? 0;
  fillList(ol, shops, (li, s) => {
    flagPart(li, s.country);
    const label = part(li, 'label');
    setText(part(label, 'leaf'), `Shop ${s.key}`);
    const where = [s.place, ISO.test(s.country) ? s.country : ''].filter(Boolean).join(', ');
    setText(part(label, 'parent'), where ? `· ${where}` : '');
    setText(part(li, 'value'), amount(s.value));
    barWidth(li, s.value, top);
  });
}

function renderCities(ol, cities) {
  const top = cities[0]?.value ?? 0;
  fillList(ol, cities, (li, c) => {
    flagPart(li, c.country);
    const label = part(li, 'label');
    setText(part(label, 'leaf'), c.key);
    setText(part(label, 'parent'), ISO.test(c.country) ? countryName(c.country) : '');
    setText(part(li, 'value'), amount(c.value));
    barWidth(li, c.value, top);
  });
}

function renderChannels(root, channels) {
  const total = channels.reduce((sum, c) => sum + c.usd_cents, 0);
  for (const seg of root.querySelectorAll('.seg')) {
    const c = channels.find((x) => x.key === seg.dataset.key);
    const share = c && total > 0 ? c.usd_cents / total : 0;
    const w = `${(share * 100).toFixed(2)}%`;
    if (seg.style.width !== w) seg.style.width = w;
  }
  for (const chip of root.querySelectorAll('.chip')) {
    const c = channels.find((x) => x.key === chip.dataset.key);
    const share = c && total > 0 ? fmt.share.format(c.usd_cents / total) : '';
    setText(chip.querySelector('.share'), share);
  }
  root.classList.toggle('is-empty', total === 0);
  return total > 0 ? channels.filter((c) => c.usd_cents > 0).length : 0;
}

/** Elements the panels live in, looked up once. */
export function panelElements(doc = document) {
  return {
    trends: doc.getElementById('trends'),
    countries: doc.getElementById('countries'),
    shops: doc.getElementById('shops'),
    cities: doc.getElementById('cities'),
    channels: doc.querySelector('.channels'),
  };
}

/** Renders a board; returns how many entries each panel shows. */
export function renderBoard(els, board) {
  const list = (v) => (Array.isArray(v) ? v : []);
  const trends = list(board.trends).filter((t) => t && typeof t.category === 'string' && Number.isFinite(t.change));
  const countries = list(board.countries).filter((c) => c && typeof c.key === 'string');
  const shops = list(board.top_shops).filter((s) => s && typeof s.key === 'string');
  const cities = list(board.top_cities).filter((c) => c && typeof c.key === 'string');
  const channels = list(board.channels).filter((c) => c && c.key in CHANNEL_NAMES && Number.isFinite(c.usd_cents));
  renderTrends(els.trends, trends);
  renderCountries(els.countries, countries);
  renderShops(els.shops, shops);
  renderCities(els.cities, cities);
  const channelCount = renderChannels(els.channels, channels);
  return {
    trends: trends.length,
    countries: countries.length,
    channels: channelCount,
    shops: shops.length,
    cities: cities.length,
  };
}
