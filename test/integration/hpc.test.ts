/**
 * `burrow run --hpc` (issue 18): Apptainer's defaults as a process inside sees them. Your own
 * uid and gid (and, rootless, your supplementary groups: a group-readable directory stays
 * readable), the host's network, IPC and pid namespaces (the same /proc/self/ns links as the
 * caller's; a file in /dev/shm seen by the host, as MPI ranks in separate containers share
 * memory), the host's environment except the deny list (PATH, LD_LIBRARY_PATH, PS1, BURROW_*)
 * and never over the image's own variables, $HOME, $TMPDIR and the working directory bound and
 * writable, the working directory kept, the host's hostname; and every explicit flag winning
 * over the default (--network none, --pid private, -w, -e, -v). As root and as the
 * unprivileged test user. docs/hpc.md has the table.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BIN, IS_ROOT, type Run } from './helpers';
import { setup, type Env } from './lifecycle.helpers';
import { shareDir } from '../harness/test-user.mjs';

let env: Env;
const IMG = 'hpc-busybox';
let home: string;
let work: string;
let tmp: string;
const T = { timeout: 120_000 };

beforeAll(() => {
  env = setup('hpc');
  // The same busybox, with a variable of the image's own that the host also sets.
  const imp = env.b(['import', path.join(env.work, 'busybox.tar.gz'), IMG, '-c', 'CMD ["sh"]', '-c', 'ENV IMGVAR=image']);
  if (imp.code !== 0) throw new Error(`import: ${imp.stderr}`);
  // $HOME as the host has it (the test user's real home, or root's): bound, so only a marker file of our own.
  home = process.env.HOME || os.homedir();
  work = path.join(env.work, 'project', 'run-1');
  tmp = path.join(env.work, 'scratch');
  fs.mkdirSync(work, { recursive: true });
  fs.mkdirSync(tmp);
  fs.writeFileSync(path.join(tmp, 'in-tmpdir'), 'x');
});
afterEach(() => env.cleanup());
afterAll(() => env?.dispose());

/** burrow from the working directory `work`, with extra host variables. */
function hpc(args: string[], vars: Record<string, string> = {}, cwd = work): Run {
  const r = spawnSync(process.execPath, [BIN, '--root', env.store, '--runroot', env.runroot, ...args], {
    encoding: 'utf8',
    cwd,
    env: { ...process.env, HOME: home, TMPDIR: tmp, ...vars },
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  return { code: r.status ?? 137, stdout: r.stdout, stderr: r.stderr };
}

const ns = (n: string) => fs.readlinkSync(`/proc/self/ns/${n}`);

/** `KEY=VALUE` lines of a probe's output. */
function lines(out: string): Record<string, string> {
  return Object.fromEntries(out.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

const PROBE = [
  'echo uid=$(id -u)',
  'echo gid=$(id -g)',
  'echo pwd=$(pwd)',
  'echo home=$HOME',
  'echo host_hostname=$(hostname)',
  'echo foo=$FOO',
  'echo ps1=${PS1-unset}',
  'echo ld=${LD_LIBRARY_PATH-unset}',
  'echo path=$PATH',
  'echo imgvar=$IMGVAR',
  'echo burrowvars=$(env | grep -c ^BURROW_)',
  'echo net=$(readlink /proc/self/ns/net)',
  'echo ipc=$(readlink /proc/self/ns/ipc)',
  'echo pid=$(readlink /proc/self/ns/pid)',
  'echo tmpdir=$(cat $TMPDIR/in-tmpdir)',
  'echo home_listed=$(ls -d $HOME)',
  'touch written-inside && echo cwd_writable=yes',
].join('; ');

describe(`--hpc, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it("identity, namespaces, environment, binds and working directory are the host's, as under Apptainer", T, () => {
    const r = hpc(['run', '--rm', '--hpc', IMG, 'sh', '-c', PROBE], { FOO: 'bar', PS1: 'host$ ', LD_LIBRARY_PATH: '/host/lib', IMGVAR: 'host', PATH: `/host/only/bin:${process.env.PATH}` });
    expect(r.code, r.stderr).toBe(0);
    const v = lines(r.stdout);
    // The shell's own prompt (busybox sets one), never the host's.
    expect(v.ps1).not.toContain('host');
    expect(v).toMatchObject({
      uid: String(process.getuid!()),
      gid: String(process.getgid!()),
      pwd: work,
      home,
      host_hostname: os.hostname(),
      foo: 'bar',
      ld: 'unset',
      path: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      imgvar: 'image',
      burrowvars: '0',
      net: ns('net'),
      ipc: ns('ipc'),
      pid: ns('pid'),
      tmpdir: 'x',
      home_listed: home,
      cwd_writable: 'yes',
    });
    // Written through the bind as you: your file on the host.
    const st = fs.statSync(path.join(work, 'written-inside'));
    expect([st.uid, st.gid]).toEqual([process.getuid!(), process.getgid!()]);
  });

  it("the host's /dev/shm (MPI's shared memory between ranks in separate containers)", T, () => {
    const name = `burrow-hpc-test-${process.pid}`;
    try {
      const r = hpc(['run', '--rm', '--hpc', IMG, 'sh', '-c', `echo from-container > /dev/shm/${name}`]);
      expect(r.code, r.stderr).toBe(0);
      expect(fs.readFileSync(`/dev/shm/${name}`, 'utf8')).toBe('from-container\n');
    } finally {
      fs.rmSync(`/dev/shm/${name}`, { force: true });
    }
  });

  it.runIf(!IS_ROOT)('rootless: your supplementary groups are kept (a group-readable directory stays readable)', T, () => {
    const share = shareDir(process.getuid!()) as string;
    const r = hpc(['run', '--rm', '--hpc', '-v', `${share}:${share}`, IMG, 'cat', path.join(share, 'secret')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(fs.readFileSync(path.join(share, 'secret'), 'utf8'));
    // Without --hpc (the default identity, no keep-groups) the same read is refused.
    const plain = hpc(['run', '--rm', '-v', `${share}:${share}`, IMG, 'cat', path.join(share, 'secret')]);
    expect(plain.code).not.toBe(0);
  });

  it('every explicit flag wins over its default: --network none, --pid private, --ipc private, -w, -e, -h', T, () => {
    const r = hpc(['run', '--rm', '--hpc', '--network', 'none', '--pid', 'private', '--ipc', 'private', '-w', '/', '-e', 'FOO=mine', '-h', 'box', IMG, 'sh', '-c', PROBE.replace('touch written-inside && echo cwd_writable=yes', () => 'echo self=$$')], { FOO: 'bar' });
    expect(r.code, r.stderr).toBe(0);
    const v = lines(r.stdout);
    expect(v.net).not.toBe(ns('net'));
    expect(v.pid).not.toBe(ns('pid'));
    expect(v.ipc).not.toBe(ns('ipc'));
    expect(v).toMatchObject({ self: '1', pwd: '/', foo: 'mine', host_hostname: 'box', uid: String(process.getuid!()), home });
    const bad = hpc(['run', '--rm', '--hpc', '--pid', 'container:x', IMG, 'true']);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toContain('invalid --pid container:x: want host or private');
  });

  it("a working directory that is a system directory is not bound over the image's: the image's working directory, with a warning", T, () => {
    const r = hpc(['run', '--rm', '--hpc', IMG, 'sh', '-c', 'pwd; test -e /usr/bin/node && echo host-usr || echo image-usr'], {}, '/usr');
    expect([r.code, r.stdout], r.stderr).toEqual([0, '/\nimage-usr\n']);
    expect(r.stderr).toContain("--hpc: the working directory /usr is a system directory, which is not bound over the image's: the container starts in the image's working directory (give -w, or -v /usr:/usr)");
    // A directory the user binds is kept.
    const own = path.join(env.work, 'elsewhere');
    fs.mkdirSync(own, { recursive: true });
    const bound = hpc(['run', '--rm', '--hpc', '-v', `${own}:${own}`, IMG, 'pwd'], { HOME: path.join(env.work, 'no-such-home') }, own);
    expect([bound.code, bound.stdout], bound.stderr).toEqual([0, `${own}\n`]);
  });
});
