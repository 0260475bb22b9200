// One screenshot of the MLflow UI in headless Chromium (the browser check of docs/ui/*.png; not part of CI).
//
//   apt-get install -y chromium && npm install playwright-core
//   mlflow ui --backend-store-uri sqlite:///<store>/mlflow.db --port 5000
//   node docs/ui/screenshot.js '<url>' out.png [width] [height] [text to wait for] [text to click ...]
//
// A fresh browser profile every time (so nothing remembered from an earlier visit decides the view);
// MLflow's assistant panel is closed before the screenshot.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

(async () => {
  const [url, out, width = '1280', height = '800', waitText = '', ...clicks] = process.argv.slice(2);
  const context = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(os.tmpdir(), 'mlflow-ui-')), {
    executablePath: '/usr/bin/chromium', headless: true, viewport: { width: +width, height: +height },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] || await context.newPage();
  await page.goto(url, { waitUntil: 'load', timeout: 120000 });
  await page.waitForTimeout(4000);
  const close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]');
  if (await close.count()) await close.first().click({ force: true, timeout: 5000 }).catch(() => {});
  if (waitText) await page.getByText(waitText).first().waitFor({ timeout: 60000 });
  for (const text of clicks) {
    await page.getByText(text).first().click({ timeout: 30000 });
    await page.waitForTimeout(2500);
  }
  await page.waitForTimeout(3000);
  console.log(page.url());  // where the UI ended up (e.g. workflowType=genai without the link's parameter)
  await page.screenshot({ path: out });
  await context.close();
})();
