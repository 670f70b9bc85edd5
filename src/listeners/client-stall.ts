// The slow-body / slow-read guard of HTTP VIPs (timeouts.client_stall_ms): a client that stops
// sending its request body, or stops reading its response, is disconnected, like nginx's
// client_body_timeout and send_timeout. Built on node's socket inactivity timeout (server.timeout).

import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/** What node keeps on a server socket (internal, read only): the response being written. */
type ServerSocket = Socket & {
  _httpMessage?: {
    req?: { complete: boolean; readableLength: number };
    writableNeedDrain?: boolean;
  } | null;
};

/**
 * Arms the guard on an HTTP(S) server: every client socket gets an inactivity timeout of `stallMs`,
 * and when it fires the exchange is looked at:
 * - no request in progress: node's keep-alive idle timeout (it uses the same timer): closed;
 * - the request body is incomplete and nothing of it is buffered: the client stopped sending: closed;
 * - the response cannot drain (data queued, no progress): the client stopped reading: closed;
 * - otherwise seglb is waiting for the backend (bounded by the backend_* timeouts): kept.
 * Node re-arms the timer at the next read or write.
 * @param stallMs - 0 leaves the server alone
 * @param onStall - called once per connection closed for stalling (for counters)
 */
export function installStallGuard(server: Server, stallMs: number, onStall: () => void): void {
  if (stallMs <= 0) return;
  server.timeout = stallMs;
  server.on('timeout', (socket: ServerSocket) => {
    const res = socket._httpMessage;
    if (res === null || res === undefined) {
      socket.destroy();
      return;
    }
    const req = res.req;
    const sending = req !== undefined && !req.complete && req.readableLength === 0;
    const reading = res.writableNeedDrain === true || socket.writableLength > 0;
    if (sending || reading) {
      onStall();
      resetSocket(socket);
    }
  });
}

/**
 * Closes with a TCP reset: a slow reader's unread response would otherwise stay queued in the
 * kernel (a FIN waits behind it) for as long as the client keeps its window shut. For TLS the
 * reset goes to the raw socket underneath.
 */
function resetSocket(socket: Socket): void {
  const raw = (socket as Socket & { _parent?: Socket })._parent ?? socket;
  try {
    raw.resetAndDestroy();
  } catch {
    raw.destroy();
  }
  socket.destroy();
}
