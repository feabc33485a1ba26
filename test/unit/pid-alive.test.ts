import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { pidAlive } from '../../ts/storage/fsutil';

describe('pidAlive', () => {
  it('answers false for a zombie: exited, waiting only for its parent to reap it', async () => {
    // The child exits after its parent shell has become `sleep 5`, which never reaps it (a
    // child that exited before the exec could be reaped by the shell itself).
    const sh = spawn('/bin/sh', ['-c', '(exec sleep 0.3) & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const pid = Number(await new Promise<string>((resolve) => sh.stdout!.once('data', (d: Buffer) => resolve(d.toString()))));
      let state = '';
      for (let i = 0; i < 200 && state !== 'Z'; i++) {
        await new Promise((r) => setTimeout(r, 10));
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
        state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      }
      expect(state, 'the child became a zombie').toBe('Z');
      expect(pidAlive(pid)).toBe(false);
      expect(pidAlive(sh.pid!)).toBe(true);
      expect(pidAlive(process.pid)).toBe(true);
    } finally {
      sh.kill('SIGKILL');
    }
  });
});
