// One authenticated connection to a peer: hello exchange and protocol version choice, frame
// decoding with envelope checks (node id, epoch, next sequence number), sending with a bounded
// queue (bulk pushes wait for 'drain'), heartbeat round trips, and one close with a reason.

import type { TLSSocket } from 'node:tls';
import { ClusterError, type ErrorCode } from '../errors.ts';
import {
  encodeFrame,
  type Frame,
  FrameDecoder,
  type MessageType,
  MIN_PROTOCOL_VERSION,
  MSG,
  PROTOCOL_VERSION,
} from './frame.ts';
import { type ByeMsg, encodeBody, type HelloMsg, type Message, parseMessage } from './protocol.ts';
import { checkEnvelope } from './replay-guard.ts';

/** Why a link closed. */
export type LinkCloseReason =
  | 'auth'
  | 'frame'
  | 'replay'
  | 'backpressure'
  | 'dead'
  | 'hello-timeout'
  | 'duplicate'
  | 'self'
  | 'stale-epoch'
  | 'leaving'
  | 'stopping'
  | 'removed'
  | 'closed';

/** What the owning node does with a link's events. */
export interface LinkHandlers {
  /** The peer's hello arrived and checked out; the node accepts (link.markReady) or closes it. */
  onHello(link: PeerLink, hello: HelloMsg): void;
  /** Any later message. */
  onMessage(link: PeerLink, msg: Message): void;
  /** Called once, when the link is gone. `error` carries the code for reported closes. */
  onClose(link: PeerLink, reason: LinkCloseReason, error?: ClusterError): void;
}

/** Fixed settings of a link. */
export interface LinkSettings {
  readonly nodeId: string;
  readonly epoch: number;
  readonly listen: string;
  readonly maxFrameBytes: number;
  readonly maxQueueBytes: number;
  /** A link whose hello has not arrived by then is closed. */
  readonly helloTimeoutMs: number;
  readonly now: () => number;
  /** This node's clock, sent in the hello. */
  readonly clock: () => { wall: number; counter: number };
  /** Whether this node holds nothing but its own membership entry (just started), for the hello. */
  readonly empty: () => boolean;
}

/** Bulk frames are written while the socket holds less than this, then wait for 'drain'. */
const BULK_HIGH_WATER = 1 << 20;

/** One connection to a peer, dialled or accepted. */
export class PeerLink {
  readonly socket: TLSSocket;
  /** True for a connection the peer dialled. */
  readonly accepted: boolean;
  /** The peers-list address this link was dialled for (dialled links only). */
  readonly dialAddress: string | undefined;
  /** The node id the TLS handshake proved, when it proves one (see auth.ts). */
  readonly provenId: string | undefined;
  /** Set by the peer's hello. */
  node = '';
  epoch = 0;
  remoteListen = '';
  /** Protocol version in use after the hello. */
  version = MIN_PROTOCOL_VERSION;
  state: 'hello' | 'ready' | 'closed' = 'hello';
  lastSeq = 0;
  lastFrameAt: number;
  readonly openedAt: number;
  /** Last heartbeat round trip and clock offset estimate (peer minus us), ms; -1 before the first. */
  rttMs = -1;
  offsetMs = 0;
  framesIn = 0;
  framesOut = 0;
  bytesIn = 0;
  bytesOut = 0;

  readonly #settings: LinkSettings;
  readonly #handlers: LinkHandlers;
  readonly #decoder: FrameDecoder;
  #seq = 0;
  /** Pushes waiting for the socket to drain: each yields its payloads one at a time. */
  #bulk: { type: MessageType; payloads: Iterator<Buffer> }[] = [];
  #helloTimer: NodeJS.Timeout | undefined;

  constructor(
    socket: TLSSocket,
    opts: { accepted: boolean; dialAddress?: string; provenId: string | undefined },
    settings: LinkSettings,
    handlers: LinkHandlers,
  ) {
    this.socket = socket;
    this.accepted = opts.accepted;
    this.dialAddress = opts.dialAddress;
    this.provenId = opts.provenId;
    this.#settings = settings;
    this.#handlers = handlers;
    this.#decoder = new FrameDecoder(settings.maxFrameBytes);
    this.openedAt = settings.now();
    this.lastFrameAt = this.openedAt;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    socket.on('drain', () => this.#pump());
    socket.on('error', () => this.close('closed'));
    socket.on('close', () => this.close('closed'));
    socket.on('end', () => this.close('closed'));
    this.#helloTimer = setTimeout(() => this.close('hello-timeout'), settings.helloTimeoutMs);
    this.#helloTimer.unref();
    const hello: HelloMsg = {
      protoMin: MIN_PROTOCOL_VERSION,
      protoMax: PROTOCOL_VERSION,
      listen: settings.listen,
      clock: settings.clock(),
      empty: settings.empty(),
    };
    this.send(MSG.HELLO, hello);
  }

  /** True once close() ran. */
  get isClosed(): boolean {
    return this.state === 'closed';
  }

  /** Bytes buffered on the socket, not yet taken by the kernel. */
  get queuedBytes(): number {
    return this.socket.writableLength;
  }

  /** Pushes (anti-entropy) still being written. */
  get pendingPushes(): number {
    return this.#bulk.length;
  }

  /** The node accepted the hello: the link carries state from now on. */
  markReady(): void {
    if (this.state === 'hello') this.state = 'ready';
  }

  /** Sends one message now. */
  send(type: MessageType, body: object): void {
    this.sendPayload(type, encodeBody(body));
  }

  /**
   * Sends a serialised payload now (deltas, heartbeats). When the socket already holds more than
   * max_queue_bytes the peer is not keeping up: the link is dropped (it resyncs on reconnect).
   */
  sendPayload(type: MessageType, payload: Buffer): void {
    if (this.state === 'closed') return;
    if (this.socket.writableLength > this.#settings.maxQueueBytes) {
      this.#fail(
        'backpressure',
        'SEGLB_CLUSTER_BACKPRESSURE',
        `send queue of ${this.socket.writableLength} bytes exceeds max_queue_bytes`,
      );
      return;
    }
    this.#write(type, payload);
  }

  /**
   * Queues a push (anti-entropy): its payloads are produced and written as the socket drains, after
   * the pushes queued before it.
   */
  sendBulk(type: MessageType, payloads: Iterable<Buffer>): void {
    if (this.state === 'closed') return;
    this.#bulk.push({ type, payloads: payloads[Symbol.iterator]() });
    this.#pump();
  }

  /** Sends a heartbeat. */
  ping(now: number): void {
    this.send(MSG.PING, { t: now });
  }

  /**
   * Closes the link once (later calls do nothing).
   * @param bye - tell the peer why first (a polite close)
   */
  close(reason: LinkCloseReason, bye?: ByeMsg['reason'], error?: ClusterError): void {
    if (this.state === 'closed') return;
    if (bye !== undefined && !this.socket.destroyed) this.#write(MSG.BYE, encodeBody({ reason: bye }));
    this.state = 'closed';
    clearTimeout(this.#helloTimer);
    this.#bulk = [];
    if (bye !== undefined) this.socket.end();
    else this.socket.destroy();
    // A polite close still must not wait forever for the peer to read.
    if (!this.socket.destroyed) setTimeout(() => this.socket.destroy(), 1000).unref();
    this.#handlers.onClose(this, reason, error);
  }

  #write(type: MessageType, payload: Buffer): void {
    const frame = encodeFrame(
      this.version,
      type,
      this.#settings.nodeId,
      this.#settings.epoch,
      ++this.#seq,
      payload,
    );
    this.framesOut++;
    this.bytesOut += frame.length;
    this.socket.write(frame);
  }

  #pump(): void {
    while (this.state !== 'closed' && this.socket.writableLength < BULK_HIGH_WATER) {
      const push = this.#bulk[0];
      if (push === undefined) return;
      const next = push.payloads.next();
      if (next.done === true) this.#bulk.shift();
      else this.#write(push.type, next.value);
    }
  }

  #fail(reason: LinkCloseReason, code: ErrorCode, message: string): void {
    this.close(reason, undefined, new ClusterError(code, message));
  }

  #receive(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.bytesIn += chunk.length;
    let frames: Frame[];
    try {
      frames = this.#decoder.push(chunk);
    } catch (err) {
      this.close('frame', undefined, err as ClusterError);
      return;
    }
    for (const frame of frames) {
      this.#handle(frame);
      // A handler may have closed the link; the frames after that are not read.
      if (this.isClosed) return;
    }
  }

  #handle(frame: Frame): void {
    this.framesIn++;
    this.lastFrameAt = this.#settings.now();
    if (this.state === 'hello') {
      this.#handleHello(frame);
      return;
    }
    const wrong = checkEnvelope(this, frame);
    if (wrong !== undefined) {
      this.#fail('replay', 'SEGLB_CLUSTER_REPLAY', wrong);
      return;
    }
    this.lastSeq = frame.seq;
    if (frame.version !== this.version) {
      this.#fail(
        'frame',
        'SEGLB_CLUSTER_FRAME',
        `frame of version ${frame.version} on a version ${this.version} link`,
      );
      return;
    }
    let msg: Message;
    try {
      msg = parseMessage(frame.type, frame.payload);
    } catch (err) {
      this.close('frame', undefined, err as ClusterError);
      return;
    }
    switch (msg.type) {
      case MSG.HELLO:
        this.#fail('frame', 'SEGLB_CLUSTER_FRAME', 'a second hello on one link');
        return;
      case MSG.PING:
        this.send(MSG.PONG, { t: msg.body.t, r: this.#settings.now() });
        return;
      case MSG.PONG: {
        const now = this.#settings.now();
        this.rttMs = Math.max(0, now - msg.body.t);
        this.offsetMs = msg.body.r - (msg.body.t + now) / 2;
        return;
      }
      case MSG.BYE: {
        const reason = msg.body.reason;
        this.close(reason === 'leaving' ? 'leaving' : reason === 'duplicate' ? 'duplicate' : 'closed');
        return;
      }
      default:
        this.#handlers.onMessage(this, msg);
    }
  }

  #handleHello(frame: Frame): void {
    if (frame.type !== MSG.HELLO) {
      this.#fail('frame', 'SEGLB_CLUSTER_FRAME', 'the first message was not a hello');
      return;
    }
    if (frame.seq !== 1) {
      this.#fail('replay', 'SEGLB_CLUSTER_REPLAY', `hello with sequence number ${frame.seq}, expected 1`);
      return;
    }
    if (this.provenId !== undefined && frame.node !== this.provenId) {
      this.#fail(
        'auth',
        'SEGLB_CLUSTER_AUTH',
        `hello from node ${frame.node} but the handshake proved node ${this.provenId}`,
      );
      return;
    }
    let msg: Message;
    try {
      msg = parseMessage(frame.type, frame.payload);
    } catch (err) {
      this.close('frame', undefined, err as ClusterError);
      return;
    }
    if (msg.type !== MSG.HELLO) return;
    const hello = msg.body;
    const version = Math.min(PROTOCOL_VERSION, hello.protoMax);
    if (version < Math.max(MIN_PROTOCOL_VERSION, hello.protoMin)) {
      this.#fail(
        'frame',
        'SEGLB_CLUSTER_FRAME',
        `no common protocol version (peer ${hello.protoMin}..${hello.protoMax}, here ${MIN_PROTOCOL_VERSION}..${PROTOCOL_VERSION})`,
      );
      return;
    }
    clearTimeout(this.#helloTimer);
    this.version = version;
    this.node = frame.node;
    this.epoch = frame.epoch;
    this.lastSeq = frame.seq;
    this.remoteListen = hello.listen;
    this.#handlers.onHello(this, hello);
  }
}
