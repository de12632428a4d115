import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const base = 'http://127.0.0.1:18099';
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
const page = await browser.newPage();
page.on('console', (m) => console.log('CONSOLE', m.type(), m.text()));
page.on('pageerror', (e) => console.log('PAGEERROR', String(e)));
async function axe(name) {
  await page.evaluate(`${axeSource}\n;0`);
  const r = await page.evaluate(async () => (await axe.run(document)).violations.map((v) => `${v.impact} ${v.id}: ${v.help} ${v.nodes.map((n) => n.html).slice(0, 2).join(' | ')}`));
  console.log(name, r);
  await page.screenshot({ path: `/tmp/pv-manual/${name}.png`, fullPage: true });
}
await page.goto(base + '/');
await axe('login');
await page.fill('#name', 'admin'); await page.fill('#password', 'admin-password-1');
await Promise.all([page.waitForURL(base + '/console'), page.click('button[type=submit]')]);
await axe('overview');
for (const p of ['systems', 'systems/new?role=source&connector=ias', 'jobs', 'held', 'realtime', 'plugins', 'users']) {
  await page.goto(`${base}/console/${p}`);
  await axe(p.replace(/[/?&=]/g, '_'));
}
await browser.close();
