// One hour of kiosk mode (docs/BENCHMARKS.md "Renderer"): the real page
// with ?kiosk=1 against the live server's demo, in Debian's headless
// Chromium. Samples the JS heap (precise) and the wasm memory every minute;
// the budget is that both end within 10 % of where they were after the
// first minute.
//
// Usage: node kiosk-memory.mjs [path/to/livemap] [--minutes 60]
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const binary = args[0] && !args[0].startsWith('--') ? args[0] : path.join(here, '..', '..', 'target', 'release', 'livemap');
const minutesAt = args.indexOf('--minutes');
const minutes = minutesAt >= 0 ? Number(args[minutesAt + 1]) : 60;
const outDir = path.join(here, 'out');
mkdirSync(outDir, { recursive: true });

const server = spawn(binary, ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--demo-seed', '7'], {
  stdio: ['ignore', 'pipe', 'ignore'],
});
process.on('exit', () => server.kill('SIGTERM'));
const base = await new Promise((resolve, reject) => {
  let buf = '';
  server.stdout.on('data', (d) => {
    buf += d;
    const m = buf.match(/listening on (http:\/\/[^\s]+)/);
    if (m) resolve(m[1].replace(/\/$/, ''));
  });
  server.on('exit', (code) => reject(new Error(`livemap exited early with ${code}`)));
});

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--no-first-run', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist', '--enable-precise-memory-info', '--js-flags=--expose-gc'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
await page.goto(`${base}/?kiosk=1`);
await page.waitForFunction(() => window.livemap && window.livemap.version > 0 && window.livemap.frames > 10, null, { timeout: 60_000 });

const samples = [];
const sample = async (minute) => {
  const s = await page.evaluate(() => {
    // A full collection first, so the heap's size is what is kept, not
    // garbage not yet collected.
    if (window.gc) window.gc();
    return {
      jsHeap: performance.memory.usedJSHeapSize,
      wasm: window.livemap.wasmBytes,
      frames: window.livemap.frames,
      version: window.livemap.version,
      quality: window.livemap.quality,
    };
  });
  samples.push({ minute, ...s });
  console.log(`minute ${minute}: JS heap ${s.jsHeap} B, wasm ${s.wasm} B, ${s.frames} frames, version ${s.version}, quality tier ${s.quality}`);
};
for (let minute = 1; minute <= minutes; minute++) {
  await page.waitForTimeout(60_000);
  await sample(minute);
}
const first = samples[0];
const last = samples[samples.length - 1];
const change = (k) => Math.round(((last[k] - first[k]) / first[k]) * 1000) / 10;
const report = { date: new Date().toISOString(), chromium: browser.version(), minutes, samples, jsHeapChangePct: change('jsHeap'), wasmChangePct: change('wasm') };
writeFileSync(path.join(outDir, 'kiosk-memory.json'), JSON.stringify(report, null, 2));
console.log(`after ${minutes} min: JS heap ${report.jsHeapChangePct} %, wasm memory ${report.wasmChangePct} % against minute 1`);
await browser.close();
process.exit(0);
