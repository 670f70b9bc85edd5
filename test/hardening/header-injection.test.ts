// Header injection and spoofing: CR/LF smuggled into header values (both directions), hop-by-hop
// abuse through Connection, and Host / X-Forwarded-* / Forwarded / X-Real-IP claims from untrusted
// clients, on plain requests and on WebSocket upgrades. The raw backend shows what was forwarded.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { httpRequest, rawExchange } from '../support/net.ts';
import { startSeglb, type TestSeglb } from '../support/seglb.ts';
import { type RawBackend, startRawBackend } from './support/raw-backend.ts';

/** Header lines (lowercase names) of the backend connection whose request line contains `marker`. */
function forwardedHead(backend: RawBackend, marker: string): Map<string, string[]> {
  const c = backend.connections.find((x) => x.bytes.includes(marker));
  assert.ok(c, `the backend never saw ${marker}`);
  const head = c.bytes.slice(0, c.bytes.indexOf('\r\n\r\n')).split('\r\n').slice(1);
  const out = new Map<string, string[]>();
  for (const line of head) {
    const i = line.indexOf(':');
    const name = line.slice(0, i).toLowerCase();
    out.set(name, [...(out.get(name) ?? []), line.slice(i + 1).trim()]);
  }
  return out;
}

describe('header injection and spoofing', () => {
  let backend: RawBackend;
  let lb: TestSeglb;
  before(async () => {
    backend = await startRawBackend('127.0.0.63');
    lb = await startSeglb(`
log: { level: silent }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
    deny: [{ name: no-admin-host, from: [any], hosts: [admin.example.com] }]
    trusted_proxies: [127.0.9.9]
pools:
  p:
    backends: [{ address: "${backend.address}" }]
`);
  });
  after(async () => {
    await lb.stop();
    await backend.close();
  });

  test('an untrusted client cannot set X-Forwarded-*, Forwarded or X-Real-IP', async () => {
    const r = await rawExchange(
      lb.port('web'),
      [
        'GET /spoof HTTP/1.1',
        'Host: www.example.com',
        'X-Forwarded-For: 10.6.6.6',
        'X-Forwarded-For: 10.7.7.7',
        'X-Forwarded-Host: evil.example',
        'X-Forwarded-Proto: https',
        'Forwarded: for=10.6.6.6;proto=https;host=evil.example',
        'X-Real-IP: 10.6.6.6',
        'Connection: close',
        '',
        '',
      ].join('\r\n'),
      { localAddress: '127.0.0.2' },
    );
    assert.match(r.received, /^HTTP\/1\.1 200 /);
    const h = forwardedHead(backend, 'GET /spoof ');
    assert.deepEqual(h.get('x-forwarded-for'), ['127.0.0.2']);
    assert.deepEqual(h.get('x-forwarded-host'), ['www.example.com']);
    assert.deepEqual(h.get('x-forwarded-proto'), ['http']);
    assert.equal(h.get('forwarded'), undefined);
    assert.equal(h.get('x-real-ip'), undefined);
    assert.deepEqual(h.get('host'), ['www.example.com']);
  });

  test('Connection cannot make seglb drop its own forwarding headers or Host (hop-by-hop abuse)', async () => {
    const r = await rawExchange(
      lb.port('web'),
      [
        'POST /hop HTTP/1.1',
        'Host: www.example.com',
        'Connection: close, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, Host, Content-Length',
        'Connection: x-forwarded-for',
        'X-Drop-Me: yes',
        'Connection: X-Drop-Me',
        'Content-Length: 5',
        '',
        'hello',
      ].join('\r\n'),
      { localAddress: '127.0.0.3' },
    );
    assert.match(r.received, /^HTTP\/1\.1 200 /);
    const h = forwardedHead(backend, 'POST /hop ');
    assert.deepEqual(h.get('x-forwarded-for'), ['127.0.0.3']);
    assert.deepEqual(h.get('x-forwarded-host'), ['www.example.com']);
    assert.deepEqual(h.get('x-forwarded-proto'), ['http']);
    assert.deepEqual(h.get('host'), ['www.example.com']);
    assert.equal(h.get('x-drop-me'), undefined, 'a header the client lists in Connection is hop-by-hop');
    assert.equal(
      h.get('connection')?.some((v) => /x-forwarded|x-drop/i.test(v)),
      false,
    );
    // The body stays framed, whether by Content-Length or re-framed as chunked.
    const bytes = backend.connections.find((c) => c.bytes.includes('POST /hop '))?.bytes ?? '';
    assert.ok(bytes.endsWith('hello') || bytes.endsWith('5\r\nhello\r\n0\r\n\r\n'), JSON.stringify(bytes));
  });

  test('a trusted proxy listing X-Forwarded-For in Connection still gets the chain extended', async () => {
    const r = await rawExchange(
      lb.port('web'),
      'GET /chain HTTP/1.1\r\nHost: www.example.com\r\nX-Forwarded-For: 127.0.5.5\r\nConnection: close, X-Forwarded-For\r\n\r\n',
      { localAddress: '127.0.9.9' },
    );
    assert.match(r.received, /^HTTP\/1\.1 200 /);
    const h = forwardedHead(backend, 'GET /chain ');
    assert.deepEqual(h.get('x-forwarded-for'), ['127.0.5.5, 127.0.9.9']);
  });

  test('a Host spelled with a trailing dot or in capitals meets the same host rules', async () => {
    for (const host of ['admin.example.com.', 'ADMIN.Example.COM', 'admin.example.com.:8080']) {
      const r = await httpRequest({ port: lb.port('web'), path: '/x', headers: { host } });
      assert.equal(r.status, 403, `Host ${host}`);
    }
    assert.ok(!backend.all().toLowerCase().includes('host: admin.example.com'));
  });

  test('CR, LF and NUL cannot be smuggled into request header values', async () => {
    for (const raw of [
      'GET /crlf HTTP/1.1\r\nHost: x\r\nX-A: a\rSet-Cookie: evil\r\n\r\n',
      'GET /crlf HTTP/1.1\r\nHost: x\r\nX-A: a\nX-Injected: 1\r\n\r\n',
      'GET /crlf HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n',
      'GET /crlf HTTP/1.1\r\nHost: x\r\nX-A: a%0d%0aX-Injected: 1\r\nConnection: close\r\n\r\n',
    ]) {
      const r = await rawExchange(lb.port('web'), raw);
      assert.match(r.received, /^HTTP\/1\.1 (400|200) /);
    }
    // Only the percent-encoded one (harmless text) may have been forwarded, verbatim.
    assert.ok(!/\r\nx-injected:/i.test(backend.all()));
    assert.ok(!/\r\nset-cookie:/i.test(backend.all()));
  });

  test('seglb never writes client-controlled text into its own response headers', async () => {
    const r = await rawExchange(
      lb.port('web'),
      'GET /%0d%0aSet-Cookie:%20evil HTTP/1.1\r\nHost: admin.example.com\r\nConnection: close\r\n\r\n',
    );
    assert.match(r.received, /^HTTP\/1\.1 403 /);
    const head = r.received.slice(0, r.received.indexOf('\r\n\r\n'));
    assert.ok(!/set-cookie/i.test(head), head);
  });
});

describe('response header injection from a backend', () => {
  test('a backend response with CR/LF or NUL in a header never reaches the client as headers', async () => {
    const evil = createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => {
        s.end('HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: evil=1\r\nContent-Length: 2\r\n\r\nok');
      });
    });
    evil.listen(0, '127.0.0.64');
    await once(evil, 'listening');
    const port = (evil.address() as AddressInfo).port;
    const lb = await startSeglb(`
log: { level: silent }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
    retries: 0
    backends: [{ address: "127.0.0.64:${port}" }]
`);
    try {
      const r = await httpRequest({ port: lb.port('web') });
      assert.equal(r.status, 502);
      assert.equal(r.headers['set-cookie'], undefined);
    } finally {
      await lb.stop();
      evil.close();
    }
  });
});

describe('WebSocket upgrades get the same forwarding-header rules', () => {
  let backend: RawBackend;
  let lb: TestSeglb;
  before(async () => {
    backend = await startRawBackend('127.0.0.65');
    lb = await startSeglb(`
log: { level: silent }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
    backends: [{ address: "${backend.address}" }]
`);
  });
  after(async () => {
    await lb.stop();
    await backend.close();
  });

  test('spoofed X-Forwarded-*, Forwarded and X-Real-IP are replaced or dropped on an upgrade', async () => {
    await rawExchange(
      lb.port('web'),
      [
        'GET /ws HTTP/1.1',
        'Host: www.example.com',
        'Upgrade: websocket',
        'Connection: Upgrade',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version: 13',
        'X-Forwarded-For: 10.6.6.6',
        'X-Forwarded-Host: evil.example',
        'X-Forwarded-Proto: https',
        'Forwarded: for=10.6.6.6',
        'X-Real-IP: 10.6.6.6',
        '',
        '',
      ].join('\r\n'),
      { localAddress: '127.0.0.4', timeoutMs: 1000 },
    );
    const h = forwardedHead(backend, 'GET /ws ');
    assert.deepEqual(h.get('x-forwarded-for'), ['127.0.0.4']);
    assert.deepEqual(h.get('x-forwarded-host'), ['www.example.com']);
    assert.deepEqual(h.get('x-forwarded-proto'), ['http']);
    assert.equal(h.get('forwarded'), undefined);
    assert.equal(h.get('x-real-ip'), undefined);
  });

  test('an upgrade with two Host headers or an invalid Host is refused before the backend', async () => {
    const before = backend.all().length;
    for (const hostLines of ['Host: a\r\nHost: b', 'Host: a b']) {
      const r = await rawExchange(
        lb.port('web'),
        `GET /ws2 HTTP/1.1\r\n${hostLines}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`,
        { timeoutMs: 1000 },
      );
      assert.match(r.received, /^HTTP\/1\.1 400 /);
    }
    assert.equal(backend.all().slice(before), '');
  });
});

describe('llhttp stays strict', () => {
  test('nothing in src/ enables the lenient parser', () => {
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const p = join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (p.endsWith('.ts')) files.push(p);
      }
    };
    walk(new URL('../../src', import.meta.url).pathname);
    for (const f of files) {
      const text = readFileSync(f, 'utf8');
      assert.ok(
        !/insecureHTTPParser\s*:\s*true|insecure-http-parser/.test(text),
        `${f} enables the lenient parser`,
      );
    }
    assert.ok(!process.execArgv.includes('--insecure-http-parser'));
    assert.ok(!(process.env.NODE_OPTIONS ?? '').includes('insecure-http-parser'));
  });
});
