// Fallback benchmark backend when nginx is not installed: a node:http server answering GET /64k with
// 65536 bytes and every other request (POST bodies read and discarded first) with 200 "ok".
// Run as a child process: node bench/support/node-backend.ts PORT

import { createServer } from 'node:http';
import { LARGE_PATH, LARGE_RESPONSE_BYTES } from './payloads.ts';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write('usage: node bench/support/node-backend.ts PORT\n');
  process.exit(2);
}
const large = Buffer.alloc(LARGE_RESPONSE_BYTES, 'x');
const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  req.resume();
  req.once('end', () => {
    if (req.url === LARGE_PATH) {
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': String(LARGE_RESPONSE_BYTES),
      });
      res.end(large);
    } else {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
      res.end('ok');
    }
  });
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening on 127.0.0.1:${port}\n`));
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
