// Reads the files a config names (IP-set lists, certificates, keys, token files): regular files only
// and of bounded size, so a path to /dev/zero, a FIFO or a directory is a config error instead of a
// start-up that reads without end or blocks forever.

import { readFileSync, statSync } from 'node:fs';

/** Largest file a config may name, bytes (a million-prefix IP-set file is about 20 MB). */
export const MAX_CONFIG_FILE_BYTES = 256 * 1024 * 1024;

/**
 * Reads a regular file whole.
 * @throws the open/read error (ENOENT, EACCES ...), or an error whose `code` is
 *   `not a regular file` / `larger than 256 MiB`, which reads well after "cannot read PATH: "
 */
export function readRegularFile(path: string): Buffer;
export function readRegularFile(path: string, encoding: 'utf8'): string;
export function readRegularFile(path: string, encoding?: 'utf8'): Buffer | string {
  // stat before open: opening a FIFO for reading would block until a writer comes.
  const st = statSync(path);
  if (!st.isFile())
    throw Object.assign(new Error(`${path} is not a regular file`), { code: 'not a regular file' });
  if (st.size > MAX_CONFIG_FILE_BYTES)
    throw Object.assign(new Error(`${path} is too large`), {
      code: `larger than ${MAX_CONFIG_FILE_BYTES >> 20} MiB`,
    });
  return encoding ? readFileSync(path, encoding) : readFileSync(path);
}
