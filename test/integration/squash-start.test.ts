/**
 * The start of a container from a one-file image (docs/hpc-images.md, "Start cost"): what the
 * start's shortcuts must not change. The image's config and users come from the file even when
 * they were read at an earlier start and the file changed since (replaced, or rewritten in place
 * with its old mtime); `--hpc` works with a file as with a store image; a `--rm` container shows
 * its writes, is inspectable while it runs and leaves nothing behind. Runs as root and as the
 * unprivileged test user, with real squashfs files made by `image convert`.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT, type Run } from './helpers';
import { setup, sleep, waitFor, type Env } from './lifecycle.helpers';
import { makeRootfs } from '../harness/bundle.mjs';

let env: Env;
const T = { timeout: 180_000 };
let fileA: string;
let fileB: string;

/** An image of busybox whose `alice` has `uid`, its config setting WHICH=`which`, as a squashfs. */
function squashImage(which: string, uid: number): string {
  const dir = path.join(env.work, `src-${which}`);
  const rootfs = makeRootfs(dir);
  fs.appendFileSync(path.join(rootfs, 'etc', 'passwd'), `alice:x:${uid}:${uid}::/tmp:/bin/sh\n`);
  fs.writeFileSync(path.join(rootfs, 'marker'), `image ${which}\n`);
  const tar = path.join(env.work, `${which}.tar`);
  const t = spawnSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-cf', tar, '-C', rootfs, '.']);
  if (t.status !== 0) throw new Error(`tar: ${t.stderr}`);
  const name = `sqstart-${which}`;
  const imp = env.b(['import', tar, name, '-c', 'CMD ["sh"]', '-c', `ENV WHICH=${which}`, '-c', 'ENV IMGVAR=image']);
  if (imp.code !== 0) throw new Error(`import: ${imp.stderr}`);
  const out = path.join(env.work, `${which}.sqfs`);
  const c = env.b(['image', 'convert', '--format', 'squashfs', '--processors', '1', name, out], { timeout: 120_000 });
  if (c.code !== 0) throw new Error(`convert: ${c.stderr}`);
  return out;
}

/** burrow from `cwd` with extra host variables (for --hpc, which passes them on). */
function run(args: string[], vars: Record<string, string> = {}, cwd = env.work): Run {
  return env.b(args, { env: vars, cwd, timeout: 60_000 });
}

const containerDirs = () => env.containerDirs();

beforeAll(() => {
  env = setup('sqstart');
  fileA = squashImage('a', 1000);
  fileB = squashImage('b', 2000);
  // The same size (bytes past a squashfs's own end are allowed): a changed file then differs
  // from the one before only in content and change time.
  const size = Math.max(fs.statSync(fileA).size, fs.statSync(fileB).size) + 4096;
  for (const f of [fileA, fileB]) fs.truncateSync(f, size);
}, 300_000);
afterEach(() => env.cleanup());
afterAll(() => env?.dispose());

describe(`start from a squashfs, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it("takes the image's config and users from the file again when it changed at the same path", T, async () => {
    const file = path.join(env.work, 'job.sqfs');
    fs.copyFileSync(fileA, file);
    const probe = ['run', '--rm', '--network', 'none', '-u', 'alice', file, 'sh', '-c', 'echo $WHICH $(id -u) $(cat /marker)'];
    // Past the time after a change within which what a start read from the file is not kept
    // (ts/storage/squash.ts): the second start uses what the first one kept.
    await sleep(2500);
    for (let i = 0; i < 2; i++) {
      const r = run(probe);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('a 1000 image a');
    }
    // Rewritten in place (same inode), its mtime set back to the old one: only its change time
    // and content tell.
    const before = fs.statSync(file);
    const ref = path.join(env.work, 'times');
    fs.writeFileSync(ref, '');
    // touch -r: the times to the nanosecond (fs.utimesSync would round them).
    spawnSync('touch', ['-r', file, ref]);
    fs.copyFileSync(fileB, file);
    spawnSync('touch', ['-r', ref, file]);
    const after = fs.statSync(file);
    expect([after.ino, after.size, after.mtimeMs]).toEqual([before.ino, before.size, before.mtimeMs]);
    expect(run(probe).stdout.trim()).toBe('b 2000 image b');
    // Replaced by a rename, as a copy to a parallel file system does.
    fs.copyFileSync(fileA, `${file}.part`);
    fs.renameSync(`${file}.part`, file);
    expect(run(probe).stdout.trim()).toBe('a 1000 image a');
    expect(containerDirs()).toEqual([]);
  });

  it("runs a file with --hpc: the file's tree and config, --hpc's identity, environment and working directory", T, () => {
    const cwd = path.join(env.work, 'project');
    fs.mkdirSync(cwd, { recursive: true });
    const r = run(['run', '--rm', '--hpc', fileA, 'sh', '-c', 'echo $(id -u) $FOO $IMGVAR $WHICH $(pwd) $(cat /marker)'], { FOO: 'from-host', IMGVAR: 'host' }, cwd);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // keep-id: the user's own uid inside (root's is 0); the image's variables win over the host's.
    expect(r.stdout.trim()).toBe(`${process.getuid!()} from-host image a ${cwd} image a`);
    expect(containerDirs()).toEqual([]);
  });

  it('shows the writes of a --rm container, and removes it with its writes when it ends', T, () => {
    const r = run(['run', '--rm', '--network', 'none', fileA, 'sh', '-c', 'echo written > /new.txt && rm /marker && cat /new.txt && ls /marker 2>&1; echo more >> /etc/passwd && tail -1 /etc/passwd']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('written\nls: /marker: No such file or directory\nmore\n');
    expect(containerDirs()).toEqual([]);
    // The file itself is untouched: a new container sees the image as it was.
    expect(run(['run', '--rm', '--network', 'none', fileA, 'sh', '-c', 'cat /marker; ls /new.txt 2>&1']).stdout).toBe('image a\nls: /new.txt: No such file or directory\n');
  });

  it('keeps the record of a detached --rm container readable while it runs, and removes it after', T, () => {
    const id = run(['run', '-d', '--rm', '--network', 'none', fileA, 'sleep', '300']);
    expect(id.code).toBe(0);
    const cid = id.stdout.trim();
    const ins = run(['inspect', '-f', '{{.HostConfig.AutoRemove}} {{.State.Status}} {{.Config.Image}}', cid]);
    expect(ins.stdout.trim()).toBe(`true running ${fileA}`);
    expect(run(['ps', '-q', '--no-trunc']).stdout.trim()).toBe(cid);
    expect(run(['stop', '-t', '0', cid]).code).toBe(0);
    waitFor(() => containerDirs().length === 0, 15_000, 'the --rm container to be removed');
    expect(run(['ps', '-aq']).stdout.trim()).toBe('');
  });
});

