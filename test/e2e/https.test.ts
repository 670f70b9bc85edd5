// HTTPS VIPs end to end: TLS termination, SNI with several certificates, TLS 1.2+ only, and the
// accept-time verdict before the handshake.

import assert from 'node:assert/strict';
import { request } from 'node:https';
import { after, before, describe, test } from 'node:test';
import { type ConnectionOptions, connect, type PeerCertificate } from 'node:tls';
import { loadConfigFile } from '../../src/config/index.ts';
import { makeCert } from '../support/certs.ts';
import { startBackend, type TestBackend } from '../support/net.ts';
import { startSeglb, type TestSeglb, tempDir } from '../support/seglb.ts';

function handshake(
  port: number,
  servername: string | undefined,
  opts: { maxVersion?: 'TLSv1.1' | 'TLSv1.3'; localAddress?: string } = {},
) {
  return new Promise<{ cn?: string; protocol?: string | null; fingerprint?: string; error?: string }>(
    (resolve) => {
      const options = {
        host: '127.0.0.1',
        port,
        servername,
        rejectUnauthorized: false,
        minVersion: opts.maxVersion === 'TLSv1.1' ? ('TLSv1' as const) : undefined,
        maxVersion: opts.maxVersion,
        localAddress: opts.localAddress,
      } as ConnectionOptions;
      const s = connect(options);
      s.once('secureConnect', () => {
        const cert = s.getPeerCertificate() as PeerCertificate;
        resolve({
          cn: cert.subject?.CN as string | undefined,
          protocol: s.getProtocol(),
          fingerprint: cert.fingerprint256,
        });
        s.end();
      });
      s.once('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    },
  );
}

describe('HTTPS VIP', () => {
  let backend: TestBackend;
  let lb: TestSeglb;
  let dir: string;
  before(async () => {
    dir = tempDir();
    makeCert(dir, 'default', ['default.example']);
    makeCert(dir, 'a', ['a.example']);
    makeCert(dir, 'b', ['*.b.example']);
    backend = await startBackend('tls-backend', '127.0.0.61');
    process.env.SEGLB_TEST_KEY_B = (await import('node:fs')).readFileSync(`${dir}/b.key`, 'utf8');
    lb = await startSeglb(
      `
log: { level: silent }
segments:
  secure:
    vips:
      - listen: "127.0.0.1:0"
        protocol: https
        tls:
          certificates:
            - { cert_file: default.crt, key_file: default.key }
            - { cert_file: a.crt, key_file: a.key, servernames: [a.example] }
            - { cert_file: b.crt, key_env: SEGLB_TEST_KEY_B, servernames: ["*.b.example"] }
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/29] }]
pools:
  p:
    backends: [{ address: "${backend.address}" }]
`,
      dir,
    );
  });
  after(async () => {
    await lb.stop();
    await backend.close();
    delete process.env.SEGLB_TEST_KEY_B;
  });

  test('SNI selects the certificate; unknown names get the default', async () => {
    const port = lb.port('secure');
    assert.equal((await handshake(port, 'a.example')).cn, 'a.example');
    assert.equal((await handshake(port, 'x.b.example')).cn, '*.b.example');
    assert.equal((await handshake(port, 'other.example')).cn, 'default.example');
    assert.equal((await handshake(port, undefined)).cn, 'default.example');
  });

  test('TLS 1.1 is refused; TLS 1.3 is offered', async () => {
    const port = lb.port('secure');
    const old = await handshake(port, 'a.example', { maxVersion: 'TLSv1.1' });
    assert.ok(old.error, 'a TLS 1.1 handshake must fail');
    assert.equal((await handshake(port, 'a.example')).protocol, 'TLSv1.3');
  });

  test('requests are proxied with X-Forwarded-Proto https', async () => {
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: lb.port('secure'),
          path: '/tls',
          servername: 'a.example',
          rejectUnauthorized: false,
          agent: false,
        },
        (r) => {
          let body = '';
          r.setEncoding('utf8');
          r.on('data', (d: string) => {
            body += d;
          });
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(res.status, 200);
    assert.equal(res.body, 'tls-backend');
    const seen = backend.seen.find((s) => s.url === '/tls');
    assert.equal(seen?.headers['x-forwarded-proto'], 'https');
    assert.equal(seen?.headers['x-forwarded-for'], '127.0.0.1');
  });

  test('a denied source is reset before the TLS handshake starts', async () => {
    const r = await handshake(lb.port('secure'), 'a.example', { localAddress: '127.0.0.9' });
    assert.ok(r.error === 'ECONNRESET' || r.error === 'EPIPE', `got ${JSON.stringify(r)}`);
  });

  test('a renewed certificate is picked up on reload without re-binding or dropping connections', async () => {
    const port = lb.port('secure');
    const before = await handshake(port, 'a.example');
    const held = await handshake(port, 'default.example');
    assert.ok(held.fingerprint);
    makeCert(dir, 'a', ['a.example']);
    await lb.runtime.reload(loadConfigFile(lb.file));
    assert.equal(lb.port('secure'), port, 'same listener');
    const after = await handshake(port, 'a.example');
    assert.equal(after.cn, 'a.example');
    assert.notEqual(after.fingerprint, before.fingerprint, 'the new certificate is served');
  });
});
