// Builds seglb's logger: pino JSON lines by default, pino-pretty lines for a terminal, and the
// rate limiter that keeps a flood of denies from flooding the log.

import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { LogConfig } from '../config/types.ts';

export type { Logger } from 'pino';

/**
 * Creates the process logger.
 * @param config - `log:` section (level, format)
 * @param destination - file descriptor to write to (default 1, stdout)
 * @returns a pino logger; secrets are never passed to it, and `*.key`/`*.token` paths are redacted
 *   as a second line of defence
 */
export function createLogger(config: Pick<LogConfig, 'level' | 'format'>, destination = 1): Logger {
  const options = {
    level: config.level,
    base: { pid: process.pid },
    redact: { paths: ['*.key', '*.token', '*.authorization', 'key', 'token'], censor: '[redacted]' },
  };
  const out = failSafeDestination(destination);
  if (config.format === 'pretty') {
    return pino(
      options,
      pretty({
        destination: out,
        colorize: false,
        singleLine: true,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname',
      }),
    );
  }
  return pino(options, out);
}

/** Log bytes held while the destination cannot be written; beyond this, lines are dropped. */
const LOG_BACKLOG_BYTES = 1 << 20;

/**
 * A synchronous destination that never throws: when the log cannot be written (disk full, stdout
 * closed), log calls on the data path must not become exceptions that take the process down. Up to
 * LOG_BACKLOG_BYTES wait (written when the destination recovers), further lines are dropped, and
 * stderr says so at the first failure and every 1000th after. See docs/security.md.
 */
function failSafeDestination(fd: number): ReturnType<typeof pino.destination> {
  const out = pino.destination({ dest: fd, sync: true, maxLength: LOG_BACKLOG_BYTES });
  let failures = 0;
  let dropped = 0;
  out.on('drop', () => {
    dropped++;
  });
  out.on('error', (err: NodeJS.ErrnoException) => {
    if (failures++ % 1000 !== 0) return;
    try {
      process.stderr.write(
        `seglb: log write failed (${err.code ?? err.message}); lines are held up to ${LOG_BACKLOG_BYTES} bytes, then dropped (${dropped} so far)\n`,
      );
    } catch {
      // stderr is gone too: nothing left to tell.
    }
  });
  return out;
}

/**
 * A per-second token bucket for log lines (deny logs). `take()` is O(1) and allocation-free.
 * When lines were suppressed, the first `take()` of a new second returns the count so the caller can
 * log one summary line ("N deny lines suppressed"), as nginx's limit_req logging does.
 */
export class LogRateLimiter {
  readonly #perSecond: number;
  #windowStart = 0;
  #used = 0;
  #suppressed = 0;
  /** @param perSecond - lines allowed per second; 0 suppresses all */
  constructor(perSecond: number) {
    this.#perSecond = perSecond;
  }
  /**
   * @param nowMs - current time in ms (Date.now())
   * @returns -1 when the line must be dropped; otherwise the number of lines suppressed since the
   *   last line that was allowed (0 usually)
   */
  take(nowMs: number): number {
    if (nowMs - this.#windowStart >= 1000) {
      this.#windowStart = nowMs;
      this.#used = 0;
    }
    if (this.#used >= this.#perSecond) {
      this.#suppressed++;
      return -1;
    }
    this.#used++;
    const s = this.#suppressed;
    this.#suppressed = 0;
    return s;
  }

  /**
   * For a periodic timer: when lines were suppressed and the flood has stopped (no allowed line
   * carried the count), returns the count once and resets it, so the summary is never lost.
   * @param nowMs - current time in ms
   * @returns lines suppressed since the last report (0 when none, or when the window is still open)
   */
  flush(nowMs: number): number {
    if (this.#suppressed === 0 || nowMs - this.#windowStart < 1000) return 0;
    const s = this.#suppressed;
    this.#suppressed = 0;
    return s;
  }
}
