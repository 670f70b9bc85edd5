// The flood of the deny-flood benchmark, run as its own process so it does not share an event loop
// with the latency probe: keeps CONCURRENCY connection attempts in flight to 127.0.0.1:PORT, each
// from the next of SOURCES addresses PREFIX.x.y (x, y in 1..250), for SECONDS, then prints one JSON
// line: {"attempts": N, "reset": N, "accepted": N, "errors": N}.
// Run: node bench/hardening/flood-client.ts PORT PREFIX SECONDS CONCURRENCY [SOURCES]  (PREFIX: 127.1)

import { connect } from 'node:net';

const [portArg, prefix, secondsArg, concurrencyArg, sourcesArg] = process.argv.slice(2);
const sources = Math.min(62_500, Number(sourcesArg ?? 62_500));
const port = Number(portArg);
const seconds = Number(secondsArg);
const concurrency = Number(concurrencyArg);
if (!port || !prefix || !seconds || !concurrency) {
  process.stderr.write('usage: node bench/hardening/flood-client.ts PORT PREFIX SECONDS CONCURRENCY\n');
  process.exit(2);
}

const counts = { attempts: 0, reset: 0, accepted: 0, errors: 0 };
const deadline = Date.now() + seconds * 1000;
let n = 0;

function nextSource(): string {
  n = (n + 1) % sources;
  return `${prefix}.${1 + Math.floor(n / 250)}.${1 + (n % 250)}`;
}

function attempt(): void {
  if (Date.now() >= deadline) {
    if (--concurrencyLeft === 0) finish();
    return;
  }
  counts.attempts++;
  const s = connect({ port, host: '127.0.0.1', localAddress: nextSource() });
  let done = false;
  const next = (kind: 'reset' | 'accepted' | 'errors') => {
    if (done) return;
    done = true;
    counts[kind]++;
    s.destroy();
    setImmediate(attempt);
  };
  s.on('error', (e: NodeJS.ErrnoException) => next(e.code === 'ECONNRESET' ? 'reset' : 'errors'));
  s.on('close', () => next('reset'));
  // A flood client of an allowed source would be served: give up on it quickly.
  s.on('connect', () => setTimeout(() => next('accepted'), 200));
}

let concurrencyLeft = concurrency;
function finish(): void {
  process.stdout.write(`${JSON.stringify(counts)}\n`);
  process.exit(0);
}

for (let i = 0; i < concurrency; i++) attempt();
