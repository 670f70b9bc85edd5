// The baseline Node proxy of the end-to-end benchmark: a node:http server forwarding every request
// with http-proxy-3 through a keep-alive agent, and adding X-Forwarded-For/-Port/-Proto/-Host
// (`xfwd`), as a Node proxy without seglb's policy work would. Run as a child process:
//   node bench/support/baseline-proxy.ts LISTEN_PORT BACKEND_PORT

import { Agent, createServer } from 'node:http';
import { createProxyServer } from 'http-proxy-3';

const port = Number(process.argv[2]);
const backendPort = Number(process.argv[3]);
if (!Number.isInteger(port) || port <= 0 || !Number.isInteger(backendPort) || backendPort <= 0) {
  process.stderr.write('usage: node bench/support/baseline-proxy.ts LISTEN_PORT BACKEND_PORT\n');
  process.exit(2);
}

const agent = new Agent({ keepAlive: true, maxSockets: 256 });
const proxy = createProxyServer({ target: `http://127.0.0.1:${backendPort}`, agent, xfwd: true });
proxy.on('error', (err, _req, res) => {
  process.stderr.write(`proxy error: ${err.message}\n`);
  if ('writeHead' in res) {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end('bad gateway');
  } else {
    res.destroy();
  }
});

const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => proxy.web(req, res));
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening on 127.0.0.1:${port}\n`));
process.on('SIGTERM', () => {
  server.closeAllConnections();
  agent.destroy();
  server.close(() => process.exit(0));
});
