// Anomaly detectors over real loopback connections from many 127.x sources: each detector fires on
// its generated pattern and stays quiet on normal traffic; the quarantine action blocks the source
// (persisted and audited through PolicyControl as detector:NAME); dry run only reports; webhook.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Ewma } from '../../src/observe/index.ts';
import { httpRequest, startBackend, type TestBackend } from '../support/net.ts';
import { startObservedSeglb } from '../support/observe.ts';
import type { TestSeglbAdmin } from '../support/seglb.ts';

/** Three HTTP segments: `a` allows 127.0.0.0/16 except 127.0.9.0/24; `b` and `c` allow 127.0.0.0/24. */
function config(backend: string, detectors: string, extra = ''): string {
  const seg = (name: string, allow: string, deny = '[]') => `
  ${name}:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: ${name}-clients, from: [${allow}] }]
    deny: ${deny}`;
  return `
segments:${seg('a', '127.0.0.0/16', '[{ name: a-blocked, from: [127.0.9.0/24] }]')}${seg('b', '127.0.0.0/24')}${seg('c', '127.0.0.0/24')}
pools:
  p: { backends: [{ address: "${backend}" }] }
observe:
  detectors:
    interval_ms: 400
    cooldown_ms: 60000
${detectors}
${extra}`;
}

/** All detectors off except the ones a test turns on. */
const OFF = `
    deny_spike: { enabled: false }
    new_source_surge: { enabled: false }
    lateral_movement: { enabled: false }
    connection_rate: { enabled: false }`;

function only(name: string, settings: string): string {
  return OFF.replace(new RegExp(`${name}: \\{ enabled: false \\}`), `${name}: { ${settings} }`);
}

async function alerts(lb: TestSeglbAdmin, detector?: string) {
  const res = await lb.api('GET', '/events?limit=1000', undefined, lb.tokens.read);
  assert.equal(res.status, 200);
  const events = res.body.events as { detector: string; [k: string]: unknown }[];
  return detector ? events.filter((e) => e.detector === detector) : events;
}

/** Waits for an alert of `detector` (up to timeoutMs). */
async function waitForAlert(lb: TestSeglbAdmin, detector: string, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const found = await alerts(lb, detector);
    if (found.length > 0) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no ${detector} alert within ${timeoutMs} ms`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A steady background of normal traffic: a few known clients, a few requests per interval. */
async function normalTraffic(lb: TestSeglbAdmin, rounds: number): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    for (const seg of ['a', 'b', 'c'])
      assert.equal(
        (await httpRequest({ port: lb.port(seg), localAddress: `127.0.0.${20 + (i % 3)}` })).status,
        200,
      );
    // One stray denied connection now and then is normal too.
    if (i % 4 === 0) await httpRequest({ port: lb.port('a'), localAddress: '127.0.9.1' });
    await sleep(40);
  }
}

describe('EWMA baseline', () => {
  it('follows the mean and variance of a series (μ, σ² recurrences of docs/observability.md)', () => {
    const e = new Ewma();
    for (let i = 0; i < 500; i++) e.update(i % 2 === 0 ? 8 : 12, 0.1);
    assert.ok(Math.abs(e.mean - 10) < 0.3, String(e.mean));
    assert.ok(Math.abs(e.stddev - 2) < 0.3, String(e.stddev));
    assert.equal(e.threshold(4, 3, 50), 50);
    assert.ok(Math.abs(e.threshold(4, 1, 1) - (e.mean + 4 * e.stddev)) < 1e-9);
  });
});

describe('anomaly detectors', () => {
  let backend: TestBackend;
  before(async () => {
    backend = await startBackend('p1');
  });
  after(() => backend.close());

  describe('deny spike', () => {
    let lb: TestSeglbAdmin;
    before(async () => {
      lb = await startObservedSeglb(
        config(backend.address, only('deny_spike', 'min_count: 15, warmup_intervals: 2, threshold_ratio: 3')),
      );
    });
    after(() => lb.stop());

    it('stays quiet on normal traffic (a stray deny now and then)', async () => {
      await normalTraffic(lb, 20);
      assert.deepEqual(await alerts(lb, 'deny_spike'), []);
    });

    it('fires when denies jump far above the baseline, naming the top sources', async () => {
      const sources = Array.from({ length: 40 }, (_, i) => `127.0.9.${10 + (i % 4)}`);
      await Promise.all(sources.map((s) => httpRequest({ port: lb.port('a'), localAddress: s })));
      const [alert] = await waitForAlert(lb, 'deny_spike');
      assert.equal(alert?.segment, 'a');
      assert.equal(alert?.action, 'alert');
      assert.ok((alert?.value as number) >= 15);
      assert.ok((alert?.baseline as number) < 5, `baseline ${alert?.baseline}`);
      assert.match(String(alert?.message), /denied connections\/requests on segment a/);
      // Alert only: nobody was quarantined.
      assert.equal(lb.runtime.quarantine.list().length, 0);
    });
  });

  describe('new-source surge', () => {
    let lb: TestSeglbAdmin;
    before(async () => {
      lb = await startObservedSeglb(
        config(backend.address, only('new_source_surge', 'min_count: 15, warmup_intervals: 2')),
      );
    });
    after(() => lb.stop());

    it('stays quiet while the same clients come back', async () => {
      await normalTraffic(lb, 20);
      assert.deepEqual(await alerts(lb, 'new_source_surge'), []);
    });

    it('fires when many never-seen sources arrive at once', async () => {
      const sources = Array.from(
        { length: 40 },
        (_, i) => `127.0.${100 + Math.floor(i / 20)}.${1 + (i % 20)}`,
      );
      await Promise.all(sources.map((s) => httpRequest({ port: lb.port('a'), localAddress: s })));
      const [alert] = await waitForAlert(lb, 'new_source_surge');
      assert.equal(alert?.segment, 'a');
      assert.ok((alert?.value as number) >= 15);
    });
  });

  describe('lateral movement', () => {
    let lb: TestSeglbAdmin;
    let hook: { bodies: unknown[]; close: () => Promise<void>; url: string };
    before(async () => {
      hook = await startWebhook();
      lb = await startObservedSeglb(
        config(
          backend.address,
          only('lateral_movement', 'min_segments: 3, window_ms: 5000, action: quarantine'),
          `  webhook: { url: "${hook.url}" }`,
        ),
      );
    });
    after(async () => {
      await lb.stop();
      await hook.close();
    });

    it('stays quiet when a source is denied on one segment only, however often', async () => {
      for (let i = 0; i < 10; i++) await httpRequest({ port: lb.port('a'), localAddress: '127.0.9.7' });
      await normalTraffic(lb, 5);
      await sleep(500);
      assert.deepEqual(await alerts(lb, 'lateral_movement'), []);
    });

    it('fires when one source is denied on three segments within the window, and quarantines it', async () => {
      const probe = '127.0.5.5'; // allowed on a, denied on b and c ... and on a by quarantine next
      assert.equal((await httpRequest({ port: lb.port('a'), localAddress: '127.0.9.50' })).status, 0);
      assert.equal((await httpRequest({ port: lb.port('b'), localAddress: '127.0.9.50' })).status, 0);
      assert.equal((await httpRequest({ port: lb.port('a'), localAddress: probe })).status, 200);
      assert.equal((await httpRequest({ port: lb.port('c'), localAddress: '127.0.9.50' })).status, 0);
      const [alert] = await waitForAlert(lb, 'lateral_movement');
      assert.equal(alert?.source, '127.0.9.50');
      assert.equal(alert?.value, 3);
      assert.deepEqual(alert?.quarantine, ['127.0.9.50']);
      assert.match(String(alert?.message), /denied on 3 segments/);
      // Quarantined through PolicyControl: in the set, audited with the detector as actor.
      const q = await lb.api('GET', '/quarantine', undefined, lb.tokens.read);
      assert.deepEqual(
        q.body.map((e: { cidr: string }) => e.cidr),
        ['127.0.9.50/32'],
      );
      const audit = lb.control.audit.recent(20).find((e) => e.action === 'quarantine_add');
      assert.equal(audit?.actor, 'detector:lateral_movement');
      // The webhook got the alert as JSON.
      const deadline = Date.now() + 2000;
      while (hook.bodies.length === 0 && Date.now() < deadline) await sleep(20);
      assert.equal((hook.bodies[0] as { detector: string }).detector, 'lateral_movement');
    });
  });

  describe('connection-rate abuse', () => {
    let lb: TestSeglbAdmin;
    before(async () => {
      lb = await startObservedSeglb(
        config(
          backend.address,
          only('connection_rate', 'max_connections: 20, window_ms: 60000, action: quarantine'),
        ),
      );
    });
    after(() => lb.stop());

    it('stays quiet below the limit', async () => {
      for (let i = 0; i < 15; i++)
        assert.equal((await httpRequest({ port: lb.port('b'), localAddress: '127.0.0.30' })).status, 200);
      await sleep(500);
      assert.deepEqual(await alerts(lb, 'connection_rate'), []);
    });

    it('fires past max_connections in the window, and the quarantine blocks the source', async () => {
      const abuser = '127.0.0.31';
      for (let i = 0; i < 20; i++)
        assert.equal((await httpRequest({ port: lb.port('b'), localAddress: abuser })).status, 200);
      // The 21st crosses the limit: the quarantine closes it (and any other open one) at once.
      await httpRequest({ port: lb.port('b'), localAddress: abuser });
      const [alert] = await waitForAlert(lb, 'connection_rate');
      assert.equal(alert?.source, abuser);
      assert.equal(alert?.threshold, 20);
      assert.deepEqual(alert?.quarantine, [abuser]);
      // Blocked everywhere now, while other clients still pass.
      for (const seg of ['a', 'b', 'c'])
        assert.equal((await httpRequest({ port: lb.port(seg), localAddress: abuser })).status, 0, seg);
      assert.equal((await httpRequest({ port: lb.port('b'), localAddress: '127.0.0.30' })).status, 200);
      const flows = await lb.api('GET', `/flows?source=${abuser}&verdict=deny`, undefined, lb.tokens.read);
      assert.ok(flows.body.flows.length >= 3);
      assert.equal(flows.body.flows[0].rule, 'quarantine');
      const entry = lb.runtime.quarantine.list()[0];
      assert.ok(entry && entry.expiresAt - Date.now() > 800_000, 'quarantine_ttl_ms default 15 min');
      assert.match(entry?.reason ?? '', /^detector connection_rate/);
    });
  });

  describe('dry run', () => {
    it('reports what the quarantine action would do, and does nothing', async () => {
      const lb = await startObservedSeglb(
        config(
          backend.address,
          only('connection_rate', 'max_connections: 5, window_ms: 60000, action: quarantine, dry_run: true'),
        ),
      );
      try {
        for (let i = 0; i < 8; i++) await httpRequest({ port: lb.port('a'), localAddress: '127.0.0.40' });
        const [alert] = await waitForAlert(lb, 'connection_rate');
        assert.equal(alert?.dryRun, true);
        assert.deepEqual(alert?.quarantine, ['127.0.0.40']);
        assert.equal(lb.runtime.quarantine.list().length, 0);
        assert.equal((await httpRequest({ port: lb.port('a'), localAddress: '127.0.0.40' })).status, 200);
      } finally {
        await lb.stop();
      }
    });
  });
});

/** A webhook receiver on loopback collecting the JSON bodies it gets. */
async function startWebhook(): Promise<{ bodies: unknown[]; close: () => Promise<void>; url: string }> {
  const bodies: unknown[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(JSON.parse(Buffer.concat(chunks).toString()));
      res.end('ok');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return {
    bodies,
    url,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
