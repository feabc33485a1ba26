/**
 * burrow-runtime's own side of a start from a one-file image, as the CLI drives it (`run --dir
 * --status-fd 3 --events-file --remove-tree`, rootfs/squashfuse.rs annotations): what the
 * shortcuts of its start and end must not change. The squashfs is mounted by squashfuse_ll in
 * the container's user namespace, under the kernel's overlay; the holder's records are written
 * whether or not the container could be made; the FUSE daemon of a mount that fails never
 * starts; the container's mount namespace (held until the exit is reported) and its daemon are
 * gone once the runtime is. Runs as root and as the unprivileged test user.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { RUNTIME } from '../harness/bundle.mjs';
import { runtimeEnv, type Config } from './runtime.helpers';

const env = runtimeEnv('rtsq');
const { work, stateRoot } = env;
let sqfs: string;
afterAll(() => env.dispose());

beforeAll(() => {
  // A squashfs of the busybox rootfs the bundles use, with a marker of its own.
  const src = path.join(work, 'sq-src');
  fs.mkdirSync(src);
  spawnSync('cp', ['-a', `${path.join(work, 'cache', 'rootfs')}/.`, src]);
  fs.writeFileSync(path.join(src, 'marker'), 'from the squashfs\n');
  sqfs = path.join(work, 'image.sqfs');
  const r = spawnSync('mksquashfs', [src, sqfs, '-all-root', '-noappend', '-quiet', '-processors', '1'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mksquashfs: ${r.stderr}`);
});

/** Live processes whose command line names `file` (a squashfuse serving it). */
function servers(file: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let cmd = '';
    let stat = '';
    try {
      cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
      stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.startsWith('squashfuse') && cmd.includes(file) && !/\) [ZX] /.test(stat)) out.push(Number(d));
  }
  return out;
}

/** Processes of ours in the mount namespace `ns` (`mnt:[N]`). */
function inMountNs(ns: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readlinkSync(`/proc/${d}/ns/mnt`) === ns) out.push(Number(d));
    } catch {
      // gone, or not ours
    }
  }
  return out;
}

/** A bundle whose root is the squashfs under the kernel's overlay (lower: `lower`). */
function squashBundle(args: string[], lower: string, edit?: (c: Config) => void) {
  let dirs = { upper: '', work: '' };
  const b = env.bundle(args, (c) => {
    const base = path.join(work, `layer-${path.basename(lower)}-${Math.random().toString(16).slice(2)}`);
    dirs = { upper: path.join(base, 'upper'), work: path.join(base, 'work') };
    for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });
    c.annotations = {
      'run.burrow.rootfs.squashfuse': sqfs,
      'run.burrow.rootfs.squashfuse.lower': lower,
      'run.burrow.rootfs.squashfuse.program': '/usr/bin/squashfuse_ll',
      'run.burrow.rootfs.overlay': `lowerdir=${lower},upperdir=${dirs.upper},workdir=${dirs.work}`,
    };
    edit?.(c);
  });
  return { ...b, ...dirs };
}

/** `run` as the CLI's foreground run does it; the status channel's lines and the outcome. */
function heldRun(b: { dir: string; id: string }, holderDir: string, extra: string[] = []) {
  fs.mkdirSync(holderDir, { recursive: true });
  const events = path.join(holderDir, 'events.jsonl');
  const r = spawnSync(RUNTIME as string, ['--root', stateRoot, 'run', '--bundle', b.dir, '--dir', holderDir, '--status-fd', '3', '--events-file', events, ...extra, b.id], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  const channel = (r.output[3] ?? '').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const actions = fs.existsSync(events) ? fs.readFileSync(events, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l).Action as string) : [];
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, channel, actions };
}

describe(`burrow-runtime with a one-file image, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('mounts the file under the overlay, and leaves no daemon, namespace, state or writable layer behind', () => {
    const lower = path.join(work, 'lower-ok');
    fs.mkdirSync(lower);
    const b = squashBundle(['sh', '-c', 'cat /marker; echo w > /written && cat /written; readlink /proc/self/ns/mnt; cat /proc/[0-9]*/comm | grep -c "^squashfuse"'], lower);
    const holder = path.join(work, 'holder-ok');
    const r = heldRun(b, holder, ['--remove-tree', b.upper, '--remove-tree', b.work]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [marker, written, ns, daemons] = r.stdout.trim().split('\n');
    expect([marker, written, daemons]).toEqual(['from the squashfs', 'w', '1']);
    expect(ns).toMatch(/^mnt:\[\d+\]$/);
    // The channel: the pid, then the exit; the records: the holder, its start and its end.
    expect(r.channel.map((m) => Object.keys(m)[0])).toEqual(['pid', 'exit']);
    expect(r.channel[1]).toEqual({ exit: 0 });
    expect(JSON.parse(fs.readFileSync(path.join(holder, 'monitor.json'), 'utf8')).pid).toBeGreaterThan(0);
    expect(fs.existsSync(path.join(holder, 'started'))).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(holder, 'exit.json'), 'utf8')).exitCode).toBe(0);
    expect(r.actions).toEqual(['start', 'die']);
    // Gone with the runtime: the daemon, every process and descriptor of the container's
    // mount namespace (held until the exit was reported), its state, its writable layer.
    expect(servers(sqfs)).toEqual([]);
    expect(inMountNs(ns!)).toEqual([]);
    expect(fs.existsSync(path.join(stateRoot, b.id))).toBe(false);
    expect([fs.existsSync(b.upper), fs.existsSync(b.work)]).toEqual([false, false]);
    // The file itself was only read.
    expect(spawnSync('unsquashfs', ['-cat', sqfs, 'marker'], { encoding: 'utf8' }).stdout).toBe('from the squashfs\n');
  });

  it('a FUSE mount that fails says why, and its daemon never starts', () => {
    // The squashfs's mount point does not exist: the mount fails after the daemon was cloned.
    const b = squashBundle(['true'], path.join(work, 'no-such-lower'));
    const holder = path.join(work, 'holder-bad-mount');
    const r = heldRun(b, holder);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/mount fuse on .*no-such-lower/);
    expect(r.channel.map((m) => ('error' in m ? 'error' : Object.keys(m)[0]))).toEqual(['error', 'exit']);
    expect(servers(sqfs)).toEqual([]);
    // No process of the attempt is left (the daemon ended before its exec), nor its state.
    const left = spawnSync('pgrep', ['-f', b.id], { encoding: 'utf8' }).stdout.trim();
    expect(left).toBe('');
    expect(fs.existsSync(path.join(stateRoot, b.id))).toBe(false);
    // The holder's records all the same: who held it, that it started, how it ended.
    expect(fs.existsSync(path.join(holder, 'monitor.json'))).toBe(true);
    expect(fs.existsSync(path.join(holder, 'started'))).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(holder, 'exit.json'), 'utf8')).reason).toMatch(/mount fuse on/);
  });

  it('a config refused before the container exists still gets the holder\'s records', () => {
    const lower = path.join(work, 'lower-refused');
    fs.mkdirSync(lower);
    const b = squashBundle(['true'], lower, (c) => {
      c.ociVersion = '2.0.0';
    });
    const holder = path.join(work, 'holder-refused');
    const r = heldRun(b, holder);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unsupported spec version/);
    expect(JSON.parse(fs.readFileSync(path.join(holder, 'monitor.json'), 'utf8')).pid).toBeGreaterThan(0);
    expect(fs.existsSync(path.join(holder, 'started'))).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(holder, 'exit.json'), 'utf8')).reason).toMatch(/unsupported spec version/);
    expect(r.actions).toEqual(['die']);
  });

  it('with a poststop hook, the writable layer is still there when the hook runs, and gone after', () => {
    const lower = path.join(work, 'lower-hook');
    fs.mkdirSync(lower);
    const seen = path.join(work, 'hook-saw');
    let upper = '';
    const b = squashBundle(['sh', '-c', 'echo kept > /kept'], lower, (c) => {
      upper = c.annotations['run.burrow.rootfs.overlay'].split(',')[1].slice('upperdir='.length);
      c.hooks = { poststop: [{ path: '/bin/sh', args: ['sh', '-c', `cat ${upper}/kept > ${seen} 2>&1 || echo missing > ${seen}`] }] };
    });
    const r = heldRun(b, path.join(work, 'holder-hook'), ['--remove-tree', b.upper, '--remove-tree', b.work]);
    expect(r.code).toBe(0);
    expect(fs.readFileSync(seen, 'utf8')).toBe('kept\n');
    expect(fs.existsSync(upper)).toBe(false);
  });
});
