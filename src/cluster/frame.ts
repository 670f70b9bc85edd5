// The sync channel's framing: a fixed binary header (version byte, type, length, sender node id,
// epoch, sequence number) before a JSON payload, and a decoder that refuses a frame larger than the
// limit as soon as its header arrives, before buffering it.
//
//   0       1       2       3       4               8              16              24
//   +-------+-------+-------+-------+---------------+---------------+---------------+----------+---------+
//   |version| type  |idlen  | flags | frame length  | epoch (u64)   | seq (u64)     | node id  | payload |
//   +-------+-------+-------+-------+---------------+---------------+---------------+----------+---------+
//   all integers big-endian; frame length counts every byte, header included; flags are 0.

import { ClusterError } from '../errors.ts';

/** The protocol version this build speaks best, and the oldest it still speaks. */
export const PROTOCOL_VERSION = 1;
export const MIN_PROTOCOL_VERSION = 1;

/** Bytes before the node id. */
export const HEADER_BYTES = 24;

/** Message types (the second header byte). */
export const MSG = {
  HELLO: 1,
  PING: 2,
  PONG: 3,
  ROOTS: 4,
  BUCKETS: 5,
  ENTRIES: 6,
  BYE: 7,
} as const;
export type MessageType = (typeof MSG)[keyof typeof MSG];
const MAX_TYPE = 7;

/** Node ids: what may appear in a frame header, a PSK identity and a certificate CN. */
export const NODE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

/** Largest integer carried in the u64 fields (JavaScript numbers stay exact up to 2^53). */
const MAX_U53 = Number.MAX_SAFE_INTEGER;
const TWO_32 = 0x1_0000_0000;

/** One decoded frame. */
export interface Frame {
  readonly version: number;
  readonly type: MessageType;
  readonly node: string;
  readonly epoch: number;
  readonly seq: number;
  readonly payload: Buffer;
}

/**
 * Encodes one frame.
 * @param payload - the JSON payload, already serialised
 */
export function encodeFrame(
  version: number,
  type: MessageType,
  node: string,
  epoch: number,
  seq: number,
  payload: Buffer,
): Buffer {
  const idLen = node.length; // ASCII by NODE_ID_PATTERN
  const total = HEADER_BYTES + idLen + payload.length;
  const buf = Buffer.allocUnsafe(total);
  buf[0] = version;
  buf[1] = type;
  buf[2] = idLen;
  buf[3] = 0;
  buf.writeUInt32BE(total, 4);
  buf.writeUInt32BE(Math.floor(epoch / TWO_32), 8);
  buf.writeUInt32BE(epoch >>> 0, 12);
  buf.writeUInt32BE(Math.floor(seq / TWO_32), 16);
  buf.writeUInt32BE(seq >>> 0, 20);
  buf.write(node, HEADER_BYTES, 'latin1');
  payload.copy(buf, HEADER_BYTES + idLen);
  return buf;
}

function frameError(message: string): ClusterError {
  return new ClusterError('SEGLB_CLUSTER_FRAME', message);
}

/**
 * Splits a byte stream into frames. Checks version, type, node id and length from the header, so a
 * garbage or oversized frame is refused after 24 bytes rather than after buffering it.
 */
export class FrameDecoder {
  readonly #maxFrameBytes: number;
  #chunks: Buffer[] = [];
  #buffered = 0;

  /** @param maxFrameBytes - largest frame accepted, header included */
  constructor(maxFrameBytes: number) {
    this.#maxFrameBytes = maxFrameBytes;
  }

  /** Bytes held waiting for the rest of a frame. */
  get buffered(): number {
    return this.#buffered;
  }

  /**
   * Adds received bytes.
   * @returns the frames completed by them, in order
   * @throws ClusterError SEGLB_CLUSTER_FRAME on a bad header or an oversized frame (the stream is
   *   then unusable: drop the connection)
   */
  push(chunk: Buffer): Frame[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const frames: Frame[] = [];
    while (this.#buffered >= HEADER_BYTES) {
      let head = this.#chunks[0] as Buffer;
      if (head.length < HEADER_BYTES) head = this.#flatten();
      const total = checkHeader(head, this.#maxFrameBytes);
      if (this.#buffered < total) break;
      if (head.length < total) head = this.#flatten();
      frames.push(decodeChecked(head, total));
      if (head.length === total) {
        this.#chunks.shift();
      } else {
        this.#chunks[0] = head.subarray(total);
      }
      this.#buffered -= total;
    }
    return frames;
  }

  #flatten(): Buffer {
    const all = Buffer.concat(this.#chunks, this.#buffered);
    this.#chunks = [all];
    return all;
  }
}

/** Validates a header; @returns the frame's total length */
function checkHeader(buf: Buffer, maxFrameBytes: number): number {
  const version = buf[0] as number;
  if (version < MIN_PROTOCOL_VERSION || version > PROTOCOL_VERSION) {
    throw frameError(
      `unsupported protocol version ${version} (this node speaks ${MIN_PROTOCOL_VERSION}..${PROTOCOL_VERSION})`,
    );
  }
  const type = buf[1] as number;
  if (type < 1 || type > MAX_TYPE) throw frameError(`unknown message type ${type}`);
  const idLen = buf[2] as number;
  if (idLen < 1 || idLen > 64) throw frameError(`bad node id length ${idLen}`);
  if (buf[3] !== 0) throw frameError('reserved flags are set');
  const total = buf.readUInt32BE(4);
  if (total > maxFrameBytes)
    throw frameError(`frame of ${total} bytes exceeds max_frame_bytes ${maxFrameBytes}`);
  if (total < HEADER_BYTES + idLen) throw frameError(`frame length ${total} is shorter than its header`);
  return total;
}

function decodeChecked(buf: Buffer, total: number): Frame {
  const idLen = buf[2] as number;
  const epochHi = buf.readUInt32BE(8);
  const seqHi = buf.readUInt32BE(16);
  const epoch = epochHi * TWO_32 + buf.readUInt32BE(12);
  const seq = seqHi * TWO_32 + buf.readUInt32BE(20);
  if (epoch > MAX_U53 || seq > MAX_U53) throw frameError('epoch or sequence number out of range');
  const node = buf.toString('latin1', HEADER_BYTES, HEADER_BYTES + idLen);
  if (!NODE_ID_PATTERN.test(node)) throw frameError('bad node id in frame header');
  return {
    version: buf[0] as number,
    type: buf[1] as MessageType,
    node,
    epoch,
    seq,
    payload: buf.subarray(HEADER_BYTES + idLen, total),
  };
}
