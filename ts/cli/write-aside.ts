/** Writing an archive to a named file (`save -o`, `export -o`). */
import * as fs from 'node:fs';
import { BurrowError } from '../errors';

/**
 * Writes `output` through a temporary name beside it and renames it once complete and synced:
 * an interrupted command leaves no truncated archive under the name. `write` gets the open fd
 * and must not close it.
 */
export async function writeAside(command: string, output: string, write: (fd: number) => Promise<void>): Promise<void> {
  const tmp = `${output}.tmp-${process.pid}`;
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
  } catch (err) {
    throw new BurrowError('EUSAGE', `${command}: cannot write ${output}: ${(err as Error).message}`);
  }
  try {
    await write(fd);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, output);
  } catch (err) {
    try {
      fs.closeSync(fd);
    } catch {
      /* closed already */
    }
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}
