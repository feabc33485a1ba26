/**
 * burrow-runtime's command line as runc's clients drive it (podman 4.3, containerd 1.6's runc
 * v2 shim and its CRI plugin), each case checked against runc 1.1.5's behaviour: `kill --all` of
 * a stopped container, options after the container id, hooks at their moments, the seccomp
 * listener during `create`, unknown capabilities and spec versions, and errors in runc's log
 * format. Run as root and (test/run.mjs) as the unprivileged test user.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IS_ROOT, sh, testUser, type TestUser } from './helpers';
import { RUNTIME } from '../harness/bundle.mjs';
import { ensureTestUser } from '../harness/test-user.mjs';
import { runtimeEnv, type Config, type Out } from './runtime.helpers';

// The runtime runs in a directory without config.json: one that ignored `--bundle` after the id
// would read ./config.json there.
const emptyCwd = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-rtcli-cwd-'));
const env = runtimeEnv('rtcli', { cwd: emptyCwd });
const { work, stateRoot, waitFor } = env;
let n = 0;
afterAll(() => {
  env.dispose();
  fs.rmSync(emptyCwd, { recursive: true, force: true });
});

/** Runs the runtime with `globals` before `--root`'s command; output through files (a created container keeps its stdio). */
const rt = (args: string[], globals: string[] = []): Out => env.rt(args, { globals });

function bundle(args: string[], edit?: (c: Config) => void): { dir: string; id: string } {
  return env.bundle(args, edit);
}

function status(id: string): string | undefined {
  const r = rt(['state', id]);
  return r.code === 0 ? (JSON.parse(r.stdout) as { status: string }).status : undefined;
}

/** A created and started `sleep`, stopped by SIGKILL: a stopped container, as the shim sees it after the task exits. */
function stoppedContainer(): string {
  const b = bundle(['sleep', '30']);
  expect(rt(['create', '--bundle', b.dir, b.id]).code).toBe(0);
  expect(rt(['start', b.id]).code).toBe(0);
  expect(rt(['kill', b.id, 'KILL']).code).toBe(0);
  waitFor(() => status(b.id) === 'stopped');
  return b.id;
}

describe(`burrow-runtime's command line as runc's clients use it, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  describe('kill of a stopped container (runc 1.1)', () => {
    it('kill --all succeeds, as containerd\'s shim sends it after the task exited', () => {
      const id = stoppedContainer();
      const r = rt(['kill', '--all', id, 'KILL']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      // The shim's own order, with the flag after the id, too.
      expect(rt(['kill', id, '--all', '9']).code).toBe(0);
      // And the container can then be deleted.
      expect(rt(['delete', id]).code).toBe(0);
      expect(status(id)).toBeUndefined();
    });

    it('a plain kill fails with runc\'s "container not running"', () => {
      const id = stoppedContainer();
      const r = rt(['kill', id, 'KILL']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('container not running');
      expect(rt(['delete', id]).code).toBe(0);
    });

    it('kill --all of a container that does not exist still fails ("does not exist")', () => {
      const r = rt(['kill', '--all', `missing-${process.pid}`, 'KILL']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('does not exist');
    });
  });

  describe('options after the container id (runc reorders them)', () => {
    it('create ID --bundle DIR uses DIR, not ./config.json', () => {
      const b = bundle(['sleep', '30']);
      const r = rt(['create', b.id, '--bundle', b.dir]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const st = JSON.parse(rt(['state', b.id]).stdout) as { status: string; bundle: string };
      expect(st.status).toBe('created');
      expect(st.bundle).toBe(fs.realpathSync(b.dir));
      expect(rt(['start', b.id]).code).toBe(0);
      expect(rt(['delete', b.id, '--force']).code).toBe(0);
      expect(status(b.id)).toBeUndefined();
    });

    it('run ID --bundle DIR, and -b DIR', () => {
      const b = bundle(['true']);
      const r = rt(['run', b.id, '--bundle', b.dir]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const c = bundle(['sh', '-c', 'exit 3']);
      expect(rt(['run', c.id, '-b', c.dir]).code).toBe(3);
      // Every flag of runc 1.1's run is known (--no-subreaper was refused as undefined).
      const d = bundle(['true']);
      expect(rt(['run', d.id, '--bundle', d.dir, '--no-subreaper', '--keep=false', '--no-new-keyring']).code).toBe(0);
    });

    it('exec keeps what follows the id for the command (sh -c), its own flags before the id', () => {
      const b = bundle(['sleep', '30']);
      expect(rt(['run', '--detach', b.id, '--bundle', b.dir]).code).toBe(0);
      const r = rt(['exec', '--env', 'A=1', b.id, 'sh', '-c', 'echo "A=$A"; echo "$0"', 'zero']);
      expect(r.stdout).toBe('A=1\nzero\n');
      expect(r.code).toBe(0);
      expect(rt(['delete', '-f', b.id]).code).toBe(0);
    });

    it('an unexpected extra argument is an error, never ignored', () => {
      const b = bundle(['true']);
      const r = rt(['create', b.id, '--bundle', b.dir, 'extra']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/unexpected \\?"extra\\?"/); // quoted in logfmt
      expect(status(b.id)).toBeUndefined();
      expect(rt(['create', b.id, '--bundle', b.dir]).code).toBe(0);
      for (const args of [['state', b.id, 'extra'], ['start', b.id, 'extra'], ['delete', b.id, 'extra'], ['kill', b.id, 'KILL', 'extra'], ['list', 'extra']]) {
        const e = rt(args);
        expect(e.code, args.join(' ')).toBe(1);
        expect(e.stderr, args.join(' ')).toMatch(/unexpected \\?"extra\\?"/);
      }
      const bad = rt(['delete', b.id, '--nope']);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain('not defined: -nope');
      expect(status(b.id)).toBe('created');
      expect(rt(['delete', '--force', b.id]).code).toBe(0);
    });
  });

  describe('hooks at their moments', () => {
    const hook = (log: string, name: string, extra: Record<string, unknown> = {}) => ({ path: '/bin/sh', args: ['sh', '-c', `echo ${name} >> ${log}`], ...extra });
    const lines = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter(Boolean) : []);

    it('prestart and createRuntime (container mounts made), createContainer during create; startContainer (process env) and poststart at start; poststop at delete', () => {
      const log = path.join(work, `hooks-${++n}.log`);
      const b = bundle(['sleep', '30'], (c) => {
        c.process.env.push('FOO=bar');
        c.hooks = {
          prestart: [hook(log, 'prestart')],
          // The second sees the container's mounts made (its /proc), before pivot_root, as with runc.
          createRuntime: [hook(log, 'createRuntime'), { path: '/bin/sh', args: ['sh', '-c', `pid=$(sed -n 's/.*"pid":\\([0-9]*\\).*/\\1/p'); if grep -q '/rootfs/proc ' /proc/$pid/mountinfo; then echo mounts-made; else echo mounts-missing; fi >> ${log}`] }],
          createContainer: [hook(log, 'createContainer')],
          // Run in the container: their own file there; the first has no env of its own.
          startContainer: [
            { path: '/bin/sh', args: ['sh', '-c', 'echo "startContainer FOO=$FOO" >> /start-hooks.log'] },
            { path: '/bin/sh', args: ['sh', '-c', 'echo "startContainer FOO=$FOO" >> /start-hooks.log'], env: ['FOO=own'] },
          ],
          poststart: [hook(log, 'poststart')],
          poststop: [hook(log, 'poststop')],
        };
      });
      const inside = path.join(b.dir, 'rootfs', 'start-hooks.log');
      expect(rt(['create', '--bundle', b.dir, b.id]).code).toBe(0);
      expect(lines(log)).toEqual(['prestart', 'createRuntime', 'mounts-made', 'createContainer']);
      expect(fs.existsSync(inside)).toBe(false);
      const s = rt(['start', b.id]);
      expect(s.stderr).toBe('');
      expect(s.code).toBe(0);
      expect(lines(log)).toEqual(['prestart', 'createRuntime', 'mounts-made', 'createContainer', 'poststart']);
      expect(lines(inside)).toEqual(['startContainer FOO=bar', 'startContainer FOO=own']);
      expect(rt(['delete', '--force', b.id]).code).toBe(0);
      expect(lines(log)).toEqual(['prestart', 'createRuntime', 'mounts-made', 'createContainer', 'poststart', 'poststop']);
    });

    it('a failing prestart, createRuntime or createContainer hook fails create and leaves no container', () => {
      for (const which of ['prestart', 'createRuntime', 'createContainer']) {
        const b = bundle(['true'], (c) => {
          c.hooks = { [which]: [{ path: '/bin/false' }] };
        });
        const r = rt(['create', '--bundle', b.dir, b.id]);
        expect(r.code, which).toBe(1);
        expect(r.stderr, which).toContain('/bin/false');
        expect(status(b.id), which).toBeUndefined();
        expect(fs.existsSync(path.join(stateRoot, b.id)), which).toBe(false);
      }
    });
  });

  it('the seccomp listener gets the notification fd during create, before start (no_new_privileges too)', () => {
    const sock = path.join(work, `sc-${++n}.sock`);
    const got = path.join(work, `sc-${n}.json`);
    // Receives one message with SCM_RIGHTS and writes what arrived.
    const listener = spawn('python3', ['-c', `
import array, json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(1)
c, _ = s.accept()
fds = array.array('i')
msg, anc, _, _ = c.recvmsg(1 << 16, socket.CMSG_SPACE(16 * fds.itemsize))
for level, typ, data in anc:
    if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
        fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
m = json.loads(msg)
kind = os.readlink('/proc/self/fd/%d' % fds[0]) if fds else ''
with open(sys.argv[2] + '.tmp', 'w') as f:
    json.dump({'fds': len(fds), 'kind': kind, 'names': m.get('fds'), 'id': m['state']['id']}, f)
os.rename(sys.argv[2] + '.tmp', sys.argv[2])
`, sock, got], { stdio: 'inherit' });
    try {
      waitFor(() => fs.existsSync(sock));
      const b = bundle(['true'], (c) => {
        c.process.noNewPrivileges = true;
        c.linux.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64'], listenerPath: sock, syscalls: [{ names: ['mknodat', 'mknod'], action: 'SCMP_ACT_NOTIFY' }] };
      });
      const r = rt(['create', '--bundle', b.dir, b.id]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      // Only created: nobody has called start.
      waitFor(() => fs.existsSync(got));
      expect(status(b.id)).toBe('created');
      const m = JSON.parse(fs.readFileSync(got, 'utf8')) as { fds: number; kind: string; names: string[]; id: string };
      expect(m).toEqual({ fds: 1, kind: 'anon_inode:seccomp notify', names: ['seccompFd'], id: b.id });
      expect(rt(['start', b.id]).code).toBe(0);
      expect(rt(['delete', '--force', b.id]).code).toBe(0);
    } finally {
      listener.kill('SIGKILL');
    }
  });

  describe('the spec: unknown capabilities and versions', () => {
    const capLines = (out: string) => out.split('\n').filter((l) => /^Cap(Bnd|Eff|Prm|Inh|Amb):/.test(l));

    it('an unknown capability is ignored with runc\'s warning and the rest applied', () => {
      const show = ['sh', '-c', 'cat /proc/self/status'];
      const plain = bundle(show);
      const want = rt(['run', '--bundle', plain.dir, plain.id]);
      expect(want.code).toBe(0);
      const b = bundle(show, (c) => {
        for (const set of ['bounding', 'effective', 'permitted', 'inheritable', 'ambient']) c.process.capabilities[set] = [...(c.process.capabilities[set] ?? []), 'CAP_NEW_THING'];
      });
      const r = rt(['run', '--bundle', b.dir, b.id]);
      expect(r.code).toBe(0);
      expect(r.stderr).toContain('ignoring unknown or unavailable capabilities: [CAP_NEW_THING]');
      expect(capLines(r.stdout)).toEqual(capLines(want.stdout));
      expect(capLines(r.stdout).length).toBe(5);
    });

    it('an ociVersion this runtime does not implement is refused, naming it', () => {
      for (const v of ['2.0.0', 'garbage']) {
        const b = bundle(['true'], (c) => {
          c.ociVersion = v;
        });
        const r = rt(['run', '--bundle', b.dir, b.id]);
        expect(r.code, v).toBe(1);
        expect(r.stderr, v).toContain(`unsupported spec version \\"${v}\\"`);
        expect(status(b.id), v).toBeUndefined();
      }
    });
  });

  describe('errors in runc\'s log format', () => {
    const missing = `missing-${process.pid}`;

    it('on stderr: time="..." level=error msg="..." (text), or a JSON line (--log-format json)', () => {
      const r = rt(['kill', missing, 'KILL']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^time="[^"]+" level=error msg="container ${missing} does not exist"\\n$`));
      const j = rt(['kill', missing, 'KILL'], ['--log-format', 'json']);
      expect(j.code).toBe(1);
      const line = JSON.parse(j.stderr) as Record<string, string>;
      expect(line).toMatchObject({ level: 'error', msg: `container ${missing} does not exist` });
      expect(typeof line.time).toBe('string');
    });

    it('with --log FILE --log-format json every error is a JSON line there, as containerd\'s shim reads it', () => {
      const log = path.join(work, `log-${++n}.json`);
      const failures = [['kill', missing, 'KILL'], ['create', '--bundle', path.join(work, 'nowhere'), `x${n}`], ['state', missing, 'extra'], ['delete', '--nope', missing]];
      for (const args of failures) {
        const r = rt(args, ['--log', log, '--log-format', 'json']);
        expect(r.code, args.join(' ')).toBe(1);
        // stderr keeps the bare message, as runc prints it when it logs to a file.
        expect(r.stderr.trim().length, args.join(' ')).toBeGreaterThan(0);
      }
      const lines = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, string>);
      expect(lines.length).toBe(failures.length);
      for (const l of lines) {
        expect(l.level).toBe('error');
        expect(l.msg).toMatch(/\S/);
        expect(l.time).toMatch(/^\d{4}-\d\d-\d\dT/);
      }
      expect(lines[0]!.msg).toContain('does not exist');
      // Text format to a file: logrus's text lines.
      const text = path.join(work, `log-${++n}.txt`);
      expect(rt(['kill', missing, 'KILL'], ['--log', text]).code).toBe(1);
      expect(fs.readFileSync(text, 'utf8')).toMatch(/^time="[^"]+" level=error msg="container \S+ does not exist"\n$/);
    });
  });

  it("without a usable XDG_RUNTIME_DIR, uid 0 of a user's namespace (rootless podman's runtime) keeps its state in the user's /tmp/burrow-run-UID, not root's", () => {
    // As the test user in both roles: root's /tmp/burrow-run-0 is what the fallback used to pick.
    const user = IS_ROOT ? (testUser() ?? (ensureTestUser() as TestUser)) : undefined;
    const uid = user?.uid ?? process.getuid!();
    fs.chmodSync(work, 0o755);
    const { dir, id } = bundle(['true'], (c) => {
      // Inside `unshare -r` the runtime is uid 0: the container maps that.
      c.linux.uidMappings = [{ containerID: 0, hostID: 0, size: 1 }];
      c.linux.gidMappings = [{ containerID: 0, hostID: 0, size: 1 }];
    });
    spawnSync('chmod', ['-R', 'a+rX', dir]);
    const fallback = `/tmp/burrow-run-${uid}`;
    const before = fs.existsSync('/tmp/burrow-run-0') ? fs.statSync('/tmp/burrow-run-0').uid : undefined;
    const r = sh('unshare', ['-r', RUNTIME as string, 'run', '--bundle', dir, id], { as: user, env: { XDG_RUNTIME_DIR: undefined } });
    expect(r.code, r.stderr).toBe(0);
    // The state was made (and removed by `run`) under the user's own fallback directory.
    expect(fs.statSync(path.join(fallback, 'runtime')).uid).toBe(uid);
    // root's directory is untouched, and the user made none named after uid 0.
    if (before === undefined) expect(fs.existsSync('/tmp/burrow-run-0')).toBe(false);
    else expect(fs.statSync('/tmp/burrow-run-0').uid).toBe(before);
  });
});
