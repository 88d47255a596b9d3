// The renderer's benchmarks (docs/BENCHMARKS.md "Renderer"), in Debian's
// headless Chromium with software WebGL (SwiftShader), at 1280x720:
//  - frame time of the live map's ?bench=N&quality=Q (N arcs in flight,
//    2,000 rings, at quality tier Q: 4 by default, where software
//    rendering settles) against a page that only clears a WebGL2 canvas
//    each frame (clear-only.html: the fastest any WebGL page can go here)
//    and against globe.gl drawing N animated arcs and 2,000 points
//    (globe-gl.html), side by side in one run, for each N;
//  - the first frame of the real page, in ms after navigation started, and
//    the bytes it downloaded (compressed bodies, as sent) until then.
// Frame time is the mean gap between requestAnimationFrame callbacks over
// the measuring window, counted the same way on both pages.
//
// Usage: npm ci && node measure.mjs [path/to/livemap] [--arcs 1000,5000]
//        [--quality 4] [--seconds 15] [--out report.json]
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const binary = args[0] && !args[0].startsWith('--') ? args[0] : path.join(here, '..', '..', 'target', 'release', 'livemap');
const arcCounts = flag('--arcs', '1000,5000').split(',').map(Number);
const seconds = Number(flag('--seconds', '15'));
const quality = Number(flag('--quality', '4'));
const outDir = path.join(here, 'out');
mkdirSync(outDir, { recursive: true });
const reportPath = flag('--out', path.join(outDir, 'report.json'));
const WARMUP_MS = 4_000;
const VIEWPORT = { width: 1280, height: 720 };

const cleanups = [];
const cleanup = () => cleanups.splice(0).forEach((f) => f());
process.on('exit', cleanup);

function startLivemap() {
  // A light demo, no backfill: both pages share this machine's cores with
  // the server, and the frames, not the server, are measured here.
  const child = spawn(binary, ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--demo-seed', '7', '--demo-rate', '200', '--demo-backfill-minutes', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  cleanups.push(() => child.kill('SIGTERM'));
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(/listening on (http:\/\/[^\s]+)/);
      if (m) resolve(m[1].replace(/\/$/, ''));
    });
    child.on('exit', (code) => reject(new Error(`livemap exited early with ${code}`)));
  });
}

/** Serves this directory (globe-gl.html and node_modules/globe.gl). */
function startStatic() {
  const types = { '.html': 'text/html', '.js': 'text/javascript' };
  const server = http.createServer((req, res) => {
    const file = path.join(here, decodeURIComponent(new URL(req.url, 'http://x').pathname));
    if (!file.startsWith(here)) return res.writeHead(403).end();
    try {
      const body = readFileSync(file);
      res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      cleanups.push(() => server.close());
      resolve(`http://127.0.0.1:${server.address().port}`);
    });
  });
}

// Records every requestAnimationFrame timestamp from the page's start, on
// both pages alike.
const RAF_RECORDER = () => {
  window.__rafTimes = [];
  const tick = (t) => {
    window.__rafTimes.push(t);
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
};

function stats(times, fromMs, toMs) {
  const window = times.filter((t) => t >= fromMs && t <= toMs);
  const gaps = window.slice(1).map((t, i) => t - window[i]).sort((a, b) => a - b);
  if (gaps.length === 0) return { frames: window.length, meanMs: null, p95Ms: null, fps: 0 };
  const meanMs = (window[window.length - 1] - window[0]) / gaps.length;
  return {
    frames: window.length,
    meanMs: Math.round(meanMs * 10) / 10,
    p95Ms: Math.round(gaps[Math.min(gaps.length - 1, Math.floor(gaps.length * 0.95))] * 10) / 10,
    fps: Math.round((1000 / meanMs) * 100) / 100,
  };
}

async function frameTime(browser, name, url, ready) {
  const page = await browser.newPage({ viewport: VIEWPORT, deviceScaleFactor: 1 });
  await page.addInitScript(RAF_RECORDER);
  page.on('pageerror', (e) => console.error(`${name}: page error: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(ready, null, { timeout: 120_000, polling: 100 });
  const start = await page.evaluate(() => performance.now());
  // At least the window, and at least a few frames for the slow ones.
  await page.waitForFunction(
    ([from, ms]) => performance.now() - from > ms && window.__rafTimes.filter((t) => t > from).length >= 6,
    [start + WARMUP_MS, seconds * 1000],
    { timeout: 600_000, polling: 250 },
  );
  const [times, end] = await page.evaluate(() => [window.__rafTimes, performance.now()]);
  await page.screenshot({ path: path.join(outDir, `${name}.png`) });
  await page.close();
  return stats(times, start + WARMUP_MS, end);
}

async function firstFrame(browser, base) {
  // A fresh context: an empty cache, so everything is downloaded again.
  const context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1 });
  const page = await context.newPage();
  await page.goto(base + '/');
  await page.waitForFunction(() => window.livemap && window.livemap.firstFrameMs > 0, null, { timeout: 60_000 });
  const result = await page.evaluate(() => {
    const first = window.livemap.firstFrameMs;
    const nav = performance.getEntriesByType('navigation')[0];
    const files = [nav, ...performance.getEntriesByType('resource')]
      .filter((e) => e.responseEnd <= first && !/\/(api|ws|sse)\b/.test(e.name))
      .map((e) => ({ url: e.name.replace(location.origin, ''), encoded: e.encodedBodySize, decoded: e.decodedBodySize }));
    return { firstFrameMs: Math.round(first), files };
  });
  await context.close();
  const total = (k) => result.files.reduce((s, f) => s + f[k], 0);
  return { ...result, downloadedBytes: total('encoded'), decodedBytes: total('decoded') };
}

const livemap = await startLivemap();
const statics = await startStatic();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist'],
});
cleanups.push(() => browser.close());

const report = { date: new Date().toISOString(), chromium: browser.version(), viewport: VIEWPORT, seconds, quality, scenes: [] };
// Three loads, each with an empty cache; the first also pays for the
// browser's own start (its GPU process), which a viewer's browser has
// already paid.
report.loads = [];
for (let i = 0; i < 3; i++) report.loads.push(await firstFrame(browser, livemap));
report.page = report.loads[report.loads.length - 1];
console.log(`first frame ${report.loads.map((l) => l.firstFrameMs).join(' / ')} ms after navigation (three loads, empty cache); ${report.page.downloadedBytes} bytes downloaded (${report.page.decodedBytes} decoded)`);
for (const f of report.page.files) console.log(`  ${f.url}: ${f.encoded} B`);
for (const n of arcCounts) {
  const clear = await frameTime(browser, `clear-only-${n}`, `${statics}/clear-only.html`, () => window.__rafTimes.length > 3);
  const ours = await frameTime(browser, `livemap-${n}`, `${livemap}/?bench=${n}&quality=${quality}`, () => window.livemap && window.livemap.frames > 3);
  const theirs = await frameTime(browser, `globe-gl-${n}`, `${statics}/globe-gl.html?arcs=${n}`, () => window.__rafTimes.length > 3);
  const ratio = ours.meanMs && theirs.meanMs ? Math.round((ours.meanMs / theirs.meanMs) * 1000) / 1000 : null;
  // The live map's frame rate as a share of the clear-only page's.
  const ofClear = ours.fps && clear.fps ? Math.round((ours.fps / clear.fps) * 1000) / 1000 : null;
  report.scenes.push({ arcs: n, points: 2000, quality, clearOnly: clear, livemap: ours, globeGl: theirs, ratio, ofClear });
  console.log(`${n} arcs: clear-only ${clear.meanMs} ms/frame (${clear.fps} fps) | livemap at tier ${quality} ${ours.meanMs} ms/frame (${ours.fps} fps, p95 ${ours.p95Ms} ms), ${ofClear} of clear-only | globe.gl ${theirs.meanMs} ms/frame (${theirs.fps} fps, p95 ${theirs.p95Ms} ms) | livemap/globe.gl frame time ${ratio}`);
}
writeFileSync(reportPath, JSON.stringify(report, null, 2));
console.log(`report: ${reportPath}; screenshots in ${outDir}`);
cleanup();
process.exit(0);
