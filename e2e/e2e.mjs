// End-to-end test: the real server binary, the real page, Debian's headless
// Chromium with software WebGL. Usage: node e2e/e2e.mjs path/to/livemap
//
// Checks, each by awaiting a condition (never a fixed sleep):
//  1. Over WebSocket: the canvas draws a globe (many non-background pixels),
//     the picture changes over time, and the counters rise.
//  2. Behind a proxy that refuses WebSocket upgrades: the page falls back
//     to long-poll and still updates.
// Screenshots go to e2e/out/ for people to look at. Playwright gives the
// browser a fresh temporary profile of its own.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { PNG } from 'pngjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.join(here, 'out');
mkdirSync(outDir, { recursive: true });
const binary = process.argv[2] ?? path.join(here, '..', 'target', 'release', 'livemap');
const TIMEOUT = 90_000;

let passed = 0;
let failed = 0;
const cleanups = [];

function startServer() {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--demo-rate', '3000', '--demo-seed', '7'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    cleanups.push(() => child.kill('SIGTERM'));
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(/listening on (http:\/\/[^\s]+)/);
      if (m) resolve(m[1].replace(/\/$/, ''));
    });
    child.on('exit', (code) => reject(new Error(`server exited early with ${code}`)));
  });
}

// A forwarding HTTP proxy that refuses WebSocket upgrades, like a corporate
// proxy that only speaks plain HTTP.
function startNoWebSocketProxy(upstream) {
  const target = new URL(upstream);
  const server = http.createServer((req, res) => {
    const fwd = http.request(
      { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode, up.headers);
        up.pipe(res);
      },
    );
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  let upgradesRefused = 0;
  server.on('upgrade', (_req, socket) => {
    upgradesRefused += 1;
    socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      cleanups.push(() => server.close());
      resolve({ url: `http://127.0.0.1:${server.address().port}`, refused: () => upgradesRefused });
    });
  });
}

async function check(name, fn) {
  try {
    await fn();
    passed += 1;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAILED - ${name}\n  ${e.stack ?? e}`);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// Share of pixels that differ clearly from the top-left corner (space).
function litShare(png) {
  const { data, width, height } = PNG.sync.read(png);
  const [r0, g0, b0] = [data[0], data[1], data[2]];
  let lit = 0;
  for (let i = 0; i < width * height * 4; i += 4) {
    if (Math.abs(data[i] - r0) + Math.abs(data[i + 1] - g0) + Math.abs(data[i + 2] - b0) > 40) lit += 1;
  }
  return lit / (width * height);
}

function changedShare(a, b) {
  const x = PNG.sync.read(a);
  const y = PNG.sync.read(b);
  let changed = 0;
  for (let i = 0; i < x.data.length; i += 4) {
    const d = Math.abs(x.data[i] - y.data[i]) + Math.abs(x.data[i + 1] - y.data[i + 1]) + Math.abs(x.data[i + 2] - y.data[i + 2]);
    if (d > 24) changed += 1;
  }
  return changed / (x.width * x.height);
}

const counter = (page, id) => page.$eval(`#${id}`, (el) => Number(el.dataset.value ?? 'NaN'));

async function waitForFrames(page, more) {
  const start = await page.evaluate(() => window.livemap?.frames ?? 0);
  await page.waitForFunction((n) => (window.livemap?.frames ?? 0) >= n, start + more, { timeout: TIMEOUT });
}

async function main() {
  const url = await startServer();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-quic', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
      '--ignore-gpu-blocklist',
    ],
  });
  cleanups.push(() => browser.close());

  await check('WebSocket: the globe draws, moves, and the counters rise', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(url);
    await page.waitForFunction(() => document.body.dataset.transport === 'ws' && (window.livemap?.version ?? 0) > 0, null, { timeout: TIMEOUT });
    await page.waitForFunction(() => Number(document.querySelector('#sales')?.dataset.value ?? 0) > 0, null, { timeout: TIMEOUT });
    await waitForFrames(page, 10);
    const canvas = await page.$('canvas');
    assert(canvas, 'page has a canvas');
    const first = await canvas.screenshot();
    const sales1 = await counter(page, 'sales');
    const version1 = await page.evaluate(() => window.livemap.version);
    await waitForFrames(page, 30);
    await page.waitForFunction((v) => window.livemap.version > v + 5, version1, { timeout: TIMEOUT });
    await page.waitForFunction((s) => Number(document.querySelector('#sales').dataset.value) > s, sales1, { timeout: TIMEOUT });
    const second = await canvas.screenshot();
    writeFileSync(path.join(outDir, 'globe-ws-1.png'), first);
    writeFileSync(path.join(outDir, 'globe-ws-2.png'), second);
    await page.screenshot({ path: path.join(outDir, 'page-ws.png') });
    const lit = litShare(first);
    assert(lit > 0.08, `globe covers too little of the canvas: ${(lit * 100).toFixed(1)} %`);
    const changed = changedShare(first, second);
    assert(changed > 0.001, `the picture did not change: ${(changed * 100).toFixed(3)} % of pixels`);
    for (const id of ['opm', 'shoppers', 'carbon']) {
      const v = await counter(page, id);
      assert(Number.isFinite(v) && v >= 0, `counter ${id} reads ${v}`);
    }
    assert((await counter(page, 'shoppers')) > 0, 'unique shoppers counted');
    assert(errors.length === 0, `page errors: ${errors.join('; ')}`);
    console.log(`  globe covers ${(lit * 100).toFixed(1)} % of the canvas, ${(changed * 100).toFixed(2)} % changed`);
    await page.close();
  });

  await check('WebSocket blocked: the page falls back to long-poll and keeps updating', async () => {
    const proxy = await startNoWebSocketProxy(url);
    const page = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
    await page.goto(proxy.url);
    await page.waitForFunction(() => document.body.dataset.transport === 'longpoll', null, { timeout: TIMEOUT });
    const v1 = await page.evaluate(() => window.livemap.version);
    await page.waitForFunction((v) => window.livemap.version > v + 3, v1, { timeout: TIMEOUT });
    const s1 = await counter(page, 'sales');
    await page.waitForFunction((s) => Number(document.querySelector('#sales').dataset.value) > s, s1, { timeout: TIMEOUT });
    assert(proxy.refused() >= 1, 'the page tried the WebSocket first');
    assert((await page.evaluate(() => document.body.dataset.transport)) === 'longpoll', 'still on long-poll');
    await page.screenshot({ path: path.join(outDir, 'page-longpoll-phone.png') });
    await page.close();
  });
}

try {
  await main();
} catch (e) {
  failed += 1;
  console.log(`FAILED - setup\n  ${e.stack ?? e}`);
} finally {
  for (const c of cleanups.reverse()) {
    try { await c(); } catch { /* already gone */ }
  }
}
console.log(`e2e: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
