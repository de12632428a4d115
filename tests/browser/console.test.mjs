// Browser tests of the web console: a real `provisio serve` on a fresh data directory, two IAS simulators
// (`provisio-sim`) as source and target, headless Debian chromium driven by playwright-core. Walks an admin's
// day — keyboard-only login, add a source and a target, Test Connection, start a Read and watch its live
// progress reach the end, the per-entity log, held deletes, the real-time log, plugins, technical users, a
// read-logs-only user, logout — runs axe-core on every page (no serious or critical violation), fails on any
// Content-Security-Policy violation, and saves a screenshot of each screen under target/console-screens/.
//
// Binaries: $PROVISIO_BIN and $PROVISIO_SIM_BIN, else target/debug/{provisio,provisio-sim} (CARGO_TARGET_DIR
// honoured). Browser: $CHROMIUM, else /usr/bin/chromium.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const workspace = path.resolve(here, '..', '..');
const targetDir = process.env.CARGO_TARGET_DIR || path.join(workspace, 'target');
const provisioBin = process.env.PROVISIO_BIN || path.join(targetDir, 'debug', 'provisio');
const simBin = process.env.PROVISIO_SIM_BIN || path.join(targetDir, 'debug', 'provisio-sim');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const screens = path.join(targetDir, 'console-screens');
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const ADMIN = { name: 'admin', password: 'browser-admin-password' };
const READER = { name: 'log-reader', password: 'reader-password-1' };
const SIM = { id: 'browser-client', secret: 'browser-secret-1' };
const USERS = 1500;

const children = [];
let dataDir;
let base;
let browser;
let source;
let target;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Whatever ends this process, the service and the simulators go with it.
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
});

function start(bin, args, env = {}) {
  assert.ok(existsSync(bin), `${bin} is missing: build it first (cargo build --workspace)`);
  const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  child.output = () => output;
  children.push(child);
  return child;
}

async function waitFor(url, child, what) {
  const deadline = Date.now() + 180_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited: ${child.output()}`);
    try {
      const r = await fetch(url);
      if (r.status < 500) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not answer at ${url}: ${child.output()}`);
}

async function simulator(users) {
  const port = await freePort();
  const child = start(simBin, ['ias', '--listen', `127.0.0.1:${port}`, '--users', String(users),
    '--client-id', SIM.id, '--client-secret', SIM.secret]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/service/scim/Users`, child, 'provisio-sim');
  return url;
}

before(async () => {
  mkdirSync(screens, { recursive: true });
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'provisio-console-'));
  source = await simulator(USERS);
  target = await simulator(0);
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const server = start(provisioBin, ['serve', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`], {
    PROVISIO_BOOTSTRAP_ADMIN: `${ADMIN.name}:${ADMIN.password}`,
    RUST_LOG: 'warn',
  });
  await waitFor(`${base}/healthz`, server, 'provisio serve');
  // A technical user with read-logs only, through the admin API.
  const r = await fetch(`${base}/api/v1/technical-users`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Basic ${Buffer.from(`${ADMIN.name}:${ADMIN.password}`).toString('base64')}`,
    },
    body: JSON.stringify({ name: READER.name, password: READER.password, permissions: ['read-logs'] }),
  });
  assert.equal(r.status, 201, await r.text());
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
      '--disable-extensions', '--no-first-run'],
  });
});

after(async () => {
  if (browser) await browser.close();
  for (const child of children) child.kill('SIGTERM');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** A page that records CSP violations and page errors. */
async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) page.problems.push(m.text());
  });
  page.on('pageerror', (e) => page.problems.push(String(e)));
  return page;
}

/** Runs axe-core in the page (injected through the DevTools protocol, which the page's CSP does not
 *  govern) and fails on serious or critical violations; saves a screenshot. */
async function check(page, name) {
  await page.evaluate(`${axeSource}\n;0`);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.html).slice(0, 3) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `${name}: axe-core found serious or critical violations:\n${JSON.stringify(bad, null, 2)}`);
  await page.screenshot({ path: path.join(screens, `${name}.png`), fullPage: true });
  assert.deepEqual(page.problems, [], `${name}: the page logged CSP violations or errors`);
}

/** Clicks a submit button and waits for the page it leads to. */
async function submit(page, selector) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
}

async function login(page, who) {
  await page.goto(`${base}/console/login`);
  await page.fill('#name', who.name);
  await page.fill('#password', who.password);
  await Promise.all([page.waitForURL(`${base}/console`), page.click('button[type=submit]')]);
}

/** Fills a connector's property: its own field when the connector declares it, else a line of the
 *  further properties. */
async function property(page, name, value) {
  const field = page.locator(`[name="p.${name}"]`);
  if (await field.count()) {
    await field.fill(value);
  } else {
    const extra = page.locator('#s-extra');
    const now = await extra.inputValue();
    await extra.fill(`${now}${now ? '\n' : ''}${name}=${value}`);
  }
}

async function addSystem(page, { name, role, url, sources = [], extra = {} }) {
  await page.goto(`${base}/console/systems/new?role=${role}&connector=ias`);
  await page.fill('#s-name', name);
  await property(page, 'URL', url);
  await property(page, 'Authentication', 'BasicAuthentication');
  await property(page, 'User', SIM.id);
  await property(page, 'Password', SIM.secret);
  for (const [k, v] of Object.entries({ 'provisio.rate.limit': '1000', ...extra })) await property(page, k, v);
  for (const s of sources) await page.getByLabel(s, { exact: true }).check();
  await check(page, `system-form-${role}`);
  await Promise.all([page.waitForURL(/\/console\/systems\/[^/]+$/), page.click('button:has-text("Create")')]);
  await page.waitForSelector('.notice.ok');
  const id = page.url().split('/').pop();
  await submit(page, 'button:has-text("Test Connection")');
  const notice = await page.locator('.notice').first().innerText();
  assert.match(notice, /established successfully/, `Test Connection of ${name}: ${notice}`);
  await check(page, `system-${role}`);
  return id;
}

test('a keyboard-only login reaches the overview', async () => {
  const page = await newPage();
  await page.goto(`${base}/`);
  assert.match(page.url(), /\/console\/login/);
  await check(page, 'login');
  // The name field has the focus; Tab to the password, Enter submits.
  await page.keyboard.type(ADMIN.name);
  await page.keyboard.press('Tab');
  await page.keyboard.type(ADMIN.password);
  await Promise.all([page.waitForURL(`${base}/console`), page.keyboard.press('Enter')]);
  assert.equal(await page.locator('h1').innerText(), 'Overview');
  await check(page, 'overview-empty');
  // The skip link is the first stop of the keyboard.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content');
  await page.context().close();
});

test('an admin adds systems, runs a Read with live progress to the end, and reads its log', async () => {
  const page = await newPage();
  await login(page, ADMIN);
  // The source is read in pages of 100 at 2 requests a second: the Read lasts several seconds, whatever the
  // machine, so its page opens while it goes.
  const sourceId = await addSystem(page, {
    name: 'IAS source', role: 'source', url: source,
    extra: { 'provisio.rate.limit': '2', 'provisio.read.page.size': '100' },
  });
  await addSystem(page, { name: 'IAS target', role: 'target', url: target, sources: ['IAS source'] });

  // The source's transformation: a broken edit is refused with the reason, the playground traces a try.
  await page.goto(`${base}/console/systems/${sourceId}/transformation`);
  const original = await page.inputValue('#t-doc');
  assert.ok(original.includes('mappings'), 'the connector default is in the editor');
  await page.fill('#t-doc', original.replace('"mappings"', '"mapings"'));
  await submit(page, 'button:has-text("Validate and save")');
  assert.match(await page.locator('#transform-error').innerText(), /invalid|unknown|mapings/i);
  await check(page, 'transformation-invalid');
  await page.fill('#t-doc', original);
  await submit(page, 'button:has-text("Try it on the entity below")');
  assert.ok(await page.locator('h2:has-text("Result")').count(), 'the playground ran');
  assert.ok(await page.locator('tbody tr').count() > 0, 'the trace has steps');
  await check(page, 'transformation-playground');

  // A real entity read live from the source, by its userName: it fills the entity and the playground runs.
  const auth0 = { authorization: `Basic ${Buffer.from(`${SIM.id}:${SIM.secret}`).toString('base64')}` };
  const someone = (await (await fetch(`${source}/scim/Users?startIndex=1&count=1`, { headers: auth0 })).json()).Resources[0];
  await page.fill('#t-key', someone.userName);
  await submit(page, 'button:has-text("Read it and try")');
  assert.match(await page.locator('[role=status]:has-text("Read from")').innerText(), /IAS source \(found by (id|userName)\)/);
  assert.ok((await page.inputValue('#t-entity')).includes(someone.userName), 'the entity read is in the playground');
  assert.ok(await page.locator('h2:has-text("Result")').count(), 'the playground ran on the real entity');
  await check(page, 'transformation-real-entity');

  // Two saved versions with descriptions, their history, a diff and a rollback to the first.
  await page.fill('#t-doc', original);
  await page.fill('#t-desc', 'the default, stored');
  await submit(page, 'button:has-text("Validate and save")');
  assert.match(await page.locator('.notice.ok').innerText(), /saved as version 1/);
  const changed = JSON.parse(original);
  changed.user.mappings.push({ constant: 'Browser', targetPath: '$.title' });
  await page.fill('#t-doc', JSON.stringify(changed, null, 2));
  await page.fill('#t-desc', 'a title for everyone');
  await submit(page, 'button:has-text("Validate and save")');
  assert.match(await page.locator('.notice.ok').innerText(), /saved as version 2/);
  await page.click('a:has-text("Version history")');
  await page.waitForURL(/\/transformation\/history$/);
  assert.ok(await page.locator('td:has-text("a title for everyone")').count(), 'the description is listed');
  assert.ok(await page.locator(`td:has-text("${ADMIN.name}")`).count(), 'the author is listed');
  await check(page, 'transformation-history');
  await submit(page, 'button:has-text("Show the differences")');
  // The added mapping is an object of its own: several lines pretty-printed, and the line before it gains a comma.
  assert.match(await page.locator('#diff-summary').innerText(), /\b[1-9]\d* lines? added/);
  assert.ok(await page.locator('tr.diff-insert:has-text("$.title")').count(), 'the added mapping is marked');
  await check(page, 'transformation-diff');
  await page.goto(`${base}/console/systems/${sourceId}/transformation/history/1`);
  await check(page, 'transformation-version');
  await submit(page, 'button:has-text("Roll back to version 1")');
  assert.match(await page.locator('.notice.ok').innerText(), /Rolled back to version 1: saved as version 3/);
  assert.ok(await page.locator('td:has-text("Rollback to version 1")').count());

  await page.goto(`${base}/console/systems`);
  assert.ok(await page.locator('td:has-text("IAS target")').count());
  await check(page, 'systems');

  await page.goto(`${base}/console/jobs`);
  await check(page, 'jobs');
  await page.selectOption('#start-source', sourceId);
  await page.selectOption('#start-type', 'read');
  await Promise.all([page.waitForURL(/\/console\/jobs\/[^/]+$/), page.click('button:has-text("Start")')]);
  // The run is going when its page opens; the progress arrives by server-sent events until the run ends,
  // without a reload.
  assert.equal(await page.locator('section[aria-label=Progress]').count(), 1, 'the run ended before its page opened');
  await page.evaluate(() => {
    window.sameDocument = true;
    window.sseMessages = 0;
    document.body.addEventListener('htmx:sseMessage', () => { window.sseMessages += 1; });
  });
  await page.waitForFunction(() => /Success|Finished with Error/.test(document.querySelector('#progress')?.textContent || ''), null, { timeout: 120_000 });
  assert.equal(await page.evaluate(() => window.sameDocument), true, 'the page was reloaded');
  assert.ok(await page.evaluate(() => window.sseMessages) > 0, 'no progress arrived by server-sent events');
  const progress = await page.locator('#progress').innerText();
  assert.match(progress, /Success/, progress);
  assert.match(await page.locator('[data-testid=read]').innerText(), new RegExp(`^${USERS}`));
  assert.match(progress, /IAS target/);
  await check(page, 'job-finished');

  await page.click('a:has-text("Per-entity log")');
  await page.waitForSelector('table');
  await page.selectOption('#f-operation', 'create');
  await submit(page, 'button:has-text("Filter")');
  const rows = await page.locator('tbody tr').count();
  assert.ok(rows > 0, 'created entities are in the log');
  await check(page, 'job-log');
  const csv = await page.request.get(`${page.url().replace('/log?', '/log.csv?')}`);
  assert.equal(csv.status(), 200);
  assert.ok((await csv.text()).split('\r\n').length > 2);

  // 400 of the 1,500 users leave the source: more than the default threshold (20 %), so the next Read holds
  // the deletes for a decision.
  const auth = { authorization: `Basic ${Buffer.from(`${SIM.id}:${SIM.secret}`).toString('base64')}` };
  let gone = 0;
  while (gone < 400) {
    const list = await (await fetch(`${source}/scim/Users?startIndex=1&count=100`, { headers: auth })).json();
    assert.ok(list.Resources?.length, JSON.stringify(list).slice(0, 300));
    for (const user of list.Resources) {
      const r = await fetch(`${source}/scim/Users/${user.id}`, { method: 'DELETE', headers: auth });
      assert.ok(r.status < 300, `delete in the simulator: ${r.status}`);
      gone += 1;
    }
  }
  await page.goto(`${base}/console/jobs?source=${sourceId}`);
  await Promise.all([page.waitForURL(/\/console\/jobs\/[^/?]+$/), page.click('button:has-text("Start")')]);
  await page.waitForFunction(() => /Success|Finished with Error/.test(document.querySelector('#progress')?.textContent || ''), null, { timeout: 120_000 });
  assert.match(await page.locator('#progress').innerText(), /Held deletes\s+400/);
  await page.click('#progress a:has-text("400")');
  await page.waitForURL(/\/held$/);
  assert.equal(await page.locator('tbody tr').count(), 400);
  await check(page, 'held-run');
  await submit(page, 'button:has-text("Approve")');
  assert.match(await page.locator('.notice').innerText(), /Approved/);
  assert.equal(await page.locator('td:has-text("approved")').count(), 400);
  const left = await (await fetch(`${target}/scim/Users?startIndex=1&count=1`, { headers: auth })).json();
  assert.equal(left.totalResults, USERS - 400, 'the approved deletes reached the target');

  for (const [url, name] of [['/console', 'overview'], ['/console/held', 'held'], ['/console/realtime', 'realtime'],
    ['/console/plugins', 'plugins'], ['/console/users', 'users']]) {
    await page.goto(`${base}${url}`);
    await check(page, name);
  }

  // A technical user, created and deleted.
  await page.goto(`${base}/console/users`);
  await page.fill('#u-name', 'scim-client');
  await page.fill('#u-password', 'scim-client-password');
  await page.check('#perm-proxy-api');
  await submit(page, 'button:has-text("Create")');
  assert.match(await page.locator('.notice').innerText(), /scim-client created/);
  // Its password changed (typed twice): its sessions and tokens end.
  await page.click('summary:has-text("Change password of scim-client")');
  const row = page.locator('tr', { has: page.locator('td', { hasText: 'scim-client' }) });
  await row.getByLabel('New password').fill('another-password-1');
  await row.getByLabel('Repeat it').fill('another-password-1');
  await check(page, 'users-password');
  await submit(page, 'tr:has-text("scim-client") button:has-text("Change the password")');
  assert.match(await page.locator('.notice').innerText(), /password of scim-client changed/);
  await submit(page, 'button[aria-label="Delete scim-client"]');
  assert.match(await page.locator('.notice').innerText(), /deleted/);

  // A webhook subscription for the source's failures, added through the form and listed.
  await page.goto(`${base}/console/notifications/new`);
  await page.selectOption('#n-system', sourceId);
  await page.check('input[name=kind][value="job.failed"]');
  await page.fill('#n-url', 'https://hooks.example/provisio');
  await page.fill('#n-secret', 'a-webhook-secret-of-32-characters');
  await check(page, 'notifications-new');
  await submit(page, 'button:has-text("Add the subscription")');
  assert.match(await page.locator('.notice').innerText(), /added/);
  assert.match(await page.locator('main table').first().innerText(), /hooks\.example\/provisio/);
  await check(page, 'notifications');

  // Logout ends the session.
  await Promise.all([page.waitForURL(/\/console\/login/), page.click('button:has-text("Log out")')]);
  await page.goto(`${base}/console`);
  assert.match(page.url(), /\/console\/login/);
  await page.context().close();
});

test('an admin uploads plugin versions, rolls back, removes one, and sees a refusal explained', async () => {
  const page = await newPage();
  await login(page, ADMIN);
  const dir = path.join(targetDir, 'wasm', 'wasm32-wasip2', 'wasm');
  const hostile = readFileSync(path.join(dir, 'provisio_plugin_hostile.wasm'));
  // A second version of the same component: its version text occurs once, so a same-length replacement
  // makes another valid component (as tests/e2e/support.rs does).
  const at = hostile.indexOf('1.0.0');
  assert.ok(at >= 0 && hostile.indexOf('1.0.0', at + 1) < 0, 'the version occurs once');
  const next = Buffer.from(hostile);
  next.write('1.0.1', at, 'latin1');
  const files = path.join(screens, 'upload');
  mkdirSync(files, { recursive: true });
  writeFileSync(path.join(files, 'hostile-1.0.0.wasm'), hostile);
  writeFileSync(path.join(files, 'hostile-1.0.1.wasm'), next);
  for (const version of ['1.0.0', '1.0.1']) {
    await page.goto(`${base}/console/plugins`);
    await page.setInputFiles('#component', path.join(files, `hostile-${version}.wasm`));
    await submit(page, 'button:has-text("Upload")');
    assert.match(await page.locator('.notice').innerText(), new RegExp(`Loaded hostile@${version.replaceAll('.', '\\.')}`));
  }
  await check(page, 'plugins-uploaded');
  await submit(page, 'button[aria-label="Roll back hostile to the version below 1.0.1"]');
  assert.match(await page.locator('.notice').innerText(), /run 1\.0\.0 instead of 1\.0\.1/);
  await submit(page, 'button[aria-label="Remove hostile 1.0.1"]');
  assert.match(await page.locator('.notice').innerText(), /Removed hostile@1\.0\.1/);
  // A component the host refuses: the reason is shown.
  await page.setInputFiles('#component', path.join(dir, 'provisio_plugin_bloated.wasm'));
  await submit(page, 'button:has-text("Upload")');
  const refusal = await page.locator('.notice.bad').innerText();
  assert.ok(refusal.length > 10, refusal);
  await check(page, 'plugins-refused');
  await page.context().close();
});

test('a user with read-logs only sees logs and is told where an action is missing', async () => {
  const page = await newPage();
  await login(page, READER);
  const nav = await page.locator('nav[aria-label=Main]').innerText();
  assert.ok(!nav.includes('Systems') && !nav.includes('Plugins'), nav);
  assert.match(await page.locator('main').innerText(), /Systems need the permission manage-systems/);
  await check(page, 'reader-overview');
  await page.goto(`${base}/console/jobs`);
  assert.match(await page.locator('.missing').innerText(), /run-jobs/);
  await check(page, 'reader-jobs');
  const refused = await page.goto(`${base}/console/systems`);
  assert.equal(refused.status(), 403);
  await page.context().close();
});
