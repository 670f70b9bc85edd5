// /metrics end to end: known traffic over loopback (allowed, denied at accept, L7-denied, TCP), then
// the scrape is parsed with a small text-format parser and every count checked; counters stay
// monotonic across a policy change; no source address ever appears as a label; metrics_auth.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { httpRequest, rawExchange, startBackend, type TestBackend } from '../support/net.ts';
import { parsePrometheusText, scrape, startObservedSeglb } from '../support/observe.ts';
import type { TestSeglbAdmin } from '../support/seglb.ts';

function config(backend: string, observe = ''): string {
  return `
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: web
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: clients, from: [127.0.0.0/24] }
      - { name: monitoring-health, from: [127.0.1.0/24], methods: [GET], paths: [/health] }
    deny:
      - { name: blocked, from: [127.0.0.66] }
  db:
    vips: [{ listen: "127.0.0.1:0", protocol: tcp }]
    pool: web
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: app, from: [127.0.0.0/24] }]
pools:
  web: { backends: [{ address: "${backend}", name: b1 }] }
${observe}`;
}

/** Waits until the flow records of closed connections are in (close events run after the response). */
async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 100));
}

describe('Prometheus /metrics', () => {
  let backend: TestBackend;
  let lb: TestSeglbAdmin;

  before(async () => {
    backend = await startBackend('b1', '127.0.0.1');
    lb = await startObservedSeglb(config(backend.address));
    const web = lb.port('web');
    const db = lb.port('db');
    for (let i = 0; i < 5; i++) {
      const r = await httpRequest({ port: web, localAddress: '127.0.0.10' });
      assert.equal(r.status, 200);
    }
    for (let i = 0; i < 3; i++) {
      const r = await httpRequest({ port: web, localAddress: '127.0.0.66' });
      assert.equal(r.status, 0, 'denied by rule "blocked": reset');
    }
    for (let i = 0; i < 2; i++) {
      const r = await httpRequest({ port: web, localAddress: '127.0.2.5' });
      assert.equal(r.status, 0, 'default deny: reset');
    }
    assert.equal((await httpRequest({ port: web, localAddress: '127.0.1.3', path: '/health' })).status, 200);
    assert.equal((await httpRequest({ port: web, localAddress: '127.0.1.3', path: '/other' })).status, 403);
    for (let i = 0; i < 2; i++) {
      const r = await rawExchange(db, 'GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', {
        localAddress: '127.0.0.11',
      });
      assert.match(r.received, /^HTTP\/1.1 200/);
    }
    await settle();
  });

  after(async () => {
    await lb.stop();
    await backend.close();
  });

  it('parses, with a TYPE for every family and _total counters', async () => {
    const m = await scrape(lb);
    assert.ok(m.samples.length > 20, String(m.samples.length));
    for (const [name, type] of m.types) {
      if (type === 'counter') assert.match(name, /_total$/, `${name} is a counter`);
      assert.match(name, /^seglb_/);
    }
    assert.equal(m.types.get('seglb_http_request_duration_seconds'), 'histogram');
  });

  it('counts connections by segment, VIP, verdict and rule', async () => {
    const m = await scrape(lb);
    const c = (match: Record<string, string>) => m.sum('seglb_connections_total', match);
    assert.equal(c({ segment: 'web', verdict: 'allow', rule: 'clients' }), 5);
    assert.equal(c({ segment: 'web', verdict: 'deny', rule: 'blocked' }), 3);
    assert.equal(c({ segment: 'web', verdict: 'deny', rule: 'default-deny' }), 2);
    assert.equal(c({ segment: 'web', verdict: 'allow', rule: 'monitoring-health' }), 2);
    assert.equal(c({ segment: 'db', verdict: 'allow', rule: 'app' }), 2);
    assert.equal(c({ segment: 'web' }), 12);
    const vips = new Set(
      m.samples.filter((s) => s.name === 'seglb_connections_total').map((s) => s.labels.vip),
    );
    assert.deepEqual([...vips].sort(), ['127.0.0.1:0']);
  });

  it('counts requests by verdict and rule, responses by class, and per-rule decisions', async () => {
    const m = await scrape(lb);
    const r = (match: Record<string, string>) => m.sum('seglb_requests_total', match);
    assert.equal(r({ segment: 'web', verdict: 'allow', rule: 'clients' }), 5);
    assert.equal(r({ segment: 'web', verdict: 'allow', rule: 'monitoring-health' }), 1);
    assert.equal(r({ segment: 'web', verdict: 'deny', rule: 'default-deny' }), 1);
    assert.equal(m.sum('seglb_http_responses_total', { segment: 'web', code: '2xx' }), 6);
    assert.equal(m.sum('seglb_http_responses_total', { segment: 'web', code: '4xx' }), 1);
    // Policy decisions: connection verdicts for non-L7 sources, request verdicts for L7 ones.
    const d = (match: Record<string, string>) => m.sum('seglb_rule_decisions_total', match);
    assert.equal(d({ segment: 'web', rule: 'clients', verdict: 'allow' }), 5);
    assert.equal(d({ segment: 'web', rule: 'blocked', verdict: 'deny' }), 3);
    assert.equal(d({ segment: 'web', rule: 'default-deny', verdict: 'deny' }), 3);
    assert.equal(d({ segment: 'web', rule: 'monitoring-health', verdict: 'allow' }), 1);
  });

  it('has latency histograms: request, backend and seglb overhead apart', async () => {
    const m = await scrape(lb);
    const count = (n: string) => m.sum(`${n}_count`, { segment: 'web' });
    assert.equal(count('seglb_http_request_duration_seconds'), 7);
    assert.equal(count('seglb_backend_response_duration_seconds'), 6, 'the 403 never reached a backend');
    assert.equal(count('seglb_overhead_duration_seconds'), 6);
    const inf = m.sum('seglb_http_request_duration_seconds_bucket', { segment: 'web', le: '+Inf' });
    assert.equal(inf, 7);
    const buckets = m.samples.filter(
      (s) => s.name === 'seglb_backend_response_duration_seconds_bucket' && s.labels.segment === 'web',
    );
    for (let i = 1; i < buckets.length; i++)
      assert.ok((buckets[i] as { value: number }).value >= (buckets[i - 1] as { value: number }).value);
    const overhead = m.sum('seglb_overhead_duration_seconds_sum', { segment: 'web' });
    const total = m.sum('seglb_http_request_duration_seconds_sum', { segment: 'web' });
    assert.ok(overhead >= 0 && overhead < total, `overhead ${overhead} < total ${total}`);
  });

  it('counts bytes, backends, policy version and quarantine', async () => {
    const m = await scrape(lb);
    assert.ok(m.sum('seglb_client_received_bytes_total', { segment: 'db' }) > 0);
    assert.ok(m.sum('seglb_client_sent_bytes_total', { segment: 'db' }) > 0);
    assert.ok(m.sum('seglb_client_sent_bytes_total', { segment: 'web' }) > 0);
    assert.equal(m.sum('seglb_backend_up', { pool: 'web', backend: 'b1' }), 1);
    assert.equal(m.sum('seglb_backend_health', { pool: 'web', backend: 'b1', view: 'local' }), 1);
    assert.equal(m.sum('seglb_backend_health', { view: 'cluster' }), 0, 'no cluster view without a cluster');
    assert.equal(m.sum('seglb_backend_picks_total', { pool: 'web', backend: 'b1' }), 8);
    assert.equal(m.sum('seglb_policy_version'), lb.runtime.snapshot.version);
    assert.equal(m.sum('seglb_quarantine_entries'), 0);
    assert.equal(m.sum('seglb_build_info'), 1);
  });

  it('never uses a source address as a label value', async () => {
    const m = await scrape(lb);
    for (const s of m.samples)
      for (const v of Object.values(s.labels))
        assert.ok(!/^127\.0\.(0\.(10|11|66)|1\.3|2\.5)$/.test(v), `${s.name} has a source label ${v}`);
  });

  it('stays monotonic across a policy change (new snapshot, rule counters restart underneath)', async () => {
    const before = await scrape(lb);
    const key = { segment: 'web', verdict: 'allow', rule: 'clients' };
    const res = await lb.api('POST', '/segments/web/rules', {
      kind: 'allow',
      rule: { name: 'extra', from: ['127.0.3.0/24'] },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.0.10' })).status, 200);
    assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.3.1' })).status, 200);
    await settle();
    const after = await scrape(lb);
    assert.equal(after.sum('seglb_connections_total', key), before.sum('seglb_connections_total', key) + 1);
    assert.equal(
      after.sum('seglb_connections_total', { segment: 'web', verdict: 'allow', rule: 'extra' }),
      1,
    );
    assert.equal(
      after.sum('seglb_rule_decisions_total', { segment: 'web', rule: 'clients', verdict: 'allow' }),
      before.sum('seglb_rule_decisions_total', { segment: 'web', rule: 'clients', verdict: 'allow' }) + 1,
    );
    assert.equal(
      after.sum('seglb_backend_picks_total', { pool: 'web', backend: 'b1' }),
      before.sum('seglb_backend_picks_total', { pool: 'web', backend: 'b1' }) + 2,
    );
    assert.equal(after.sum('seglb_policy_version'), before.sum('seglb_policy_version') + 1);
    for (const s of before.samples) {
      if (before.types.get(s.name) !== 'counter') continue;
      const now = after.samples.find(
        (x) => x.name === s.name && JSON.stringify(x.labels) === JSON.stringify(s.labels),
      );
      assert.ok(now && now.value >= s.value, `${s.name}${JSON.stringify(s.labels)} went down`);
    }
  });

  it('needs a token with the read role (metrics_auth: token)', async () => {
    const res = await fetch(`${lb.adminUrl}/metrics`);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="seglb"');
    const bad = await fetch(`${lb.adminUrl}/metrics`, {
      headers: { authorization: 'Bearer nope-nope-nope-nope' },
    });
    assert.equal(bad.status, 401);
  });
});

describe('metrics_auth: none', () => {
  it('serves /metrics without a token', async () => {
    const backend = await startBackend('b1');
    const lb = await startObservedSeglb(config(backend.address, 'observe: { metrics_auth: none }'));
    try {
      const res = await fetch(`${lb.adminUrl}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0.0.4/);
      const m = parsePrometheusText(await res.text());
      assert.equal(m.sum('seglb_build_info'), 1);
      // The rest of the API still needs a token.
      assert.equal((await fetch(`${lb.adminUrl}/flows`)).status, 401);
    } finally {
      await lb.stop();
      await backend.close();
    }
  });
});
