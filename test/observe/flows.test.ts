// Flow records: the ring (unit), the JSON-lines flow log with rotation (unit), and end to end over
// loopback: GET /flows with its filters, record fields for HTTP/TCP/denied/audit flows, the flow
// log file, source-group aggregates, flows switched off, and the live stream with its ticket.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FLOW_ALLOW, FLOW_CONN, FLOW_DENY, FLOW_REQ, FlowLog, FlowRing } from '../../src/observe/index.ts';
import { createLogger } from '../../src/observe/log.ts';
import { httpRequest, rawExchange, startBackend, type TestBackend } from '../support/net.ts';
import { scrape, startObservedSeglb } from '../support/observe.ts';
import { type TestSeglbAdmin, tempDir } from '../support/seglb.ts';

const silent = createLogger({ level: 'silent', format: 'json' });

describe('FlowRing', () => {
  it('keeps the newest records, newest first, and filters', () => {
    const ring = new FlowRing(4);
    for (let i = 0; i < 6; i++)
      ring.push(
        1000 + i,
        i % 2 ? FLOW_REQ : FLOW_CONN,
        i < 3 ? 'a' : 'b',
        'v',
        `s${i}`,
        i === 4 ? FLOW_DENY : FLOW_ALLOW,
        'r',
        '',
        200,
        i,
        0,
        1,
      );
    assert.equal(ring.written, 6);
    assert.deepEqual(
      ring.query({ limit: 10 }).map((f) => f.source),
      ['s5', 's4', 's3', 's2'],
    );
    assert.deepEqual(
      ring.query({ limit: 10, segment: 'a' }).map((f) => f.seq),
      [3],
    );
    assert.deepEqual(
      ring.query({ limit: 10, verdict: 'deny' }).map((f) => f.source),
      ['s4'],
    );
    assert.deepEqual(
      ring.query({ limit: 2 }).map((f) => f.seq),
      [6, 5],
    );
    assert.deepEqual(
      ring.query({ limit: 10, afterSeq: 4 }).map((f) => f.seq),
      [6, 5],
    );
    const [f] = ring.query({ limit: 1 });
    assert.deepEqual(f, {
      seq: 6,
      time: new Date(1005).toISOString(),
      kind: 'req',
      segment: 'b',
      vip: 'v',
      source: 's5',
      verdict: 'allow',
      rule: 'r',
      backend: '',
      status: 200,
      bytesIn: 5,
      bytesOut: 0,
      durationMs: 1,
    });
  });

  it('with capacity 0 keeps nothing but still numbers the flows', () => {
    const ring = new FlowRing(0);
    ring.push(1, FLOW_CONN, 'a', 'v', 's', FLOW_ALLOW, 'r', '', 0, 0, 0, 0);
    assert.equal(ring.written, 1);
    assert.deepEqual(ring.query({ limit: 10 }), []);
  });
});

describe('FlowLog', () => {
  it('rotates by size and keeps `keep` old files', () => {
    const dir = tempDir();
    const file = join(dir, 'flows.jsonl');
    const log = new FlowLog({ file, maxBytes: 4096, keep: 2, flushMs: 60_000 }, silent);
    const line = JSON.stringify({ pad: 'x'.repeat(1000) });
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 4; i++) log.write(line);
      log.flush();
    }
    log.close();
    assert.deepEqual(readdirSync(dir).sort(), ['flows.jsonl', 'flows.jsonl.1', 'flows.jsonl.2']);
    for (const f of readdirSync(dir)) {
      const text = readFileSync(join(dir, f), 'utf8');
      assert.ok(Buffer.byteLength(text) <= 4096, `${f} is ${text.length} bytes`);
      for (const l of text.trim().split('\n')) assert.deepEqual(JSON.parse(l), { pad: 'x'.repeat(1000) });
    }
    assert.equal(log.written, 16);
    assert.ok(log.rotations >= 3);
  });

  it('drops (and counts) lines beyond its buffer bound instead of growing', () => {
    const dir = tempDir();
    const log = new FlowLog(
      { file: join(dir, 'f.jsonl'), maxBytes: 1 << 20, keep: 1, flushMs: 60_000, maxBufferBytes: 100 },
      silent,
    );
    for (let i = 0; i < 10; i++) log.write('y'.repeat(30));
    assert.equal(log.dropped, 7);
    log.close();
    assert.equal(readFileSync(join(dir, 'f.jsonl'), 'utf8').trim().split('\n').length, 3);
  });
});

function config(backend: string, observe: string): string {
  return `
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: clients, from: [127.0.0.0/24] }]
    deny: [{ name: blocked, from: [127.0.0.66] }]
  legacy:
    mode: audit
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: known, from: [127.0.0.0/24] }]
  db:
    vips: [{ listen: "127.0.0.1:0", protocol: tcp }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: app, from: [127.0.0.0/24] }]
pools:
  p: { backends: [{ address: "${backend}", name: b1 }] }
${observe}`;
}

describe('flow records end to end', () => {
  let backend: TestBackend;
  let lb: TestSeglbAdmin;
  let dir: string;

  before(async () => {
    backend = await startBackend('b1');
    dir = tempDir();
    lb = await startObservedSeglb(
      config(backend.address, 'observe:\n  flow_log: { file: logs-flows.jsonl }\n'),
      dir,
    );
    assert.equal(
      (await httpRequest({ port: lb.port('web'), localAddress: '127.0.0.10', path: '/big/5000' })).status,
      200,
    );
    assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.0.66' })).status, 0);
    assert.equal((await httpRequest({ port: lb.port('legacy'), localAddress: '127.0.7.7' })).status, 200);
    const tcp = await rawExchange(lb.port('db'), 'GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', {
      localAddress: '127.0.0.12',
    });
    assert.match(tcp.received, /200/);
    await new Promise((r) => setTimeout(r, 100));
  });

  after(async () => {
    await lb.stop();
    await backend.close();
  });

  const flows = async (query = '') => {
    const res = await lb.api('GET', `/flows${query}`, undefined, lb.tokens.read);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.flows as Record<string, unknown>[];
  };

  it('records an HTTP request with backend, status, bytes and duration, and its connection', async () => {
    const [req] = await flows('?segment=web&verdict=allow&source=127.0.0.10');
    assert.ok(req);
    // Newest first: the connection closes after its request ends.
    const all = await flows('?segment=web&source=127.0.0.10');
    const r = all.find((f) => f.kind === 'req');
    const c = all.find((f) => f.kind === 'conn');
    assert.equal(r?.verdict, 'allow');
    assert.equal(r?.rule, 'clients');
    assert.equal(r?.backend, 'b1');
    assert.equal(r?.status, 200);
    assert.equal(r?.bytesOut, 5000);
    assert.equal(r?.vip, '127.0.0.1:0');
    assert.ok((r?.durationMs as number) > 0);
    assert.equal(c?.verdict, 'allow');
    assert.ok((c?.bytesOut as number) > 5000);
    assert.ok((c?.bytesIn as number) > 0);
    assert.match(String(c?.time), /^\d{4}-\d\d-\d\dT/);
  });

  it('records a connection denied at accept with its rule', async () => {
    const denied = await flows('?verdict=deny');
    assert.equal(denied.length, 1);
    assert.deepEqual(
      { ...denied[0], seq: 0, time: '' },
      {
        seq: 0,
        time: '',
        kind: 'conn',
        segment: 'web',
        vip: '127.0.0.1:0',
        source: '127.0.0.66',
        verdict: 'deny',
        rule: 'blocked',
        backend: '',
        status: 0,
        bytesIn: 0,
        bytesOut: 0,
        durationMs: 0,
      },
    );
  });

  it('records audit-mode would-denies as verdict audit, let through', async () => {
    const audit = await flows('?verdict=audit');
    assert.deepEqual(audit.map((f) => [f.kind, f.segment, f.rule, f.status]).sort(), [
      ['conn', 'legacy', 'default-deny', 0],
      ['req', 'legacy', 'default-deny', 200],
    ]);
  });

  it('records TCP connections with their backend and bytes', async () => {
    const [tcp] = await flows('?segment=db');
    assert.equal(tcp?.kind, 'conn');
    assert.equal(tcp?.backend, 'b1');
    assert.ok((tcp?.bytesIn as number) > 30 && (tcp?.bytesOut as number) > 30);
  });

  it('filters and limits, and refuses a bad filter', async () => {
    assert.equal((await flows('?limit=2')).length, 2);
    const bad = await lb.api('GET', '/flows?verdict=maybe', undefined, lb.tokens.read);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'SEGLB_ADMIN_BAD_REQUEST');
    assert.equal((await lb.api('GET', '/flows?limit=0', undefined, lb.tokens.read)).status, 400);
    assert.equal((await lb.api('GET', '/flows', undefined, null)).status, 401);
  });

  it('writes the flow log as JSON lines (relative path: next to the config file)', async () => {
    lb.runtime.observer.flowLog?.flush();
    const file = join(dir, 'logs-flows.jsonl');
    assert.ok(existsSync(file));
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, (await flows('?limit=1000')).length);
    assert.ok(lines.some((l) => l.verdict === 'deny' && l.source === '127.0.0.66'));
  });

  it('aggregates by segment, source /24 and verdict', async () => {
    const res = await lb.api('GET', '/aggregates', undefined, lb.tokens.read);
    const web = res.body.segments.find((s: { segment: string }) => s.segment === 'web');
    const g = web.groups.find((x: { group: string }) => x.group === '127.0.0.0/24');
    assert.equal(g.deny, 1);
    assert.equal(g.allow, 2); // the request and its connection
    const legacy = res.body.segments.find((s: { segment: string }) => s.segment === 'legacy');
    assert.equal(legacy.groups[0].group, '127.0.7.0/24');
    assert.equal(legacy.groups[0].audit, 2);
  });
});

describe('flows switched off', () => {
  it('keeps no records, while metrics still count', async () => {
    const backend = await startBackend('b1');
    const lb = await startObservedSeglb(config(backend.address, 'observe: { flows: { enabled: false } }'));
    try {
      assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.0.10' })).status, 200);
      assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.0.66' })).status, 0);
      const res = await lb.api('GET', '/flows', undefined, lb.tokens.read);
      assert.deepEqual(res.body.flows, []);
      assert.equal(res.body.enabled, false);
      const m = await scrape(lb);
      assert.equal(m.sum('seglb_connections_total', { segment: 'web' }), 2);
      assert.equal(m.sum('seglb_requests_total', { segment: 'web' }), 1);
    } finally {
      await lb.stop();
      await backend.close();
    }
  });
});

/** One SSE event's JSON, loosely typed for assertions. */
type SseData = Record<string, unknown> & {
  token?: { role: string };
  source?: string;
  verdict?: string;
  segments?: { name: string }[];
};

describe('live event stream', () => {
  let backend: TestBackend;
  let lb: TestSeglbAdmin;
  before(async () => {
    backend = await startBackend('b1');
    lb = await startObservedSeglb(
      config(
        backend.address,
        'observe:\n  detectors: { interval_ms: 200 }\n  events: { max_stream_clients: 2 }\n',
      ),
    );
  });
  after(async () => {
    await lb.stop();
    await backend.close();
  });

  /** Opens the stream and collects events until `until` returns true. */
  async function follow(
    url: string,
    until: (events: { event: string; data: SseData }[]) => boolean,
    headers = {},
  ) {
    const ac = new AbortController();
    const res = await fetch(url, { headers, signal: ac.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const events: { event: string; data: SseData }[] = [];
    const decoder = new TextDecoder();
    let buffer = '';
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const timer = setTimeout(() => ac.abort(), 5000);
    try {
      while (!until(events)) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end = buffer.indexOf('\n\n');
        while (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          end = buffer.indexOf('\n\n');
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) events.push({ event, data: JSON.parse(data) });
        }
      }
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
    return events;
  }

  it('opens with a ticket from an authenticated POST and streams stats and deny flows', async () => {
    const t = await lb.api('POST', '/events/ticket', undefined, lb.tokens.read);
    assert.equal(t.status, 200);
    assert.deepEqual(t.body.token, { name: 'read1', role: 'read' });
    const deny = setTimeout(() => httpRequest({ port: lb.port('web'), localAddress: '127.0.0.66' }), 300);
    const events = await follow(
      `${lb.adminUrl}/events/stream?ticket=${encodeURIComponent(t.body.ticket)}`,
      (ev) => ev.some((e) => e.event === 'flow') && ev.filter((e) => e.event === 'stats').length >= 2,
    );
    clearTimeout(deny);
    assert.equal(events[0]?.event, 'hello');
    assert.equal(events[0]?.data.token?.role, 'read');
    const flow = events.find((e) => e.event === 'flow')?.data;
    assert.equal(flow?.source, '127.0.0.66');
    assert.equal(flow?.verdict, 'deny');
    const stats = events.find((e) => e.event === 'stats')?.data;
    assert.ok(stats?.segments?.some((s) => s.name === 'web'));
  });

  it('accepts a bearer header instead of a ticket (fetch-based clients)', async () => {
    const events = await follow(`${lb.adminUrl}/events/stream`, (ev) => ev.length >= 1, {
      authorization: `Bearer ${lb.tokens.read}`,
    });
    assert.equal(events[0]?.event, 'hello');
  });

  it('refuses a forged, tampered or missing ticket and a ticket request without a token', async () => {
    const t = await lb.api('POST', '/events/ticket', undefined, lb.tokens.read);
    const tampered = `${t.body.ticket.slice(0, -2)}xx`;
    for (const q of ['?ticket=abc.def', `?ticket=${encodeURIComponent(tampered)}`, '']) {
      const res = await fetch(`${lb.adminUrl}/events/stream${q}`);
      assert.equal(res.status, 401, q);
      await res.arrayBuffer();
    }
    assert.equal((await lb.api('POST', '/events/ticket', undefined, null)).status, 401);
  });
});
