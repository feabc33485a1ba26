/**
 * The shared user namespace of a user's rootless containers (burrow-core runtime/userns_share.rs,
 * docs/architecture.md "The shared user namespace"): the first start with given maps runs the
 * setuid newuidmap and newgidmap and leaves a keeper of its namespace; later starts with the same
 * maps join that namespace and run no helper. A record that no longer matches (another
 * fingerprint of /etc/subuid and /etc/subgid, a dead keeper) is a miss; a removed or replaced
 * record ends its keeper; the keeper holds nothing of its caller's. As the unprivileged test
 * user; as root, whose maps need no helper, nothing is shared and no keeper is left.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, IS_ROOT } from './helpers';
import { alive, setup, waitFor, type Env } from './lifecycle.helpers';
import { runtimeEnv } from './runtime.helpers';
import { ownSubuid } from '../harness/bundle.mjs';

let env: Env;
const IMG = 'userns-share';
const T = { timeout: 120_000 };
const SHOW = 'readlink /proc/self/ns/user; cat /proc/self/uid_map /proc/self/gid_map';

beforeAll(() => {
  env = setup('userns-share');
  const imp = env.b(['import', path.join(env.work, 'busybox.tar.gz'), IMG, '-c', 'CMD ["sh"]']);
  if (imp.code !== 0) throw new Error(`import: ${imp.stderr}`);
});
afterAll(() => {
  // The keepers end when their records go (with the run root, in dispose).
  const keepers = records().map((r) => r.pid);
  env?.dispose();
  for (const pid of keepers) waitFor(() => !alive(pid), 10_000, `keeper ${pid} to end with its record`);
});

const recordDir = () => path.join(env.runroot, 'runtime', '@userns');

interface Rec {
  key: string;
  pid: number;
  ino: string;
  subid: string;
}

/** The keepers' records (`PID DEV INO SUBID`), leaving out a keeper's temporary file. */
function records(): Rec[] {
  let names: string[] = [];
  try {
    names = fs.readdirSync(recordDir()).filter((n) => !n.startsWith('.'));
  } catch {
    return [];
  }
  return names.map((key) => {
    const [pid, , ino, subid] = fs.readFileSync(path.join(recordDir(), key), 'utf8').trim().split(' ');
    return { key, pid: Number(pid), ino: ino ?? '', subid: subid ?? '' };
  });
}

/**
 * `burrow run --rm ARGS` with newuidmap and newgidmap wrapped by scripts first in PATH that log
 * each call and exec the real setuid program: the run's output and the helpers it ran.
 */
function run(args: string[], extraEnv: Record<string, string> = {}): { stdout: string; helpers: string[] } {
  const bin = path.join(env.work, 'helper-bin');
  const log = path.join(env.work, `helpers-${Math.random().toString(36).slice(2)}.log`);
  fs.mkdirSync(bin, { recursive: true });
  for (const h of ['newuidmap', 'newgidmap']) {
    fs.writeFileSync(path.join(bin, h), `#!/bin/sh\necho ${h} >> "$HELPER_LOG"\nexec /usr/bin/${h} "$@"\n`, { mode: 0o755 });
  }
  const r = spawnSync(process.execPath, [BIN, '--root', env.store, '--runroot', env.runroot, 'run', '--rm', ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, HELPER_LOG: log, ...extraEnv },
  });
  expect(r.status, `run ${args.join(' ')}: ${r.stderr}`).toBe(0);
  let helpers: string[] = [];
  try {
    helpers = fs.readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).sort();
  } catch {
    // none ran
  }
  return { stdout: r.stdout, helpers };
}

const nsOf = (out: string): string => out.split('\n')[0] ?? '';

describe.skipIf(!IS_ROOT)('as root', () => {
  it('maps are written directly: nothing is shared, no keeper is left', T, () => {
    const a = run([IMG, 'sh', '-c', SHOW]);
    expect(a.helpers).toEqual([]);
    expect(records()).toEqual([]);
    expect(fs.existsSync(recordDir())).toBe(false);
  });
});

describe.skipIf(IS_ROOT)('rootless: one namespace per set of maps, kept between starts', () => {
  let first = '';
  let keeper = 0;

  it('the first start maps its namespace with the helpers and leaves a keeper of it', T, () => {
    expect(records()).toEqual([]);
    const a = run([IMG, 'sh', '-c', SHOW]);
    expect(a.helpers).toEqual(['newgidmap', 'newuidmap']);
    first = nsOf(a.stdout);
    expect(first).toMatch(/^user:\[\d+\]$/);
    waitFor(() => records().length === 1, 10_000, 'the keeper to write its record');
    const rec = records()[0]!;
    keeper = rec.pid;
    expect(alive(keeper)).toBe(true);
    expect(fs.readlinkSync(`/proc/${keeper}/ns/user`)).toBe(first);
    expect(`user:[${rec.ino}]`).toBe(first);
    expect(fs.readFileSync(`/proc/${keeper}/cmdline`, 'utf8').split('\0').slice(0, 3)).toEqual(['burrow-runtime', 'userns-keep', rec.key]);
  });

  it('the keeper holds nothing of its caller: /dev/null for stdio, its inotify, cwd /', T, () => {
    const fds = fs.readdirSync(`/proc/${keeper}/fd`).map((fd) => [Number(fd), fs.readlinkSync(`/proc/${keeper}/fd/${fd}`)] as const);
    for (const [fd, target] of fds) {
      if (fd <= 2) expect(target, `fd ${fd}`).toBe('/dev/null');
      else expect(target, `fd ${fd}`).toBe('anon_inode:inotify');
    }
    expect(fds.map(([fd]) => fd).sort()).toEqual([0, 1, 2, 3]);
    expect(fs.readlinkSync(`/proc/${keeper}/cwd`)).toBe('/');
    // Not in the caller's session: a terminal's signals do not reach it.
    const stat = fs.readFileSync(`/proc/${keeper}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    expect(Number(fields[3])).toBe(keeper);
  });

  it('a later start with the same maps joins it and runs no helper, with the same maps inside', T, () => {
    const a = run([IMG, 'sh', '-c', SHOW]);
    expect(a.helpers).toEqual([]);
    expect(nsOf(a.stdout)).toBe(first);
    const uid = process.getuid?.();
    expect(a.stdout).toMatch(new RegExp(`^\\s+0\\s+${uid}\\s+1$`, 'm'));
    expect(a.stdout).toMatch(/^\s+1\s+\d+\s+\d+$/m);
    // Root inside, as in a namespace of its own.
    const id = run([IMG, 'id', '-u']);
    expect(id.stdout.trim()).toBe('0');
    expect(records().map((r) => r.pid)).toEqual([keeper]);
  });

  it('a detached container (started by the monitor) joins it too', T, () => {
    const b = env.b(['run', '-d', IMG, 'sleep', '100']);
    expect(b.code, b.stderr).toBe(0);
    const id = b.stdout.trim();
    try {
      const pid = Number(env.ok(['inspect', '-f', '{{.State.Pid}}', id]).trim());
      expect(fs.readlinkSync(`/proc/${pid}/ns/user`)).toBe(first);
    } finally {
      env.ok(['rm', '-f', id]);
    }
  });

  it('other maps (--userns keep-id) are another namespace, shared among themselves', T, () => {
    const a = run(['--userns', 'keep-id', IMG, 'sh', '-c', SHOW]);
    expect(a.helpers).toEqual(['newgidmap', 'newuidmap']);
    expect(nsOf(a.stdout)).not.toBe(first);
    waitFor(() => records().length === 2, 10_000, 'the second keeper');
    const b = run(['--userns', 'keep-id', IMG, 'sh', '-c', SHOW]);
    expect(b.helpers).toEqual([]);
    expect(nsOf(b.stdout)).toBe(nsOf(a.stdout));
    expect(b.stdout).toBe(a.stdout);
  });

  it('BURROW_USERNS_SHARE=0 makes a namespace of its own, with the helpers, and leaves no keeper', T, () => {
    const before = records().length;
    const a = run([IMG, 'sh', '-c', SHOW], { BURROW_USERNS_SHARE: '0' });
    expect(a.helpers).toEqual(['newgidmap', 'newuidmap']);
    expect(nsOf(a.stdout)).not.toBe(first);
    expect(records().length).toBe(before);
  });

  it('a record made under other /etc/subuid or /etc/subgid is not used; its keeper is replaced and ends', T, () => {
    const rec = records().find((r) => r.pid === keeper)!;
    const file = path.join(recordDir(), rec.key);
    const text = fs.readFileSync(file, 'utf8');
    // As if the files had changed since the keeper's namespace was mapped.
    fs.writeFileSync(file, text.replace(rec.subid, `${rec.subid}x`));
    const a = run([IMG, 'sh', '-c', SHOW]);
    expect(a.helpers).toEqual(['newgidmap', 'newuidmap']);
    expect(nsOf(a.stdout)).not.toBe(first);
    waitFor(() => !alive(keeper), 10_000, 'the replaced keeper to end');
    waitFor(() => records().some((r) => r.key === rec.key && r.pid !== keeper), 10_000, 'the new keeper');
    const next = records().find((r) => r.key === rec.key)!;
    expect(`user:[${next.ino}]`).toBe(nsOf(a.stdout));
    keeper = next.pid;
    first = nsOf(a.stdout);
  });

  it('a record naming a process of another namespace is a miss', T, () => {
    const rec = records().find((r) => r.pid === keeper)!;
    const file = path.join(recordDir(), rec.key);
    const text = fs.readFileSync(file, 'utf8');
    // Our own pid: alive, ours, but its namespace is not the recorded one.
    fs.writeFileSync(file, text.replace(/^\d+ /, `${process.pid} `));
    const a = run([IMG, 'sh', '-c', SHOW]);
    expect(a.helpers).toEqual(['newgidmap', 'newuidmap']);
    expect(nsOf(a.stdout)).not.toBe(first);
    // The keeper whose record was overwritten ends: the record no longer names it.
    waitFor(() => !alive(keeper), 10_000, 'the keeper whose record names another pid to end');
    waitFor(() => records().some((r) => r.key === rec.key && r.pid !== process.pid), 10_000, 'the new keeper');
    keeper = records().find((r) => r.key === rec.key)!.pid;
  });

  it('removing the record ends its keeper at once; the next start makes a new one', T, () => {
    const rec = records().find((r) => r.pid === keeper)!;
    fs.rmSync(path.join(recordDir(), rec.key));
    waitFor(() => !alive(keeper), 10_000, 'the keeper to end with its record');
    const a = run([IMG, 'sh', '-c', SHOW]);
    expect(a.helpers).toEqual(['newgidmap', 'newuidmap']);
    waitFor(() => records().some((r) => r.key === rec.key), 10_000, 'the new keeper');
  });
});

describe.skipIf(IS_ROOT)('rootless: `system migrate` ends the keepers, as podman stops its pause process', () => {
  it('every keeper of this run root ends, and the next start maps afresh', T, () => {
    run([IMG, 'true']);
    waitFor(() => records().length > 0, 10_000, 'a keeper');
    const keepers = records().map((r) => r.pid);
    const m = env.b(['system', 'migrate']);
    expect(m.code, m.stderr).toBe(0);
    for (const pid of keepers) waitFor(() => !alive(pid), 10_000, `keeper ${pid} to end`);
    expect(records()).toEqual([]);
    expect(run([IMG, 'true']).helpers).toEqual(['newgidmap', 'newuidmap']);
  });
});

describe.skipIf(IS_ROOT)('rootless: burrow-runtime shares only when asked (--share-userns, which burrow passes)', () => {
  it('without the flag (another engine), each container maps its own namespace and no keeper is left', T, () => {
    const rt = runtimeEnv('userns-share-rt');
    try {
      const [sub, subg] = [ownSubuid('/etc/subuid'), ownSubuid('/etc/subgid')];
      expect(sub).not.toBeNull();
      const maps = (own: number, s: { start: number } | null) => [
        { containerID: 0, hostID: own, size: 1 },
        { containerID: 1, hostID: s!.start, size: 1000 },
      ];
      const once = (globals: string[]) => {
        const b = rt.bundle(['readlink', '/proc/self/ns/user'], (c) => {
          c.linux.uidMappings = maps(process.getuid!(), sub);
          c.linux.gidMappings = maps(process.getgid!(), subg);
        });
        const r = rt.rt(['run', '--bundle', b.dir, b.id], { globals });
        expect(r.code, r.stderr).toBe(0);
        return r.stdout.trim();
      };
      const keepers = path.join(rt.stateRoot, '@userns');
      once([]);
      once([]);
      expect(fs.existsSync(keepers)).toBe(false);
      const c = once(['--share-userns']);
      waitFor(() => fs.existsSync(keepers) && fs.readdirSync(keepers).some((n) => !n.startsWith('.')), 10_000, 'a keeper');
      expect(once(['--share-userns'])).toBe(c);
      // The shared one lives on (its keeper), so a namespace of its own cannot have its number;
      // two namespaces that lived one after the other may.
      expect(once([])).not.toBe(c);
    } finally {
      rt.dispose();
    }
  });
});
