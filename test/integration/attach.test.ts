/**
 * Terminals and attach as a user drives them: `run -it` through a real pseudo-terminal
 * (test/harness/ptydrive.py: the window size at the start and after a resize, Ctrl-C, the
 * detach keys, the terminal's settings before and after), `attach` to a detached container
 * with a terminal or with a piped stdin, `start -ai`, Docker's `--detach-keys`. As root and as
 * the unprivileged test user; every test removes its containers and checks /proc for anything
 * left behind.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BIN, IS_ROOT } from './helpers';
import { alive, cmdline, IMAGE, leftovers, pidNs, setup, type Env, type Step } from './lifecycle.helpers';

let env: Env;
beforeAll(() => {
  env = setup('attach');
});
afterEach(() => env.cleanup());
afterAll(() => env?.dispose());

const b = (args: string[], opts?: { input?: string; timeout?: number }) => env.b(args, opts);
const ok = (args: string[]) => {
  const r = b(args);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
};

/** The CLI at a real terminal, driven step by step (test/harness/ptydrive.py). */
const atTerminal = (steps: Step[], args: string[]) => env.tty(steps, args);

const CTRL_C = '\u0003';
const CTRL_P_Q = '\u0010\u0011';
const state = (ref: string) => ok(['inspect', '-f', '{{.State.Status}} {{.State.Pid}}', ref]).trim().split(' ');

describe(`terminals and attach as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('run -it: the size at the start and after a resize, Ctrl-C reaches the container, ctrl-p,ctrl-q detaches and restores the terminal', () => {
    const d = atTerminal(
      [
        ['size', 30, 100],
        ['expect', '# '],
        ['send', 'stty size; tty\r'],
        ['expect', '\r\n30 100\r\n/dev/pts/'],
        // The kernel sends SIGWINCH to the terminal's foreground, burrow: it passes the size on.
        ['size', 40, 120],
        ['send', 'stty size\r'],
        ['expect', '\r\n40 120\r\n'],
        ['send', 'sleep 100\r'],
        ['proc', 'sleep\u0000100\u0000'],
        ['send', CTRL_C],
        ['send', 'echo status=$?\r'],
        ['expect', 'status=130'],
        ['send', CTRL_P_Q],
        ['wait'],
      ],
      ['run', '-it', '--name', 'tty1', IMAGE, 'sh'],
    );
    expect(d.status).toBe(0);
    expect(d.out).toMatch(/read escape sequence\r\n$/);
    // The terminal is as it was: raw mode undone.
    expect(d.after).toBe(d.before);
    const [status, pid] = state('tty1');
    expect(status).toBe('running');
    expect(alive(Number(pid))).toBe(true);
    expect(ok(['ps', '--format', '{{.Names}} {{.State}}'])).toBe('tty1 running\n');
    // The interrupted sleep is gone, the shell is not.
    expect(fs.readdirSync('/proc').some((p) => /^\d+$/.test(p) && cmdline(Number(p)) === 'sleep 100')).toBe(false);
  });

  it("attach reattaches to a detached -it --rm container; its exit status is attach's and --rm removes it", () => {
    atTerminal([['expect', '# '], ['send', 'echo one\r'], ['expect', '\r\none\r\n'], ['send', CTRL_P_Q], ['wait']], ['run', '-it', '--rm', '--name', 'tty2', IMAGE, 'sh']);
    expect(state('tty2')[0]).toBe('running');
    const d = atTerminal(
      [
        // The size of the new terminal replaces the old one's.
        ['size', 33, 90],
        ['send', 'stty size\r'],
        ['expect', '\r\n33 90\r\n'],
        ['send', 'exit 3\r'],
        ['wait'],
      ],
      ['attach', 'tty2'],
    );
    expect(d.status).toBe(3);
    expect(d.after).toBe(d.before);
    // Like Docker's client, a --rm container's is back only once it is removed.
    expect(ok(['ps', '-aq'])).toBe('');
  });

  it('--detach-keys: ctrl-p,ctrl-q then reach the container, the given keys detach (run and attach)', () => {
    const d = atTerminal(
      [
        ['expect', '# '],
        ['send', 'echo one\r'],
        ['expect', '\r\none\r\n'],
        // ^P (history) and ^Q reach the shell; ^U clears what ^P brought back.
        ['send', `${CTRL_P_Q}\u0015echo still-$((1+1))\r`],
        ['expect', '\r\nstill-2\r\n'],
        ['send', '\u0001x'],
        ['wait'],
      ],
      ['run', '-it', '--detach-keys', 'ctrl-a,x', '--name', 'keys', IMAGE, 'sh'],
    );
    expect(d.status).toBe(0);
    expect(d.out).toMatch(/read escape sequence\r\n$/);
    expect(state('keys')[0]).toBe('running');
    // A key that is not the sequence's next one goes on with the one held back: "ctrl-x a" is not
    // "ctrl-x ctrl-y", and a reader in the container gets both bytes (and the Enter).
    const a = atTerminal(
      [
        ['send', 'echo two\r'],
        ['expect', '\ntwo\r\n'],
        // The shell has read its line when it prints "ready": what follows is head's.
        ['send', 'echo ready; head -c 3 | od -An -tx1\r'],
        ['expect', '\nready\r\n'],
        ['send', '\u0018a\r'],
        ['expect', ' 18 61 0a'],
        ['send', '\u0018\u0019'],
        ['wait'],
      ],
      ['attach', '--detach-keys', 'ctrl-x,ctrl-y', 'keys'],
    );
    expect(a.status).toBe(0);
    expect(a.after).toBe(a.before);
    expect(state('keys')[0]).toBe('running');
    const bad = b(['run', '-it', '--detach-keys', 'ctrl-1', IMAGE, 'true']);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/Invalid detach keys/);
    expect(ok(['ps', '-aq', '--filter', 'status=created'])).toBe('');
  });

  it('start -ai of a container created with -it', () => {
    ok(['create', '-it', '--name', 'cs', IMAGE, 'sh']);
    const d = atTerminal([['size', 25, 81], ['expect', '# '], ['send', 'stty size\r'], ['expect', '\r\n25 81\r\n'], ['send', 'exit 2\r'], ['wait']], ['start', '-ai', 'cs']);
    expect(d.status).toBe(2);
    expect(d.after).toBe(d.before);
    expect(ok(['inspect', '-f', '{{.State.Status}} {{.State.ExitCode}}', 'cs'])).toBe('exited 2\n');
  });

  it('run -d -i, then attach with a piped stdin delivers it; stdout and stderr stay apart', () => {
    ok(['run', '-d', '-i', '--name', 'pi', IMAGE, 'sh', '-c', 'read line; echo got:$line; echo err >&2; exit 4']);
    const r = b(['attach', 'pi'], { input: 'hello\n' });
    expect(r).toMatchObject({ code: 4, stdout: 'got:hello\n', stderr: 'err\n' });
  });

  it('run -t without a terminal: the output through the pty, the status, --rm', () => {
    const r = b(['run', '--rm', '-t', IMAGE, 'sh', '-c', 'echo a; tty; exit 6']);
    expect(r.code).toBe(6);
    expect(r.stdout).toMatch(/^a\r\n\/dev\/pts\/\d+\r\n$/);
    expect(ok(['ps', '-aq'])).toBe('');
  });

  it('a container of a foreground run (no -d, no -t) is recorded as the monitor records one: its output still reaches the caller, logs has it, attach follows it, stdout and stderr apart', async () => {
    let seen = -1;
    const fg = env.bg(['run', '--name', 'fg', IMAGE, 'sh', '-c', 'echo to-stderr >&2; i=0; while true; do echo hi $i; i=$((i+1)); sleep 0.2; done'], {
      onLine: (l) => {
        const m = /^hi (\d+)$/.exec(l);
        if (m) seen = Number(m[1]);
      },
    });
    for (let i = 0; seen < 2; i++) {
      expect(i, 'the foreground run to print hi 2').toBeLessThan(600);
      await new Promise((r) => setTimeout(r, 50));
    }
    const logs = b(['logs', 'fg']);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/^hi 0\nhi 1\nhi 2\n/);
    expect(logs.stderr).toBe('to-stderr\n');
    // attach follows it live, from the next line on, until the container stops.
    let attached = -1;
    const att = env.bg(['attach', 'fg'], {
      onLine: (l) => {
        const m = /^hi (\d+)$/.exec(l);
        if (m) attached = Number(m[1]);
      },
    });
    for (let i = 0; attached < 0 || attached < seen - 1 || attached < 4; i++) {
      expect(i, 'attach to follow the container').toBeLessThan(600);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(b(['stop', '-t', '1', 'fg']).code).toBe(0);
    const [a, f] = await Promise.all([att, fg]);
    // The container's stop signal (SIGTERM; sh ignores it as pid 1, so SIGKILL after 1 s).
    expect(f.code).toBe(137);
    expect(a.code).toBe(137);
    const lines = a.stdout.split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(0);
    // Consecutive lines, nothing lost or repeated in the live stream.
    const first = Number(/^hi (\d+)$/.exec(lines[0]!)![1]);
    expect(lines).toEqual(lines.map((_, k) => `hi ${first + k}`));
    // The caller got everything, in order.
    const all = f.stdout.split('\n').filter(Boolean);
    expect(all).toEqual(all.map((_, k) => `hi ${k}`));
    expect(f.stderr).toBe('to-stderr\n');
    expect(b(['logs', 'fg']).stdout).toBe(f.stdout);
  });

  it("a foreground run whose caller's reader leaves (`burrow run IMG yes | head -n 1`) ends as on that pipe itself: the container's write fails", () => {
    const r = spawnSync('bash', ['-c', `"$@" run --name piped ${IMAGE} yes | head -n 1; echo "status \${PIPESTATUS[0]}"`, 'bash', process.execPath, BIN, '--root', env.store, '--runroot', env.runroot], { encoding: 'utf8', timeout: 60_000 });
    // Not killed by the timeout: the run ended.
    expect(r.error).toBeUndefined();
    const [first, status] = r.stdout.split('\n');
    expect(first).toBe('y');
    // busybox's yes ends on EPIPE (1), or on SIGPIPE (141) where it is not ignored; the same either way as when it wrote to the pipe itself.
    const code = /^status (\d+)$/.exec(status ?? '')?.[1];
    expect(['1', '141']).toContain(code);
    expect(ok(['inspect', '-f', '{{.State.Status}} {{.State.ExitCode}}', 'piped']).trim()).toBe(`exited ${code}`);
  });

  it('rm -f of a detached -it container leaves no monitor and no container process', () => {
    const id = ok(['run', '-d', '-it', '--name', 'gone', IMAGE, 'sh']).trim();
    const pid = Number(state('gone')[1]);
    const ns = pidNs(pid)!;
    expect(ns).toBeTruthy();
    const mine = () => fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p) && alive(Number(p)) && cmdline(Number(p)).includes(id));
    expect(mine().length).toBeGreaterThan(0); // its monitor
    // Its path is longer than a socket address holds: both sides reach it through a directory fd.
    const sock = path.join(env.store, 'containers', id, 'attach.sock');
    expect(fs.statSync(sock).isSocket()).toBe(true);
    expect(sock.length).toBeGreaterThan(108);
    ok(['rm', '-f', 'gone']);
    expect(fs.existsSync(path.dirname(sock))).toBe(false);
    expect(alive(pid)).toBe(false);
    expect(mine()).toEqual([]);
    expect(leftovers(env.runroot, [ns])).toEqual([]);
  });
});
