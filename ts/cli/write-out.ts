/**
 * The whole output of a listing command (images, ps, inspect), written straight to fd 1.
 * Creating process.stdout loads Node's stream machinery (and, at a terminal, tty and net): a few
 * milliseconds, a tenth of `burrow images`. A pipe whose reader has gone (`burrow ps | head -1`)
 * ends the output quietly, as in Docker; a non-blocking stdout that is full (EAGAIN) hands the
 * rest to process.stdout, which waits until it drains.
 */
import * as fs from 'node:fs';

export function writeOut(text: string): void {
  const buf = Buffer.from(text);
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(1, buf, off);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EPIPE') return;
      if (code !== 'EAGAIN') throw err;
      process.stdout.write(buf.subarray(off));
      return;
    }
  }
}
