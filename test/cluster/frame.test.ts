// Tests the sync channel's framing: round trips of any split of the byte stream, and refusal of bad
// versions, unknown types, bad node ids and oversized frames from the header alone.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeFrame, FrameDecoder, HEADER_BYTES, MSG, PROTOCOL_VERSION } from '../../src/cluster/frame.ts';
import { encodeEntries, parseMessage } from '../../src/cluster/protocol.ts';
import type { SeglbError } from '../../src/errors.ts';

const payload = (o: object) => Buffer.from(JSON.stringify(o));

describe('frames', () => {
  test('round trip, whatever the chunking (1 byte at a time, several frames per chunk)', () => {
    const frames = [
      encodeFrame(1, MSG.PING, 'n1', 2 ** 52 + 7, 1, payload({ t: 5 })),
      encodeFrame(1, MSG.ENTRIES, 'node-2.example', 3, 2 ** 40, payload({ ks: 'sticky', entries: [] })),
      encodeFrame(1, MSG.BYE, 'n1', 3, 3, payload({ reason: 'leaving' })),
    ];
    const stream = Buffer.concat(frames);
    for (const size of [1, 7, 24, 25, 100, stream.length]) {
      const dec = new FrameDecoder(1 << 20);
      const out = [];
      for (let i = 0; i < stream.length; i += size) out.push(...dec.push(stream.subarray(i, i + size)));
      assert.equal(out.length, 3, `chunk ${size}`);
      assert.deepEqual(
        out.map((f) => [f.version, f.type, f.node, f.epoch, f.seq, JSON.parse(f.payload.toString())]),
        [
          [1, MSG.PING, 'n1', 2 ** 52 + 7, 1, { t: 5 }],
          [1, MSG.ENTRIES, 'node-2.example', 3, 2 ** 40, { ks: 'sticky', entries: [] }],
          [1, MSG.BYE, 'n1', 3, 3, { reason: 'leaving' }],
        ],
      );
      assert.equal(dec.buffered, 0);
    }
  });

  test('an oversized frame is refused from its header, before its body arrives', () => {
    const dec = new FrameDecoder(4096);
    const big = encodeFrame(1, MSG.ENTRIES, 'n1', 1, 1, Buffer.alloc(5000, 32));
    assert.throws(() => dec.push(big.subarray(0, HEADER_BYTES)), {
      code: 'SEGLB_CLUSTER_FRAME',
      message: /exceeds max_frame_bytes 4096/,
    });
  });

  test('garbage is refused: version, type, flags, node id, length', () => {
    const good = encodeFrame(1, MSG.PING, 'n1', 1, 1, payload({ t: 1 }));
    const cases: [string, (b: Buffer) => void, RegExp][] = [
      ['version', (b) => (b[0] = PROTOCOL_VERSION + 1), /unsupported protocol version/],
      ['version 0', (b) => (b[0] = 0), /unsupported protocol version/],
      ['type', (b) => (b[1] = 99), /unknown message type/],
      ['flags', (b) => (b[3] = 1), /reserved flags/],
      ['id length', (b) => (b[2] = 0), /bad node id length/],
      ['short', (b) => b.writeUInt32BE(10, 4), /shorter than its header/],
      ['node id', (b) => (b[HEADER_BYTES] = 0x2f), /bad node id/],
    ];
    for (const [what, corrupt, message] of cases) {
      const b = Buffer.from(good);
      corrupt(b);
      assert.throws(
        () => new FrameDecoder(4096).push(b),
        (err: SeglbError) => {
          assert.equal(err.code, 'SEGLB_CLUSTER_FRAME', what);
          assert.match(err.message, message, what);
          return true;
        },
      );
    }
    // An HTTP request or TLS record hitting the decoder fails on the first bytes.
    assert.throws(() => new FrameDecoder(4096).push(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), {
      code: 'SEGLB_CLUSTER_FRAME',
    });
  });
});

describe('messages', () => {
  test('payloads are checked against their type', () => {
    assert.deepEqual(parseMessage(MSG.PING, payload({ t: 3 })).body, { t: 3 });
    for (const [type, body] of [
      [MSG.PING, { t: -1 }],
      [MSG.PONG, { t: 1 }],
      [MSG.HELLO, { protoMin: 1, protoMax: 1, listen: 'x' }],
      [MSG.ROOTS, { before: null, roots: { quarantine: [1, 2] } }],
      [MSG.BUCKETS, { ks: 'quarantine', before: null, answer: true, buckets: [1, 2] }],
      [MSG.ENTRIES, { ks: 'Quarantine!', entries: [] }],
      [MSG.BYE, { reason: 'because' }],
    ] as const) {
      assert.throws(
        () => parseMessage(type, payload(body)),
        { code: 'SEGLB_CLUSTER_FRAME' },
        JSON.stringify(body),
      );
    }
    assert.throws(() => parseMessage(MSG.PING, Buffer.from('{not json')), { code: 'SEGLB_CLUSTER_FRAME' });
    assert.throws(() => parseMessage(MSG.PING, Buffer.from('[1]')), { code: 'SEGLB_CLUSTER_FRAME' });
  });

  test('ENTRIES are split so each payload fits, and none is lost', () => {
    const entries = Array.from(
      { length: 1000 },
      (_, i) => [`k${i}`, 1, 0, 'n1', null, 'x'.repeat(i % 50)] as const,
    );
    const { payloads, oversized } = encodeEntries('sticky', entries, 4000);
    assert.equal(oversized, 0);
    assert.ok(payloads.length > 5);
    let n = 0;
    for (const p of payloads) {
      assert.ok(p.length <= 4000, String(p.length));
      const msg = parseMessage(MSG.ENTRIES, p);
      assert.ok(msg.type === MSG.ENTRIES);
      n += msg.body.entries.length;
    }
    assert.equal(n, 1000);
    assert.equal(encodeEntries('sticky', [['k', 1, 0, 'n1', null, 'y'.repeat(5000)]], 4000).oversized, 1);
  });
});
