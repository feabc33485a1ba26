/**
 * A container's command starts with the signal state of a fresh process, as with runc and crun:
 * nothing ignored, nothing blocked, whoever started the runtime (Node ignores SIGPIPE, and so
 * does Rust's std; the monitor ignores SIGQUIT). With SIGPIPE ignored, `yes | head` in a
 * container spun forever on EPIPE instead of dying (found by the API benchmark's log step).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE, setup, type Env } from './lifecycle.helpers';

let env: Env;

beforeAll(() => {
  env = setup('signals');
}, 60_000);

afterAll(() => env?.dispose());

/**
 * SigIgn and SigBlk of a process, as hex masks: run as the command itself, never through
 * busybox's sh, which ignores SIGQUIT for its children on any host.
 */
const masks = (pid: string) => ['grep', '-E', '^Sig(Ign|Blk):', `/proc/${pid}/status`];
const NONE = 'SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n';

describe('signal dispositions in the container', () => {
  it('a foreground run: nothing ignored or blocked', () => {
    const r = env.b(['run', '--rm', IMAGE, ...masks('self')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(NONE);
  });

  it('a detached container and an exec in it: nothing ignored or blocked; a writer into a closed pipe dies of SIGPIPE', () => {
    const d = env.b(['run', '-d', '--name', 'sig-d', IMAGE, 'sleep', '30']);
    expect(d.code, d.stderr).toBe(0);
    // The container's command (pid 1, under the monitor), then a process exec'd into it.
    for (const pid of ['1', 'self']) {
      const ex = env.b(['exec', 'sig-d', ...masks(pid)]);
      expect(ex.code, ex.stderr).toBe(0);
      expect(ex.stdout, pid).toBe(NONE);
    }
    // `yes` into a pipe whose reader left: killed by SIGPIPE (141), not exiting on EPIPE (1).
    const y = env.b(['exec', 'sig-d', 'sh', '-c', '(yes; echo "status $?" >&2) | head -n 1 >/dev/null']);
    expect(y.code, y.stderr).toBe(0);
    expect(y.stderr).toBe('status 141\n');
    env.b(['rm', '-f', 'sig-d']);
  });
});
