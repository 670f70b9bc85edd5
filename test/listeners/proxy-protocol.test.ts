// Tests the PROXY protocol reader: the pure parser and encoder on buffers, and readProxyHeader over
// real loopback sockets (split headers, payload hand-off to http.Server and to a raw reader, bad input).

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SeglbError } from '../../src/errors.ts';
import {
  encodeProxyHeader,
  PROXY_V2_MAX_BYTES,
  type ProxyHeaderResult,
  parseProxyHeader,
  readProxyHeader,
} from '../../src/listeners/proxy-protocol.ts';

const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** A v2 header from its parts: byte 12 (version/command), byte 13 (family/transport), the rest. */
function v2(versionCommand: number, familyTransport: number, body: Buffer, length = body.length): Buffer {
  const fixed = Buffer.from([versionCommand, familyTransport, length >> 8, length & 0xff]);
  return Buffer.concat([SIGNATURE, fixed, body]);
}

function v4Block(): Buffer {
  return Buffer.from([192, 0, 2, 1, 198, 51, 100, 7, 0x30, 0x39, 0x01, 0xbb]); // 12345 -> 443
}

function ascii(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

describe('parseProxyHeader v1 (spec §2.1)', () => {
  test('TCP4 with payload after it', () => {
    const buf = ascii('PROXY TCP4 192.0.2.1 198.51.100.7 12345 443\r\nGET /');
    assert.deepEqual(parseProxyHeader(buf), {
      kind: 'proxied',
      version: 1,
      sourceAddress: '192.0.2.1',
      sourcePort: 12345,
      destinationAddress: '198.51.100.7',
      destinationPort: 443,
      consumed: buf.length - 5,
    });
  });

  test('TCP6, addresses returned as given (IPv4-mapped not unmapped)', () => {
    const r = parseProxyHeader(ascii('PROXY TCP6 ::ffff:192.0.2.1 2001:db8::1 0 65535\r\n'));
    assert.equal(r.kind, 'proxied');
    assert.ok(r.kind === 'proxied');
    assert.equal(r.sourceAddress, '::ffff:192.0.2.1');
    assert.equal(r.destinationAddress, '2001:db8::1');
    assert.equal(r.sourcePort, 0);
    assert.equal(r.destinationPort, 65535);
  });

  test('UNKNOWN, bare or followed by anything, is local', () => {
    assert.deepEqual(parseProxyHeader(ascii('PROXY UNKNOWN\r\n')), {
      kind: 'local',
      version: 1,
      consumed: 15,
    });
    const long = ascii('PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\nX');
    assert.deepEqual(parseProxyHeader(long), { kind: 'local', version: 1, consumed: long.length - 1 });
  });

  test('the longest legal line (107 bytes) is accepted, 108 is not', () => {
    const max = `PROXY UNKNOWN ${'f'.repeat(107 - 14 - 2)}\r\n`;
    assert.equal(max.length, 107);
    assert.equal(parseProxyHeader(ascii(max)).kind, 'local');
    const over = `PROXY UNKNOWN ${'f'.repeat(107 - 14 - 1)}\r\n`;
    assert.equal(parseProxyHeader(ascii(over)).kind, 'invalid');
    assert.equal(parseProxyHeader(ascii(`PROXY TCP4 ${'1'.repeat(120)}`)).kind, 'invalid');
  });

  test('every strict prefix of a valid header is incomplete', () => {
    const full = ascii('PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n');
    for (let n = 0; n < full.length; n++) {
      assert.deepEqual(parseProxyHeader(full.subarray(0, n)), { kind: 'incomplete' }, `prefix of ${n} bytes`);
    }
  });

  const malformed: Array<[string, string]> = [
    ['lower-case signature', 'proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n'],
    ['unknown protocol', 'PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n'],
    ['UDP4', 'PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n'],
    ['UNKNOWN glued to text', 'PROXY UNKNOWNX\r\n'],
    ['IPv6 address in TCP4', 'PROXY TCP4 ::1 5.6.7.8 1 2\r\n'],
    ['IPv4 address in TCP6', 'PROXY TCP6 1.2.3.4 ::1 1 2\r\n'],
    ['IPv4 with a leading zero', 'PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n'],
    ['IPv4 octet over 255', 'PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n'],
    ['IPv6 zone id', 'PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n'],
    ['hostname', 'PROXY TCP4 localhost 5.6.7.8 1 2\r\n'],
    ['port with a leading zero', 'PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n'],
    ['port 65536', 'PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n'],
    ['signed port', 'PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n'],
    ['hex port', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 0x2\r\n'],
    ['missing port', 'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'],
    ['extra field', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n'],
    ['double space', 'PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n'],
    ['trailing space', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n'],
    ['tab separator', 'PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n'],
    ['bare LF', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'],
    ['CR not followed by LF', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX'],
  ];
  for (const [name, line] of malformed) {
    test(`rejects ${name}`, () => {
      const r = parseProxyHeader(ascii(line));
      assert.equal(r.kind, 'invalid', JSON.stringify(r));
      assert.ok(r.kind === 'invalid' && r.reason.length > 0);
    });
  }

  test('rejects at the first byte that cannot start a header', () => {
    assert.equal(parseProxyHeader(ascii('G')).kind, 'invalid');
    assert.equal(parseProxyHeader(ascii('PROXX')).kind, 'invalid');
    assert.equal(parseProxyHeader(ascii('PROXY')).kind, 'incomplete');
    assert.equal(parseProxyHeader(Buffer.from('PROXY TCP4 \x00', 'latin1')).kind, 'invalid');
    assert.equal(parseProxyHeader(ascii('\x16\x03\x01')).kind, 'invalid'); // a TLS ClientHello
  });
});

describe('parseProxyHeader v2 (spec §2.2)', () => {
  test('PROXY over AF_INET/STREAM', () => {
    const buf = Buffer.concat([v2(0x21, 0x11, v4Block()), ascii('payload')]);
    assert.deepEqual(parseProxyHeader(buf), {
      kind: 'proxied',
      version: 2,
      sourceAddress: '192.0.2.1',
      sourcePort: 12345,
      destinationAddress: '198.51.100.7',
      destinationPort: 443,
      consumed: 28,
    });
  });

  test('PROXY over AF_INET6/STREAM, addresses in RFC 5952 form', () => {
    const src = Buffer.from('20010db8000000000000000000000001', 'hex');
    const dst = Buffer.from('00000000000000000000ffffc0000201', 'hex'); // IPv4-mapped, kept as IPv6
    const r = parseProxyHeader(v2(0x21, 0x21, Buffer.concat([src, dst, Buffer.from([0, 1, 0xff, 0xff])])));
    assert.deepEqual(r, {
      kind: 'proxied',
      version: 2,
      sourceAddress: '2001:db8::1',
      sourcePort: 1,
      destinationAddress: '::ffff:192.0.2.1',
      destinationPort: 65535,
      consumed: 52,
    });
  });

  test('IPv6 text: longest zero run compressed, first on ties, single zero group kept', () => {
    const cases: Array<[string, string]> = [
      ['00000000000000000000000000000000', '::'],
      ['00000000000000000000000000000001', '::1'],
      ['20010db8000000010000000000000001', '2001:db8:0:1::1'],
      ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
      ['20010db8000100010001000100010001', '2001:db8:1:1:1:1:1:1'],
      ['20010db800000001000100010001ffff', '2001:db8:0:1:1:1:1:ffff'],
      ['fe800000000000000000000000000000', 'fe80::'],
    ];
    for (const [hex, text] of cases) {
      const body = Buffer.concat([Buffer.from(hex, 'hex'), Buffer.alloc(16), Buffer.alloc(4)]);
      const r = parseProxyHeader(v2(0x21, 0x21, body));
      assert.ok(r.kind === 'proxied', hex);
      assert.equal(r.sourceAddress, text);
      assert.equal(net.isIPv6(r.sourceAddress), true);
    }
  });

  test('TLVs are skipped and counted in consumed', () => {
    const tlvs = Buffer.from([0x01, 0x00, 0x02, 0x68, 0x32, 0x04, 0x00, 0x00]); // ALPN "h2", NOOP empty
    const buf = Buffer.concat([v2(0x21, 0x11, Buffer.concat([v4Block(), tlvs])), ascii('GET')]);
    const r = parseProxyHeader(buf);
    assert.equal(r.kind, 'proxied');
    assert.equal(r.consumed, buf.length - 3);
  });

  test('malformed TLVs are rejected', () => {
    assert.equal(
      parseProxyHeader(v2(0x21, 0x11, Buffer.concat([v4Block(), Buffer.from([1, 0])]))).kind,
      'invalid',
    );
    const overrun = Buffer.concat([v4Block(), Buffer.from([1, 0, 5, 0x68])]);
    assert.equal(parseProxyHeader(v2(0x21, 0x11, overrun)).kind, 'invalid');
  });

  test('LOCAL command is local whatever the family, protocol block ignored', () => {
    assert.deepEqual(parseProxyHeader(v2(0x20, 0x00, Buffer.alloc(0))), {
      kind: 'local',
      version: 2,
      consumed: 16,
    });
    assert.deepEqual(parseProxyHeader(v2(0x20, 0x11, v4Block())), {
      kind: 'local',
      version: 2,
      consumed: 28,
    });
    assert.deepEqual(parseProxyHeader(v2(0x20, 0xff, Buffer.alloc(3))), {
      kind: 'local',
      version: 2,
      consumed: 19,
    });
  });

  test('PROXY with AF_UNSPEC, or AF_UNIX over STREAM, is local', () => {
    assert.deepEqual(parseProxyHeader(v2(0x21, 0x00, Buffer.alloc(0))), {
      kind: 'local',
      version: 2,
      consumed: 16,
    });
    assert.deepEqual(parseProxyHeader(v2(0x21, 0x31, Buffer.alloc(216))), {
      kind: 'local',
      version: 2,
      consumed: 232,
    });
  });

  const malformed: Array<[string, Buffer]> = [
    ['version 1 in the binary form', v2(0x11, 0x11, v4Block())],
    ['version 3', v2(0x31, 0x11, v4Block())],
    ['command 2', v2(0x22, 0x11, v4Block())],
    ['AF_INET over DGRAM', v2(0x21, 0x12, v4Block())],
    ['AF_INET6 over UNSPEC transport', v2(0x21, 0x20, Buffer.alloc(36))],
    ['AF_UNIX over DGRAM', v2(0x21, 0x32, Buffer.alloc(216))],
    ['family 4', v2(0x21, 0x41, v4Block())],
    ['transport 3', v2(0x21, 0x13, v4Block())],
    ['length shorter than the IPv4 block', v2(0x21, 0x11, v4Block().subarray(0, 11))],
    ['length shorter than the IPv6 block', v2(0x21, 0x21, Buffer.alloc(35))],
  ];
  for (const [name, buf] of malformed) {
    test(`rejects ${name}`, () => assert.equal(parseProxyHeader(buf).kind, 'invalid'));
  }

  test('an oversize length is rejected from the first 16 bytes', () => {
    const fixed = v2(0x21, 0x11, Buffer.alloc(0), PROXY_V2_MAX_BYTES - 16 + 1);
    assert.equal(fixed.length, 16);
    assert.equal(parseProxyHeader(fixed).kind, 'invalid');
    const atLimit = v2(
      0x21,
      0x11,
      Buffer.concat([v4Block(), Buffer.from([4, 0x0f, 0xe1]), Buffer.alloc(0x0fe1)]),
    );
    assert.equal(atLimit.length, PROXY_V2_MAX_BYTES);
    assert.equal(parseProxyHeader(atLimit).kind, 'proxied');
  });

  test('every strict prefix is incomplete; a wrong signature byte is invalid at once', () => {
    const full = v2(0x21, 0x11, v4Block());
    for (let n = 1; n < full.length; n++) {
      assert.deepEqual(parseProxyHeader(full.subarray(0, n)), { kind: 'incomplete' }, `prefix of ${n} bytes`);
    }
    assert.equal(parseProxyHeader(Buffer.from([0x0d, 0x0a, 0x0d, 0x0b])).kind, 'invalid');
    assert.equal(parseProxyHeader(Buffer.concat([SIGNATURE, Buffer.from([0x31])])).kind, 'invalid');
  });
});

describe('encodeProxyHeader', () => {
  const src = { address: '192.0.2.1', port: 12345 };
  const dst = { address: '198.51.100.7', port: 443 };

  test('v1 TCP4 text', () => {
    assert.equal(
      encodeProxyHeader(1, src, dst).toString('latin1'),
      'PROXY TCP4 192.0.2.1 198.51.100.7 12345 443\r\n',
    );
  });

  test('v2 IPv4 bytes', () => {
    assert.deepEqual(encodeProxyHeader(2, src, dst), v2(0x21, 0x11, v4Block()));
  });

  test('round-trips through the parser, both versions, both families', () => {
    const pairs = [
      [src, dst],
      [
        { address: '2001:db8::1', port: 0 },
        { address: '::ffff:192.0.2.9', port: 65535 },
      ],
      [
        { address: '2001:DB8:0:0:0:0:0:abcd', port: 1 },
        { address: '::', port: 2 },
      ],
    ];
    for (const version of [1, 2] as const) {
      for (const [s, d] of pairs) {
        const r = parseProxyHeader(encodeProxyHeader(version, s!, d!));
        assert.ok(r.kind === 'proxied', JSON.stringify(r));
        assert.equal(r.version, version);
        assert.equal(r.sourcePort, s!.port);
        assert.equal(r.destinationPort, d!.port);
        assert.equal(canonical(r.sourceAddress), canonical(s!.address));
        assert.equal(canonical(r.destinationAddress), canonical(d!.address));
      }
    }
  });

  test('mixed families are sent as TCP6 with the IPv4 side mapped', () => {
    const line = encodeProxyHeader(1, src, { address: '2001:db8::2', port: 80 }).toString('latin1');
    assert.equal(line, 'PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 12345 80\r\n');
    const r = parseProxyHeader(encodeProxyHeader(2, { address: '2001:db8::2', port: 80 }, src));
    assert.ok(r.kind === 'proxied');
    assert.equal(r.destinationAddress, '::ffff:192.0.2.1');
  });

  test('v1 TCP6 lines stay within 107 bytes however the addresses are written', () => {
    const long = { address: '0000:0000:0000:0000:0000:ffff:255.255.255.255', port: 65535 };
    const line = encodeProxyHeader(1, long, long);
    assert.ok(line.length <= 107);
    assert.equal(parseProxyHeader(line).kind, 'proxied');
  });

  test('bad input throws ListenerError SEGLB_PROXY_PROTOCOL_INVALID', () => {
    const bad = [
      () => encodeProxyHeader(1, { address: 'localhost', port: 1 }, dst),
      () => encodeProxyHeader(2, src, { address: 'fe80::1%eth0', port: 1 }),
      () => encodeProxyHeader(1, { address: '192.0.2.1', port: 65536 }, dst),
      () => encodeProxyHeader(2, { address: '192.0.2.1', port: 1.5 }, dst),
      () => encodeProxyHeader(3 as 1, src, dst),
    ];
    for (const f of bad) {
      assert.throws(f, (err: unknown) => {
        assert.ok(err instanceof SeglbError);
        assert.equal(err.name, 'ListenerError');
        assert.equal(err.code, 'SEGLB_PROXY_PROTOCOL_INVALID');
        return true;
      });
    }
  });
});

/** Canonical text of an address, via the socket-address parser Node itself uses. */
function canonical(address: string): string {
  return new net.SocketAddress({ address, family: net.isIPv4(address) ? 'ipv4' : 'ipv6' }).address;
}

// ---------------------------------------------------------------------------------------------------
// Over real loopback sockets.

/**
 * A loopback listener that reads a PROXY header from each accepted (paused) socket, the way a seglb
 * listener does, and hands the result and the socket to whoever awaits `next()`.
 */
class ProxyHeaderListener {
  readonly server: net.Server;
  private readonly waiting: Array<
    (value: { result: ProxyHeaderResult; socket: net.Socket; ms: number }) => void
  > = [];
  timeoutMs = 2000;
  port = 0;

  constructor() {
    this.server = net.createServer({ pauseOnConnect: true }, (socket) => {
      socket.on('error', () => {});
      const started = performance.now();
      void readProxyHeader(socket, this.timeoutMs).then((result) => {
        this.waiting.shift()?.({ result, socket, ms: performance.now() - started });
      });
    });
  }

  async start(): Promise<void> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /** Connects, runs `send` on the client, and resolves with what the server side read. */
  async exchange(send: (client: net.Socket) => Promise<void> | void) {
    const accepted = new Promise<{ result: ProxyHeaderResult; socket: net.Socket; ms: number }>((resolve) =>
      this.waiting.push(resolve),
    );
    const client = net.connect(this.port, '127.0.0.1');
    client.on('error', () => {});
    await once(client, 'connect');
    client.setNoDelay(true);
    await send(client);
    const got = await accepted;
    return { ...got, client };
  }

  async stop(): Promise<void> {
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** Reads everything the socket delivers until `bytes` have arrived. */
async function readBytes(socket: net.Socket, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  socket.resume();
  for await (const chunk of socket as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    total += chunk.length;
    if (total >= bytes) break;
  }
  return Buffer.concat(chunks);
}

describe('readProxyHeader over loopback sockets', () => {
  const listener = new ProxyHeaderListener();
  before(() => listener.start());
  after(() => listener.stop());

  const proxied: Array<[string, Buffer, Partial<ProxyHeaderResult>]> = [
    [
      'v1 TCP4',
      ascii('PROXY TCP4 192.0.2.1 198.51.100.7 12345 443\r\n'),
      { kind: 'proxied', version: 1, sourceAddress: '192.0.2.1', sourcePort: 12345 },
    ],
    [
      'v1 TCP6',
      ascii('PROXY TCP6 2001:db8::1 2001:db8::2 40000 8443\r\n'),
      { kind: 'proxied', version: 1, sourceAddress: '2001:db8::1', destinationPort: 8443 },
    ],
    ['v1 UNKNOWN', ascii('PROXY UNKNOWN\r\n'), { kind: 'local', version: 1 }],
    [
      'v2 PROXY IPv4',
      encodeProxyHeader(2, { address: '203.0.113.5', port: 1 }, { address: '192.0.2.80', port: 80 }),
      { kind: 'proxied', version: 2, sourceAddress: '203.0.113.5', destinationAddress: '192.0.2.80' },
    ],
    [
      'v2 PROXY IPv6',
      encodeProxyHeader(2, { address: '2001:db8:1::5', port: 2 }, { address: '2001:db8:2::80', port: 80 }),
      { kind: 'proxied', version: 2, sourceAddress: '2001:db8:1::5', sourcePort: 2 },
    ],
    ['v2 LOCAL', v2(0x20, 0x00, Buffer.alloc(0)), { kind: 'local', version: 2 }],
  ];
  for (const [name, header, expected] of proxied) {
    test(`${name}: header read, payload left intact and unread`, async () => {
      const payload = ascii(`payload after ${name}\n`);
      const { result, socket, client } = await listener.exchange((c) => {
        c.write(Buffer.concat([header, payload]));
      });
      for (const [key, value] of Object.entries(expected)) {
        assert.equal((result as Record<string, unknown>)[key], value, key);
      }
      assert.equal(socket.isPaused(), true);
      assert.ok(socket.readableLength > 0, 'payload from the header chunk was unshifted');
      assert.deepEqual(await readBytes(socket, payload.length), payload);
      client.destroy();
      socket.destroy();
    });
  }

  test('header split over many 1-byte writes, payload in separate later writes', async () => {
    const header = ascii('PROXY TCP4 192.0.2.1 198.51.100.7 12345 443\r\n');
    const v2Header = encodeProxyHeader(
      2,
      { address: '2001:db8::1', port: 7 },
      { address: '2001:db8::2', port: 8 },
    );
    for (const h of [header, v2Header]) {
      const { result, socket, client } = await listener.exchange(async (c) => {
        for (const byte of h) {
          c.write(Buffer.from([byte]));
          await sleep(1);
        }
        c.write('A');
        await sleep(5);
        c.write('BC');
      });
      assert.equal(result.kind, 'proxied');
      assert.equal(result.kind === 'proxied' && result.sourcePort, h === header ? 12345 : 7);
      assert.deepEqual(await readBytes(socket, 3), ascii('ABC'));
      client.destroy();
      socket.destroy();
    }
  });

  test('header and HTTP request in one packet: the socket serves keep-alive HTTP after hand-off', async () => {
    const seen: string[] = [];
    const httpServer = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.end(`hello ${req.url}`);
    });
    const handedOff: Array<ProxyHeaderResult> = [];
    const unshiftedBytes: number[] = [];
    const server = net.createServer({ pauseOnConnect: true }, async (socket) => {
      const result = await readProxyHeader(socket, 2000);
      handedOff.push(result);
      unshiftedBytes.push(socket.readableLength);
      if (result.kind === 'invalid') return void socket.destroy();
      // Resume in the same tick as the emit: http.Server reads the handle directly from then on.
      httpServer.emit('connection', socket);
      socket.resume();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    const header = encodeProxyHeader(
      1,
      { address: '192.0.2.44', port: 5555 },
      { address: '192.0.2.80', port: 80 },
    );
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    // The header is written before the request; both leave in the connect flush, i.e. one packet.
    (agent as unknown as { createConnection: () => net.Socket }).createConnection = () => {
      const s = net.connect(port, '127.0.0.1');
      s.write(header);
      return s;
    };
    const get = (path: string) =>
      new Promise<string>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path, agent }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => (body += d));
            res.on('end', () => resolve(body));
          })
          .on('error', reject);
      });
    try {
      assert.equal(await get('/first'), 'hello /first');
      assert.equal(await get('/second'), 'hello /second'); // same connection, keep-alive
      assert.deepEqual(seen, ['GET /first', 'GET /second']);
      assert.equal(handedOff.length, 1);
      assert.ok((unshiftedBytes[0] ?? 0) > 0, 'the request arrived with the header and was unshifted');
      assert.equal(handedOff[0]?.kind === 'proxied' && handedOff[0].sourceAddress, '192.0.2.44');
    } finally {
      agent.destroy();
      httpServer.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('a POST whose body spans several packets reaches http.Server in order', async () => {
    const httpServer = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => res.end(`${req.url}:${body}`));
    });
    const server = net.createServer({ pauseOnConnect: true }, async (socket) => {
      const result = await readProxyHeader(socket, 2000);
      if (result.kind === 'invalid') return void socket.destroy();
      httpServer.emit('connection', socket);
      socket.resume();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    const client = net.connect(port, '127.0.0.1');
    await once(client, 'connect');
    client.setNoDelay(true);
    const request = 'POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nConnection: close\r\n\r\n01234';
    const v2Header = encodeProxyHeader(
      2,
      { address: '192.0.2.1', port: 1 },
      { address: '192.0.2.2', port: 2 },
    );
    client.write(Buffer.concat([v2Header, ascii(request)]));
    await sleep(20);
    client.write('56789');
    let response = '';
    client.setEncoding('utf8');
    for await (const chunk of client) response += chunk;
    assert.match(response, /^HTTP\/1\.1 200 OK/);
    assert.ok(response.endsWith('/p:0123456789'), response);
    httpServer.close();
    await new Promise((resolve) => server.close(resolve));
  });

  test('garbage is rejected on its first bytes, long before the timeout', async () => {
    listener.timeoutMs = 10_000;
    try {
      for (const garbage of ['GET / HTTP/1.1\r\n\r\n', 'PROXZ', '\x16\x03\x01\x02\x00']) {
        const { result, ms, socket, client } = await listener.exchange((c) => {
          c.write(ascii(garbage));
        });
        assert.equal(result.kind, 'invalid', garbage);
        assert.ok(ms < 2000, `took ${ms} ms`);
        client.destroy();
        socket.destroy();
      }
    } finally {
      listener.timeoutMs = 2000;
    }
  });

  test('oversize headers are rejected without waiting for a CRLF or the full length', async () => {
    listener.timeoutMs = 10_000;
    try {
      const oversize = [
        ascii(`PROXY UNKNOWN ${'x'.repeat(200)}`),
        v2(0x21, 0x11, Buffer.alloc(100), 5000),
        v2(0x21, 0x11, Buffer.alloc(0), 0xffff),
      ];
      for (const buf of oversize) {
        const { result, ms, socket, client } = await listener.exchange((c) => {
          c.write(buf);
        });
        assert.equal(result.kind, 'invalid');
        assert.ok(ms < 2000, `took ${ms} ms`);
        client.destroy();
        socket.destroy();
      }
    } finally {
      listener.timeoutMs = 2000;
    }
  });

  test('a truncated header times out after timeoutMs', async () => {
    listener.timeoutMs = 150;
    try {
      for (const partial of [ascii('PROXY TCP4 192.0.2.1 '), v2(0x21, 0x11, v4Block()).subarray(0, 20)]) {
        const { result, ms, socket, client } = await listener.exchange((c) => {
          c.write(partial);
        });
        assert.equal(result.kind, 'invalid');
        assert.match(result.kind === 'invalid' ? result.reason : '', /within 150 ms/);
        assert.ok(ms >= 140 && ms < 1500, `took ${ms} ms`);
        assert.equal(socket.destroyed, false, 'the caller decides what to do with the socket');
        client.destroy();
        socket.destroy();
      }
    } finally {
      listener.timeoutMs = 2000;
    }
  });

  test('connection closed (FIN) or reset mid-header is invalid at once', async () => {
    listener.timeoutMs = 10_000;
    try {
      const closeWays: Array<(c: net.Socket) => void> = [(c) => c.end(), (c) => c.resetAndDestroy()];
      for (const close of closeWays) {
        const { result, ms, socket } = await listener.exchange(async (c) => {
          c.write(ascii('PROXY TCP6 2001:db8::1'));
          await sleep(10);
          close(c);
        });
        assert.equal(result.kind, 'invalid');
        assert.ok(ms < 2000, `took ${ms} ms`);
        socket.destroy();
      }
    } finally {
      listener.timeoutMs = 2000;
    }
  });

  test('header then FIN: the payload is still delivered, then end', async () => {
    const { result, socket } = await listener.exchange((c) => {
      c.end(Buffer.concat([ascii('PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n'), ascii('last words')]));
    });
    assert.equal(result.kind, 'proxied');
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.resume();
    await once(socket, 'end');
    assert.equal(Buffer.concat(chunks).toString('latin1'), 'last words');
    socket.destroy();
  });

  test('an already closed socket is invalid at once', async () => {
    const socket = new net.Socket();
    socket.destroy();
    const result = await readProxyHeader(socket, 10_000);
    assert.equal(result.kind, 'invalid');
  });

  test('rejects a non-positive timeout synchronously', () => {
    const socket = new net.Socket();
    assert.throws(() => readProxyHeader(socket, 0), RangeError);
    assert.throws(() => readProxyHeader(socket, Number.NaN), RangeError);
  });
});
