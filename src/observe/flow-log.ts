// Writes flow records as JSON lines to a file, buffered and written asynchronously (the data path
// never waits on the disk), with size-based rotation: FILE -> FILE.1 -> ... -> FILE.keep, like
// logrotate's `size` + `rotate N`.

import { closeSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import type { Logger } from './log.ts';

/** Settings of a flow log (`observe.flow_log`). */
export interface FlowLogOptions {
  /** Absolute path. */
  readonly file: string;
  /** Rotate when the file would grow past this many bytes. */
  readonly maxBytes: number;
  /** Rotated files kept (FILE.1 ... FILE.keep); 0 truncates instead. */
  readonly keep: number;
  /** Flush interval in ms. */
  readonly flushMs?: number;
  /** Most bytes buffered between flushes; further lines are dropped and counted. */
  readonly maxBufferBytes?: number;
}

/**
 * A JSON-lines flow log. `write(line)` appends to an in-memory buffer (O(1)); a timer flushes it
 * with one write per flush. Lines that do not fit the buffer bound are dropped and counted
 * (`dropped`), never queued without bound.
 */
export class FlowLog {
  readonly file: string;
  readonly #maxBytes: number;
  readonly #keep: number;
  readonly #maxBuffer: number;
  readonly #log: Logger;
  #fd = -1;
  #size = 0;
  #buffer: string[] = [];
  #buffered = 0;
  #timer: NodeJS.Timeout;
  /** Lines dropped because the buffer was full or the file could not be written. */
  dropped = 0;
  /** Lines written. */
  written = 0;
  /** Files rotated. */
  rotations = 0;

  constructor(options: FlowLogOptions, log: Logger) {
    this.file = options.file;
    this.#maxBytes = options.maxBytes;
    this.#keep = options.keep;
    this.#maxBuffer = options.maxBufferBytes ?? 8 << 20;
    this.#log = log;
    this.#open();
    this.#timer = setInterval(() => this.flush(), options.flushMs ?? 200);
    this.#timer.unref();
  }

  /** Buffers one line (without the newline). */
  write(line: string): void {
    if (this.#buffered + line.length + 1 > this.#maxBuffer) {
      this.dropped++;
      return;
    }
    this.#buffer.push(line);
    this.#buffered += line.length + 1;
  }

  /**
   * Writes the buffer out, rotating first when the file would pass max_bytes. Synchronous but
   * bounded (at most maxBufferBytes per call, every flushMs), like pino's sync destination.
   */
  flush(): void {
    if (this.#buffer.length === 0) return;
    const lines = this.#buffer;
    this.#buffer = [];
    this.#buffered = 0;
    let chunk = '';
    let chunkBytes = 0;
    for (const line of lines) {
      const bytes = Buffer.byteLength(line) + 1;
      if (this.#size + chunkBytes > 0 && this.#size + chunkBytes + bytes > this.#maxBytes) {
        this.#writeOut(chunk);
        chunk = '';
        chunkBytes = 0;
        this.#rotate();
      }
      chunk += `${line}\n`;
      chunkBytes += bytes;
    }
    this.#writeOut(chunk);
    this.written += lines.length;
  }

  /** Flushes and closes the file. */
  close(): void {
    clearInterval(this.#timer);
    this.flush();
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }

  #writeOut(chunk: string): void {
    if (chunk === '') return;
    if (this.#fd < 0) this.#open();
    if (this.#fd < 0) {
      this.dropped += countLines(chunk);
      return;
    }
    try {
      const buf = Buffer.from(chunk);
      writeSync(this.#fd, buf);
      this.#size += buf.length;
    } catch (err) {
      this.dropped += countLines(chunk);
      this.#log.error({ file: this.file, err: String(err) }, 'flow log write failed');
      try {
        closeSync(this.#fd);
      } catch {}
      this.#fd = -1;
    }
  }

  #open(): void {
    try {
      this.#fd = openSync(this.file, 'a', 0o640);
      this.#size = statSync(this.file).size;
    } catch (err) {
      this.#fd = -1;
      this.#log.error({ file: this.file, err: String(err) }, 'flow log cannot be opened; lines are dropped');
    }
  }

  #rotate(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
    try {
      if (this.#keep === 0) rmSync(this.file, { force: true });
      else {
        rmSync(`${this.file}.${this.#keep}`, { force: true });
        for (let i = this.#keep - 1; i >= 1; i--) {
          try {
            renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
          } catch {}
        }
        renameSync(this.file, `${this.file}.1`);
      }
      this.rotations++;
    } catch (err) {
      this.#log.error({ file: this.file, err: String(err) }, 'flow log rotation failed');
    }
    this.#open();
  }
}

function countLines(chunk: string): number {
  let n = 0;
  for (let i = chunk.indexOf('\n'); i >= 0; i = chunk.indexOf('\n', i + 1)) n++;
  return n;
}
