/**
 * `run`/`create` flags that decide who the container runs as and what it gets from the host:
 * --userns (keep-id, single, host), --group-add (keep-groups, ids), --device, --init; and the
 * config file (store paths, log driver, userns, registries) under BURROW_* variables and flags.
 * Runs as root and as the unprivileged test user; what a user can observe is checked: `id`,
 * file owners through a bind mount, /proc inside and outside, exit statuses.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BIN, burrow, IS_ROOT, sh } from './helpers';
import { IMAGE, pidNs, setup, waitFor, type Env } from './lifecycle.helpers';
import { shareDir } from '../harness/test-user.mjs';
import { startRegistry } from '../harness/registry.mjs';
import { buildSmallImage, pushImage } from '../harness/images.mjs';

let env: Env;
beforeAll(() => {
  env = setup('runflags');
});
afterEach(() => env.cleanup());
afterAll(() => env?.dispose());

const b = (args: string[]) => env.b(args);
const uid = process.getuid!();
const gid = process.getgid!();
const lines = (s: string) => s.trimEnd().split('\n');
/** The Groups: line of /proc/PID/status as numbers. */
const groupsOf = (status: string) =>
  (/^Groups:\s*(.*)$/m.exec(status)?.[1] ?? '')
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
const inspect = (ref: string) => JSON.parse(b(['inspect', ref]).stdout)[0] as { State: { Pid: number }; HostConfig: { LogConfig: { Type: string } } };

describe(`--userns as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('keep-id: the process runs as the caller, whose bind-mounted files stay theirs both ways', () => {
    const dir = fs.mkdtempSync(path.join(env.work, 'home-'));
    fs.writeFileSync(path.join(dir, 'mine'), 'x');
    const script = 'id -u; id -g; stat -c %u:%g /h/mine; touch /h/made-inside; grep -c . /proc/self/uid_map';
    const r = b(['run', '--rm', '--userns', 'keep-id', '-v', `${dir}:/h`, IMAGE, 'sh', '-c', script]);
    expect(r.code, r.stderr).toBe(0);
    const [u, g, owner] = lines(r.stdout);
    expect([u, g, owner]).toEqual([String(uid), String(gid), `${uid}:${gid}`]);
    const made = fs.statSync(path.join(dir, 'made-inside'));
    expect([made.uid, made.gid]).toEqual([uid, gid]);
    const maps = b(['run', '--rm', '--userns', 'keep-id', IMAGE, 'cat', '/proc/self/uid_map', '/proc/self/gid_map']).stdout;
    if (IS_ROOT) {
      // Root's mapping is the identity already.
      expect(maps.split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/))).toEqual([['0', '0', '4294967295'], ['0', '0', '4294967295']]);
    } else {
      // The caller's own id maps to itself (and container root elsewhere, in the range).
      expect(maps).toMatch(new RegExp(`^\\s*${uid}\\s+${uid}\\s+1$`, 'm'));
      expect(maps).toMatch(new RegExp(`^\\s*${gid}\\s+${gid}\\s+1$`, 'm'));
      expect(maps).not.toMatch(new RegExp(`^\\s*0\\s+${uid}\\s`, 'm'));
      // Without keep-id the caller is container root, and so are their files.
      const d = b(['run', '--rm', '-v', `${dir}:/h`, IMAGE, 'sh', '-c', 'id -u; stat -c %u:%g /h/mine']);
      expect(lines(d.stdout)).toEqual(['0', '0:0']);
    }
    // -u still wins over keep-id's default user.
    expect(b(['run', '--rm', '--userns', 'keep-id', '-u', '0', IMAGE, 'id', '-u']).stdout).toBe('0\n');
  });

  it('single: container root is the caller and nobody else is mapped', () => {
    const r = b(['run', '--rm', '--userns', 'single', IMAGE, 'cat', '/proc/self/uid_map']);
    expect(r.code, r.stderr).toBe(0);
    expect(lines(r.stdout).map((l) => l.trim().split(/\s+/))).toEqual([['0', String(uid), '1']]);
    // A bind-mounted directory of the caller: their files are root's inside, and what the
    // container writes there is the caller's on the host.
    const dir = fs.mkdtempSync(path.join(env.work, 'single-'));
    fs.writeFileSync(path.join(dir, 'mine'), 'x');
    const v = b(['run', '--rm', '--userns', 'single', '-v', `${dir}:/h`, IMAGE, 'sh', '-c', 'stat -c %u:%g /h/mine; echo y > /h/made']);
    expect(v.code, v.stderr).toBe(0);
    expect(lines(v.stdout)).toEqual(['0:0']);
    expect(fs.statSync(path.join(dir, 'made')).uid).toBe(uid);
  });

  it(IS_ROOT ? 'host: no user namespace, still its own pid and mount namespaces' : 'host: refused without root, with the reason and the alternative, nothing created', () => {
    const r = b(['run', '--rm', '--userns', 'host', IMAGE, 'sh', '-c', 'readlink /proc/self/ns/user; readlink /proc/self/ns/pid; cat /proc/self/uid_map']);
    if (IS_ROOT) {
      expect(r.code, r.stderr).toBe(0);
      const [userNs, pidNs, map] = lines(r.stdout);
      expect(userNs).toBe(fs.readlinkSync('/proc/self/ns/user'));
      expect(pidNs).not.toBe(fs.readlinkSync('/proc/self/ns/pid'));
      expect(map!.trim().split(/\s+/)).toEqual(['0', '0', '4294967295']);
    } else {
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(/--userns host .* only root can do/);
      expect(r.stderr).toMatch(/--userns keep-id/);
      expect(b(['ps', '-aq']).stdout).toBe('');
    }
  });

  it('an unknown mode is a usage error (125) from the flag and from BURROW_USERNS', () => {
    const r = b(['run', '--rm', '--userns', 'auto', IMAGE, 'true']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/invalid --userns auto: want subuid, keep-id, single, host/);
    const e = burrow(['--root', env.store, '--runroot', env.runroot, 'run', '--rm', IMAGE, 'true'], { env: { BURROW_USERNS: 'bogus' } });
    expect(e.code).toBe(125);
    expect(e.stderr).toMatch(/BURROW_USERNS=bogus is not one of/);
    expect(b(['ps', '-aq']).stdout).toBe('');
  });
});

describe('--group-add', () => {
  it("keep-groups: the caller's supplementary groups stay, and with them access to group-only files", () => {
    // A directory readable by one group only, and a caller in that group. As root both are made
    // here (setpriv gives burrow the groups); the test user got them from the harness.
    let dir: string;
    let share: number;
    let prefix: string[] = [];
    if (IS_ROOT) {
      share = 4343;
      dir = fs.mkdtempSync(path.join(env.work, 'share-'));
      fs.writeFileSync(path.join(dir, 'secret'), 'shared with the group\n');
      for (const p of [dir, path.join(dir, 'secret')]) fs.chownSync(p, 0, share);
      fs.chmodSync(dir, 0o750);
      fs.chmodSync(path.join(dir, 'secret'), 0o640);
      prefix = ['setpriv', `--groups=4242,${share}`, '--'];
    } else {
      dir = shareDir(uid);
      expect(fs.existsSync(dir), `${dir} is made by test/harness/test-user.mjs (run it as root)`).toBe(true);
      share = fs.statSync(dir).gid;
      expect(process.getgroups!(), 'the test user is in the share group (test/harness/test-user.mjs)').toContain(share);
    }
    const callerGroups = IS_ROOT ? [4242, share] : process.getgroups!();
    const run = (extra: string[]) => {
      const args = [process.execPath, BIN, '--root', env.store, '--runroot', env.runroot, 'run', '--rm', ...extra];
      // A non-root container user without capabilities: only group membership can open the file.
      args.push('-u', '4242:4242', '--cap-drop', 'ALL', '-v', `${dir}:/share:ro`, IMAGE, 'sh', '-c', 'grep ^Groups: /proc/self/status; cat /share/secret');
      return prefix.length ? sh(prefix[0]!, [...prefix.slice(1), ...args]) : sh(args[0]!, args.slice(1));
    };
    const kept = run(['--group-add', 'keep-groups']);
    expect(kept.code, kept.stderr).toBe(0);
    expect(kept.stdout).toMatch(/shared with the group/);
    // Inside, a group shows by its id in the container; one the user namespace cannot map
    // (rootless: any but the caller's own) shows as the overflow gid, and still grants access.
    const inside = groupsOf(kept.stdout);
    expect(inside.length).toBe(new Set(callerGroups).size);
    if (IS_ROOT) expect(inside.sort((x, y) => x - y)).toEqual([4242, share]);
    else expect(inside).toContain(65534);
    const dropped = run([]);
    expect(dropped.code).not.toBe(0);
    expect(dropped.stderr).toMatch(/Permission denied/);
    expect(groupsOf(dropped.stdout)).toEqual([]);
  });

  it('ids and image group names become additional groups; keep-groups goes alone', () => {
    const r = b(['run', '--rm', '--group-add', '4242', '--group-add', 'tty', IMAGE, 'grep', '^Groups:', '/proc/self/status']);
    expect(r.code, r.stderr).toBe(0);
    expect(groupsOf(r.stdout).sort((x, y) => x - y)).toEqual([5, 4242]);
    const both = b(['run', '--rm', '--group-add', 'keep-groups', '--group-add', '5', IMAGE, 'true']);
    expect(both.code).toBe(125);
    expect(both.stderr).toMatch(/keep-groups cannot be combined/);
    const unknown = b(['run', '--rm', '--group-add', 'nosuchgroup', IMAGE, 'true']);
    expect(unknown.code).toBe(125);
    expect(unknown.stderr).toMatch(/unable to find group nosuchgroup/);
    expect(b(['ps', '-aq']).stdout).toBe('');
  });
});

describe('--device', () => {
  it('a host device appears at the path asked for and works', () => {
    const r = b(['run', '--rm', '--device', '/dev/null:/dev/mynull', '--device', '/dev/zero', IMAGE, 'sh', '-c', 'echo hi > /dev/mynull && stat -c "%t,%T %F" /dev/mynull && head -c 3 /dev/zero | od -An -tx1']);
    expect(r.code, r.stderr).toBe(0);
    expect(lines(r.stdout).map((l) => l.trim())).toEqual(['1,3 character special file', '00 00 00']);
  });

  it('a device the user cannot open, a path that is no device, or none at all: 125 and why, nothing created', () => {
    const bad: [string, RegExp][] = [
      ['/etc/passwd', /--device \/etc\/passwd: not a device/],
      ['/dev/no-such-device', /--device \/dev\/no-such-device: no such device/],
      ['/dev/null:/dev/x:rwz', /permissions are a combination of r, w and m/],
      ['dev/null', /paths must be absolute/],
    ];
    if (!IS_ROOT) {
      // A character device this user may not open (root may open them all).
      const locked = ['/dev/loop-control', '/dev/fuse', '/dev/console', '/dev/tty0', '/dev/kvm', '/dev/mem', '/dev/cpu_dma_latency', '/dev/hwrng', '/dev/btrfs-control'].find((d) => {
        try {
          if (!fs.statSync(d).isCharacterDevice()) return false;
          fs.accessSync(d, fs.constants.R_OK | fs.constants.W_OK);
          return false;
        } catch (err) {
          return (err as NodeJS.ErrnoException).code === 'EACCES';
        }
      });
      expect(locked, 'a host device the test user cannot open').toBeDefined();
      bad.push([locked!, new RegExp(`--device ${locked}: you cannot open it for reading and writing .*a container can only use the devices its user may open`)]);
    }
    for (const [dev, msg] of bad) {
      const r = b(['run', '--rm', '--device', dev, IMAGE, 'true']);
      expect(r.code, dev).toBe(125);
      expect(r.stderr, dev).toMatch(msg);
    }
    expect(b(['ps', '-aq']).stdout).toBe('');
  });
});

describe('--init', () => {
  it('the init is pid 1, the command its child; the exit status is the command\'s', () => {
    const r = b(['run', '--rm', '--init', IMAGE, 'sh', '-c', 'echo $$; tr "\\0" " " < /proc/1/cmdline; echo; exit 7']);
    expect(r.code, r.stderr).toBe(7);
    const [pid, cmdline] = lines(r.stdout);
    expect(Number(pid)).toBeGreaterThan(1);
    expect(cmdline!.trim()).toBe('/run/burrow-init -- sh -c echo $$; tr "\\0" " " < /proc/1/cmdline; echo; exit 7');
    // A command killed by a signal: the init reports it as Docker does, 128+N.
    expect(b(['run', '--rm', '--init', IMAGE, 'sh', '-c', 'kill -TERM $$']).code).toBe(143);
    // ps shows the command, not the init.
    const id = b(['create', '--init', IMAGE, 'sleep', '1']).stdout.trim();
    expect(b(['ps', '-a', '--no-trunc', '--format', '{{.Command}}']).stdout).toBe('"sleep 1"\n');
    b(['rm', id]);
  });

  it('an orphan that exits is reaped by the init; without --init it stays a zombie', () => {
    // The subshell starts `sleep 0.2` and exits at once: sleep is re-parented to pid 1, and
    // only pid 1 can collect it when it exits. The command then becomes `sleep 30`, which
    // never reaps: as pid 1 (no --init) it leaves the orphan a zombie; under the init it does not.
    const script = '(sleep 0.2 &); exec sleep 30';
    const members = (id: string) => {
      const ns = pidNs(inspect(id).State.Pid);
      return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d) && pidNs(Number(d)) === ns);
    };
    const states = (id: string) =>
      members(id)
        .map((d) => {
          try {
            const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
            return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
          } catch {
            return '';
          }
        })
        .filter(Boolean);
    const withInit = b(['run', '-d', '--init', IMAGE, 'sh', '-c', script]).stdout.trim();
    const without = b(['run', '-d', IMAGE, 'sh', '-c', script]).stdout.trim();
    expect(withInit).toMatch(/^[0-9a-f]{64}$/);
    expect(without).toMatch(/^[0-9a-f]{64}$/);
    waitFor(() => states(without).includes('Z'), 10_000, 'the orphan to exit');
    // Once the command is `sleep 30` the orphan exists (or existed); then only init and command remain.
    waitFor(() => members(withInit).some((p) => cmdlineOf(Number(p)) === 'sleep 30 '), 10_000, 'the command to become sleep 30');
    waitFor(() => states(withInit).length === 2, 10_000, 'the init to reap the orphan');
    expect(states(withInit)).not.toContain('Z');
    // Still there: nobody in that container will ever collect it.
    expect(states(without)).toContain('Z');
  });

  it('`kill -s TERM` reaches the command through the init; the status is 128+15', () => {
    const id = b(['run', '-d', '--init', IMAGE, 'sleep', '1000']).stdout.trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const pid = inspect(id).State.Pid;
    waitFor(() => childrenOf(pid).some((c) => cmdlineOf(c).startsWith('sleep')), 10_000, 'the command under the init');
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]).toBe('/run/burrow-init');
    expect(b(['kill', '-s', 'TERM', id]).code).toBe(0);
    expect(b(['wait', id]).stdout).toBe('143\n');
  });

  it('an init that would not run in the image is refused before anything is created', () => {
    // Debian's /bin/sh (dash) is dynamically linked: no loader inside a busybox image.
    const r = b(['run', '--rm', '--init', '--init-path', '/bin/sh', IMAGE, 'true']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/\/bin\/sh is not a statically linked executable/);
    const noInit = b(['run', '--rm', '--init-path', '/usr/bin/tini-static', IMAGE, 'true']);
    expect(noInit.code).toBe(125);
    expect(noInit.stderr).toMatch(/--init-path is only used with --init/);
    expect(b(['ps', '-aq']).stdout).toBe('');
  });
});

/** Processes whose parent is `pid`, from /proc/N/stat (field 4, after the command name). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

function cmdlineOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

describe('the config file, under BURROW_* variables and flags', () => {
  let cfgHome: string;
  let otherStore: string;
  /** burrow without --root/--runroot, with a config home and none of the variables set. */
  const bc = (args: string[], vars: Record<string, string | undefined> = {}) =>
    burrow(args, { env: { XDG_CONFIG_HOME: cfgHome, BURROW_CONFIG: undefined, BURROW_ROOT: undefined, BURROW_RUNROOT: undefined, BURROW_LOG_DRIVER: undefined, BURROW_USERNS: undefined, BURROW_NETWORK: undefined, ...vars } });
  const writeConfig = (text: string, file = path.join(cfgHome, 'burrow', 'config.toml')) => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
  };
  beforeAll(() => {
    cfgHome = fs.mkdtempSync(path.join(env.work, 'xdg-config-'));
    otherStore = fs.mkdtempSync(path.join(env.work, 'other-store-'));
  });

  it('[storage] root and runroot and [containers] log_driver are used when no variable or flag says otherwise', () => {
    writeConfig(`# burrow config\n[storage]\nroot = "${env.store}"\nrunroot = '${env.runroot}'  # runtime state\n\n[containers]\nlog_driver = "json-file"\n`);
    expect(bc(['images', '--format', '{{.Repository}}']).stdout).toBe(`${IMAGE}\n`);
    const run = bc(['run', '-d', '--name', 'cfg1', IMAGE, 'sleep', '30']);
    expect(run.code, run.stderr).toBe(0);
    const id = run.stdout.trim();
    expect(fs.existsSync(path.join(env.store, 'containers', id))).toBe(true);
    expect(fs.existsSync(path.join(env.runroot, 'runtime', id, 'state.json'))).toBe(true);
    expect(inspect(id).HostConfig.LogConfig.Type).toBe('json-file');
    // The variable beats the file, the flag beats the variable.
    expect(inspect(bc(['create', '--name', 'cfg2', IMAGE, 'true'], { BURROW_LOG_DRIVER: 'none' }).stdout.trim()).HostConfig.LogConfig.Type).toBe('none');
    expect(inspect(bc(['create', '--name', 'cfg3', '--log-driver', 'k8s-file', IMAGE, 'true'], { BURROW_LOG_DRIVER: 'none' }).stdout.trim()).HostConfig.LogConfig.Type).toBe('k8s-file');
    expect(bc(['images', '-q'], { BURROW_ROOT: otherStore }).stdout).toBe('');
    expect(bc(['--root', env.store, 'images', '--format', '{{.Repository}}'], { BURROW_ROOT: otherStore }).stdout).toBe(`${IMAGE}\n`);
    expect(bc(['ps', '-a', '--format', '{{.Names}}'], { BURROW_RUNROOT: path.join(env.work, 'elsewhere') }).stdout.split('\n')).toContain('cfg1');
    // $HOME/.config is the default when XDG_CONFIG_HOME is not set.
    const home = fs.mkdtempSync(path.join(env.work, 'home-'));
    writeConfig(`[storage]\nroot = "${env.store}"\nrunroot = "${env.runroot}"\n`, path.join(home, '.config', 'burrow', 'config.toml'));
    expect(bc(['images', '--format', '{{.Repository}}'], { XDG_CONFIG_HOME: undefined, HOME: home }).stdout).toBe(`${IMAGE}\n`);
  });

  it('[containers] userns applies to run; the flag overrides it', () => {
    writeConfig(`[storage]\nroot = "${env.store}"\nrunroot = "${env.runroot}"\n[containers]\nuserns = "keep-id"\n`);
    const r = bc(['run', '--rm', IMAGE, 'id', '-u']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${uid}\n`);
    if (!IS_ROOT) expect(bc(['run', '--rm', '--userns', 'subuid', IMAGE, 'id', '-u']).stdout).toBe('0\n');
  });

  it('a malformed file stops every command with 125, naming the file and the line', () => {
    writeConfig(`[storage]\nroot = "${env.store}"\n\nrunroot = ${env.runroot}\n`);
    const file = path.join(cfgHome, 'burrow', 'config.toml');
    for (const args of [['ps'], ['run', '--rm', IMAGE, 'true'], ['images']]) {
      const r = bc(args);
      expect(r.code, args.join(' ')).toBe(125);
      expect(r.stderr).toContain(`${file}:4: invalid value`);
    }
    writeConfig('[storage]\nrot = "/x"\n');
    const typo = bc(['ps']);
    expect(typo.code).toBe(125);
    expect(typo.stderr).toContain(`${file}:2: unknown key rot in [storage] (known: root, runroot, image_format)`);
    // BURROW_CONFIG names another file; one that does not exist is an error, not an empty config.
    writeConfig(`[storage]\nroot = "${env.store}"\nrunroot = "${env.runroot}"\n`, path.join(env.work, 'alt.toml'));
    expect(bc(['images', '--format', '{{.Repository}}'], { BURROW_CONFIG: path.join(env.work, 'alt.toml') }).stdout).toBe(`${IMAGE}\n`);
    const missing = bc(['ps'], { BURROW_CONFIG: path.join(env.work, 'none.toml') });
    expect(missing.code).toBe(125);
    expect(missing.stderr).toMatch(/BURROW_CONFIG=.*none\.toml: no such file/);
  });

  it('[registries.mirrors]: a pull of a registry that does not exist is served by its mirror', async () => {
    const registry = await startRegistry({ mode: 'anonymous' });
    const imgDir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-mirror-img-'));
    try {
      const img = buildSmallImage(imgDir, { size: 4096 });
      await pushImage(registry, img, 'mirrored/small');
      const ref = 'nowhere.invalid/mirrored/small:latest';
      writeConfig(`[storage]\nroot = "${otherStore}"\nrunroot = "${path.join(env.work, 'run2')}"\n`);
      const direct = bc(['pull', '-q', ref]);
      expect(direct.code).toBe(125);
      writeConfig(`[storage]\nroot = "${otherStore}"\nrunroot = "${path.join(env.work, 'run2')}"\n[registries.mirrors]\n"nowhere.invalid" = ["http://${registry.host}"]\n`);
      const viaMirror = bc(['pull', '-q', ref]);
      expect(viaMirror.code, viaMirror.stderr).toBe(0);
      expect(bc(['images', '--format', '{{.Repository}}:{{.Tag}}']).stdout).toBe('nowhere.invalid/mirrored/small:latest\n');
    } finally {
      await registry.stop();
      fs.rmSync(imgDir, { recursive: true, force: true });
    }
  });
});
