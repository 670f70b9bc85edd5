// TCP VIPs: L4 proxying. After the accept-time verdict, a backend is picked and dialled (outbound
// check first); bytes are piped both ways with half-close carried across (a FIN from one side is
// passed on while the other direction keeps flowing), as HAProxy `mode tcp` does.

import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { parseEndpoint } from '../net/endpoint.ts';
import type { AssignHandler, Backend, PickRequest, QueueTicket } from '../pools/index.ts';
import { resolveAllowedAddress } from '../pools/index.ts';
import { type AcceptShared, installVerdictHook, type SeglbSocket } from './accept.ts';
import type { SegmentRuntime, VipContext } from './context.ts';
import { closeGracefully, listenOn } from './http.ts';

/** A TCP VIP. Construct, `listen()`, `setContext()` on reload, `close(graceMs)` to drain. */
export class TcpVip {
  readonly server: Server;
  readonly active = new Set<Socket>();
  #ctx: VipContext;
  readonly #shared: AcceptShared;

  constructor(ctx: VipContext, shared: AcceptShared) {
    this.#ctx = ctx;
    this.#shared = shared;
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true });
    installVerdictHook(
      this.server,
      () => this.#ctx,
      shared,
      (socket) => this.#proxy(socket),
      this.active,
    );
  }

  /** Swaps in the VIP's context of a new snapshot; open connections keep theirs. */
  setContext(ctx: VipContext): void {
    this.#ctx = ctx;
  }

  /** Binds the VIP. @returns the bound address. @throws the bind error. */
  listen(): Promise<AddressInfo> {
    const ep = parseEndpoint(this.#ctx.vip.listen, true);
    return listenOn(this.server, ep.host, ep.port, this.#ctx.vip.ipv6_only, this.#ctx.vip.reuse_port);
  }

  /** Stops accepting; open connections get `graceMs` to finish, then are closed. */
  close(graceMs: number): Promise<void> {
    return closeGracefully(this.server, this.active, graceMs, () => {});
  }

  /**
   * Dials a backend for an allowed client socket (still paused) and pipes both ways.
   * A refused or timed-out dial moves on to another backend up to the pool's `retries` (within its
   * retry budget); while every backend is at max_connections the connection waits in the pool queue.
   */
  #proxy(client: SeglbSocket): void {
    const conn = client.seglb;
    if (conn === undefined || client.destroyed) {
      client.destroy();
      return;
    }
    new TcpForward(client, conn.ctx, conn.source, this.#shared).start(null);
  }
}

/**
 * One proxied TCP connection: picks a backend through the pool (stickiness, queue), dials it (TLS
 * when the pool says so), reports connect outcomes for outlier detection, and retries elsewhere
 * when the connect fails.
 * Implements the pool's PickRequest (source address only) and AssignHandler.
 */
class TcpForward implements PickRequest, AssignHandler {
  readonly source: string;
  readonly path = '';
  readonly headers = null;
  readonly secure = false;
  setCookie: string | null = null;
  readonly #client: SeglbSocket;
  readonly #seg: SegmentRuntime;
  readonly #ctx: VipContext;
  readonly #shared: AcceptShared;
  #attempt = 0;
  /** The retry budget allowed this connection a retry. */
  #retried = false;
  #ticket: QueueTicket | null = null;
  #ended = false;

  constructor(client: SeglbSocket, ctx: VipContext, source: string, shared: AcceptShared) {
    this.#client = client;
    this.#ctx = ctx;
    this.#seg = ctx.segment;
    this.source = source;
    this.#shared = shared;
    this.#seg.pool.requestStarted();
    client.once('close', this.#onClientClose);
  }

  start(avoid: Backend | null): void {
    this.#ticket = this.#seg.pool.assign(this, avoid, this);
  }

  onRejected(_status: 503, reason: string): void {
    this.#ticket = null;
    this.#seg.counters.responses503++;
    this.#shared.log.warn({ segment: this.#seg.name, source: this.source }, reason);
    this.#client.destroy();
  }

  onAssigned(backend: Backend): void {
    this.#ticket = null;
    const seg = this.#seg;
    const client = this.#client;
    if (client.destroyed) {
      seg.pool.release(backend);
      return;
    }
    if (this.#attempt === 0) seg.counters.tcpConnections++;
    client.seglbBackend = backend.name;
    resolveAllowedAddress(
      backend.endpoint.host,
      seg.backendSubnets,
      (host, address, ok) => {
        if (!ok) {
          seg.counters.outboundDenied++;
          this.#shared.log.warn(
            { segment: seg.name, backend: host, address },
            'outbound connection refused: outside backend_subnets',
          );
        }
      },
      (err, address) => {
        if (err || client.destroyed) {
          seg.pool.release(backend);
          client.destroy();
          return;
        }
        this.#dial(backend, address);
      },
    );
  }

  #dial(backend: Backend, address: string): void {
    const seg = this.#seg;
    const client = this.#client;
    const t = this.#ctx.timeouts;
    const tls = backend.tls;
    const upstream: Socket = tls
      ? tlsConnect({
          host: address,
          port: backend.endpoint.port,
          servername: tls.servername,
          ca: tls.ca,
          rejectUnauthorized: tls.rejectUnauthorized,
        })
      : connect({ host: address, port: backend.endpoint.port, allowHalfOpen: true, noDelay: true });
    const connectTimer = setTimeout(
      () => upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })),
      t.backend_connect_ms,
    );
    let connected = false;
    upstream.once(tls ? 'secureConnect' : 'connect', () => {
      connected = true;
      clearTimeout(connectTimer);
      seg.pool.reportConnected(backend);
      if (tls) upstream.setNoDelay(true);
      pipeBoth(client, upstream, t.tcp_idle_ms);
    });
    upstream.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(connectTimer);
      if (!connected) {
        seg.pool.reportConnectFailure(backend);
        if (
          this.#attempt < seg.pool.config.retries &&
          !client.destroyed &&
          seg.pool.tryRetry(this.#retried)
        ) {
          this.#retried = true;
          this.#attempt++;
          seg.counters.retries++;
          releaseOnce(seg, backend, upstream);
          this.start(backend);
          return;
        }
        this.#shared.log.warn(
          { segment: seg.name, backend: backend.name, code: e.code },
          'backend connection failed',
        );
      }
      client.destroy();
    });
    upstream.once('close', () => {
      clearTimeout(connectTimer);
      if (connected || client.destroyed) releaseOnce(seg, backend, upstream);
    });
  }

  readonly #onClientClose = (): void => {
    this.#ticket?.cancel();
    this.#ticket = null;
    if (this.#ended) return;
    this.#ended = true;
    this.#seg.pool.requestEnded(this.#retried);
  };
}

const released = new WeakSet<Socket>();

function releaseOnce(seg: SegmentRuntime, backend: Backend, upstream: Socket): void {
  if (released.has(upstream)) return;
  released.add(upstream);
  seg.pool.release(backend);
}

/**
 * Pipes a <-> b. End of one read side ends the other's write side (half-close); an error or reset
 * on either destroys both; no traffic in either direction for idleMs (0 = never) destroys both.
 */
function pipeBoth(a: Socket, b: Socket, idleMs: number): void {
  a.pipe(b);
  b.pipe(a);
  const destroyBoth = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', destroyBoth);
  b.on('error', destroyBoth);
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
  // When both directions have ended, close fully (node keeps half-open sockets with allowHalfOpen).
  let ends = 0;
  const onEnd = () => {
    if (++ends === 2) destroyAfterFlush(a, b);
  };
  a.on('end', onEnd);
  b.on('end', onEnd);
  if (idleMs > 0) {
    a.setTimeout(idleMs, destroyBoth);
    b.setTimeout(idleMs, destroyBoth);
  }
  a.resume();
}

function destroyAfterFlush(a: Socket, b: Socket): void {
  const done = () => {
    if (a.writableFinished && b.writableFinished) {
      a.destroy();
      b.destroy();
    }
  };
  if (a.writableFinished && b.writableFinished) done();
  else {
    a.once('finish', done);
    b.once('finish', done);
  }
}
