// TCP VIPs: L4 proxying. After the accept-time verdict, a backend is picked and dialled (outbound
// check first); bytes are piped both ways with half-close carried across (a FIN from one side is
// passed on while the other direction keeps flowing), as HAProxy `mode tcp` does.

import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { parseEndpoint } from '../net/endpoint.ts';
import type { Backend } from '../pools/index.ts';
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
      (socket) => this.#proxy(socket, null, 0),
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
    return listenOn(this.server, ep.host, ep.port, this.#ctx.vip.ipv6_only);
  }

  /** Stops accepting; open connections get `graceMs` to finish, then are closed. */
  close(graceMs: number): Promise<void> {
    return closeGracefully(this.server, this.active, graceMs, () => {});
  }

  /**
   * Dials a backend for an allowed client socket (still paused) and pipes both ways.
   * A refused or timed-out dial moves on to another backend up to the pool's `retries`.
   */
  #proxy(client: SeglbSocket, avoid: Backend | null, attempt: number): void {
    const conn = client.seglb;
    if (conn === undefined || client.destroyed) {
      client.destroy();
      return;
    }
    const seg = conn.ctx.segment;
    const t = conn.ctx.timeouts;
    const backend = seg.pool.acquire(avoid);
    if (backend === null) {
      seg.counters.responses503++;
      this.#shared.log.warn(
        { segment: seg.name, source: conn.source },
        `no usable backend in pool ${seg.pool.name}`,
      );
      client.destroy();
      return;
    }
    if (attempt === 0) seg.counters.tcpConnections++;
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
        const upstream = connect({
          host: address,
          port: backend.endpoint.port,
          allowHalfOpen: true,
          noDelay: true,
        });
        const connectTimer = setTimeout(
          () => upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })),
          t.backend_connect_ms,
        );
        let connected = false;
        upstream.once('connect', () => {
          connected = true;
          clearTimeout(connectTimer);
          pipeBoth(client, upstream, t.tcp_idle_ms);
        });
        upstream.once('error', (e: NodeJS.ErrnoException) => {
          clearTimeout(connectTimer);
          if (!connected) {
            seg.pool.recordFailure(backend);
            if (attempt < seg.pool.config.retries && !client.destroyed) {
              seg.counters.retries++;
              releaseOnce(seg, backend, upstream);
              this.#proxy(client, backend, attempt + 1);
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
      },
    );
  }
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
