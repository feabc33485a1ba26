/** Reading an answer from the user (confirmations before a prune). */
import * as fs from 'node:fs';
import { BurrowError } from '../errors';

/**
 * Docker's confirmation before a prune, the same for every prune command. Asked only on a
 * terminal: without one there is nobody to answer (a "y" already waiting in a pipe was not
 * typed in answer to this warning), and a script that meant it says -f.
 */
export function confirm(what: string, warning: string, force: boolean | undefined): boolean {
  if (force) return true;
  if (!process.stdin.isTTY) throw new BurrowError('EUSAGE', `${what}: not removing anything without confirmation, and stdin is not a terminal to ask on`, 'add -f (--force) to remove without a prompt');
  process.stdout.write(`${warning}\nAre you sure you want to continue? [y/N] `);
  return /^y(es)?$/i.test(readLine().trim());
}

/** One line from stdin, synchronously; empty at end of input. */
export function readLine(): string {
  const buf = Buffer.alloc(1);
  let line = '';
  for (;;) {
    let n: number;
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
