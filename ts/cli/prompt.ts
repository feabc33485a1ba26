/** Reading an answer from the user (confirmations before a prune). */
import * as fs from 'node:fs';

/** One line from stdin, synchronously; empty at end of input. */
export function readLine(): string {
  const buf = Buffer.alloc(1);
  let line = '';
  for (;;) {
    let n = 0;
    try {
      n = fs.readSync(0, buf, 0, 1, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      return line;
    }
    if (n === 0 || buf[0] === 0x0a) return line;
    line += String.fromCharCode(buf[0]!);
  }
}
