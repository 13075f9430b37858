// Drives Chromium through wsiseg view's page for tests/view.rs (and by hand):
//   node drive.js URL_FILE PLAN.json OUT_DIR
// URL_FILE holds the viewer's URL (what `wsiseg view` printed); PLAN is a
// list of steps: {"open": "#hash"}, {"click": "css selector"},
// {"shot": "name.png"}, {"eval": "js expression", "as": "key"}, {"wait": true}.
// Prints {"results": {key: value…}, "requests": [every URL asked for]}.
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require(process.env.PLAYWRIGHT_CORE || 'playwright-core');

async function main() {
  const [urlFile, planFile, outDir] = process.argv.slice(2);
  const base = fs.readFileSync(urlFile, 'utf8').trim();
  const plan = JSON.parse(fs.readFileSync(planFile, 'utf8'));
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...(process.env.NETLOG ? ['--log-net-log=' + process.env.NETLOG] : [])],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  const requests = [];
  const errors = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => errors.push(String(e)));
  const results = {};
  const ready = () => page.waitForFunction(() => window.wsisegView && window.wsisegView.ready(), null, { timeout: 30000, polling: 100 });
  for (const step of plan) {
    if (step.open !== undefined) {
      await page.goto(base + step.open);
      // A new hash on the same page is handled by a later event.
      await page.waitForTimeout(300);
      await ready();
    } else if (step.click) {
      await page.click(step.click);
      await page.waitForTimeout(200);
      await ready();
    } else if (step.wait) {
      await page.waitForTimeout(300);
      await ready();
    } else if (step.shot) {
      // Tiles drawn, then one more frame.
      await ready();
      await page.waitForTimeout(300);
      await page.screenshot({ path: path.join(outDir, step.shot) });
    } else if (step.eval) {
      results[step.as] = await page.evaluate(step.eval);
    }
  }
  await browser.close();
  process.stdout.write(JSON.stringify({ results, requests, errors }) + '\n');
}
main().catch((e) => { console.error('drive.js: ' + (e && e.stack || e)); process.exit(1); });
