// The dashboard in real headless Chromium (Debian's chromium, driven by playwright-core): sign in
// with a token, a denied connection shows in the live feed within 2 s, the quarantine list's remove
// button works for an operate token (and is absent for a read token). Saves a screenshot to
// test-output/dashboard.png (git-ignored), or to docs/img/dashboard.png, the picture in
// docs/observability.md, when SEGLB_UPDATE_SCREENSHOT=1.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { httpRequest, rawExchange, startBackend, type TestBackend } from '../support/net.ts';
import { startObservedSeglb } from '../support/observe.ts';
import type { TestSeglbAdmin } from '../support/seglb.ts';

const CHROMIUM = '/usr/bin/chromium';
/** A test run must not modify tracked files: the committed picture changes only when asked for. */
const SCREENSHOT = fileURLToPath(
  new URL(
    process.env['SEGLB_UPDATE_SCREENSHOT'] === '1'
      ? '../../docs/img/dashboard.png'
      : '../../test-output/dashboard.png',
    import.meta.url,
  ),
);
const skip = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser test`;

const YAML = (backend: string) => `
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: web
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: office, from: [127.0.0.0/24] }
      - { name: monitoring, from: [127.0.1.0/24], methods: [GET], paths: [/health] }
    deny:
      - { name: blocked, from: [127.0.0.66] }
  api:
    mode: audit
    vips: [{ listen: "127.0.0.1:0" }]
    pool: web
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: office, from: [127.0.0.0/24] }]
  db:
    vips: [{ listen: "127.0.0.1:0", protocol: tcp }]
    pool: web
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: app, from: [127.0.0.0/26] }]
pools:
  web:
    algorithm: round_robin
    backends: [{ address: "${backend}", name: web-1 }]
observe:
  detectors:
    interval_ms: 500
    lateral_movement: { min_segments: 2, window_ms: 10000 }
`;

describe('dashboard in headless Chromium', { skip }, () => {
  let backend: TestBackend;
  let lb: TestSeglbAdmin;
  let browser: Browser;

  before(async () => {
    backend = await startBackend('web-1');
    lb = await startObservedSeglb(YAML(backend.address));
    const res = await lb.api(
      'POST',
      '/quarantine',
      { cidr: '127.0.9.9', ttl_ms: 3_600_000, reason: 'suspicious scanner (test)' },
      lb.tokens.operate,
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
  });

  after(async () => {
    await browser?.close();
    await lb?.stop();
    await backend?.close();
  });

  /** Some traffic of every kind, so the page has something to show. */
  async function traffic(): Promise<void> {
    const web = lb.port('web');
    for (let i = 0; i < 6; i++) await httpRequest({ port: web, localAddress: `127.0.0.${10 + (i % 3)}` });
    await httpRequest({ port: web, localAddress: '127.0.1.5', path: '/health' });
    await httpRequest({ port: web, localAddress: '127.0.1.5', path: '/admin' });
    await httpRequest({ port: lb.port('api'), localAddress: '127.0.2.20' });
    await httpRequest({ port: lb.port('api'), localAddress: '127.0.0.10' });
    await rawExchange(lb.port('db'), 'GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', {
      localAddress: '127.0.0.12',
    });
    await httpRequest({ port: lb.port('db'), localAddress: '127.0.0.200' });
  }

  it('signs in, shows a denied flow within 2 s, and removes a quarantine entry', async () => {
    const page = await browser.newPage({ viewport: { width: 1500, height: 1000 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${lb.adminUrl}/dashboard`);
    await page.fill('#token', lb.tokens.operate);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#live.on', { timeout: 5000 });
    assert.equal(await page.textContent('#who'), 'operate1 (operate)');

    await traffic();
    const started = Date.now();
    assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.0.66' })).status, 0);
    await page.waitForSelector('#feed li.flow.deny[data-source="127.0.0.66"]', { timeout: 2000 });
    const latency = Date.now() - started;
    assert.ok(latency < 2000, `denied flow shown after ${latency} ms`);
    // A source denied on two segments: the lateral-movement alert joins the feed.
    await httpRequest({ port: lb.port('db'), localAddress: '127.0.0.66' });
    await page.waitForSelector('#feed li.alert[data-detector="lateral_movement"]', { timeout: 3000 });

    // Segments, matrix, pools and quarantine are filled in.
    await page.waitForSelector('.card[data-segment="web"]');
    await page.locator('#matrix tr').nth(2).waitFor({ timeout: 5000 });
    assert.match((await page.textContent('#pools')) ?? '', /web-1/);
    assert.match((await page.textContent('#cluster')) ?? '', /single node/);
    const row = page.locator('#quarantine tr[data-cidr="127.0.9.9/32"]');
    await row.waitFor({ timeout: 3000 });
    assert.match((await row.textContent()) ?? '', /suspicious scanner/);
    // Steady traffic for two intervals, so the live rates in the picture are not all zero.
    const until = Date.now() + 1200;
    while (Date.now() < until) {
      await httpRequest({ port: lb.port('web'), localAddress: '127.0.0.11' });
      await httpRequest({ port: lb.port('web'), localAddress: '127.0.3.77' });
      await httpRequest({ port: lb.port('api'), localAddress: '127.0.2.21' });
      await new Promise((r) => setTimeout(r, 20));
    }
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    await page.click('button[data-remove="127.0.9.9/32"]');
    await row.waitFor({ state: 'detached', timeout: 3000 });
    const q = await lb.api('GET', '/quarantine', undefined, lb.tokens.read);
    assert.deepEqual(q.body, []);
    const audit = lb.control.audit.recent(10).find((e) => e.action === 'quarantine_remove');
    assert.equal(audit?.actor, 'token:operate1');
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('shows no remove button to a read token, and refuses a bad token', async () => {
    await lb.api('POST', '/quarantine', { cidr: '127.0.9.10', ttl_ms: 600_000 }, lb.tokens.operate);
    const page = await browser.newPage();
    await page.goto(`${lb.adminUrl}/dashboard`);
    await page.fill('#token', 'not-a-valid-token-at-all');
    await page.click('#login-form button[type=submit]');
    await page.locator('#login-error:not(:empty)').waitFor();
    await page.fill('#token', lb.tokens.read);
    await page.click('#login-form button[type=submit]');
    await page.locator('#quarantine tr[data-cidr="127.0.9.10/32"]').waitFor({ timeout: 5000 });
    assert.equal(await page.locator('button[data-remove]').count(), 0);
    // The token lives in this tab's sessionStorage: a reload stays signed in.
    await page.reload();
    await page.waitForSelector('#live.on', { timeout: 5000 });
    await page.close();
  });
});
