/**
 * One-file images (docs/hpc-images.md): `image convert --format squashfs`, `run FILE.sqfs`,
 * `run FILE.sif` and `image import FILE.sif`, through the CLI with real mksquashfs, squashfuse
 * and SIF files made by siftool (github.com/sylabs/sif/v2, built by .ci/setup). The main test
 * image (whiteouts, an opaque directory, files of uid 33 and 1000, hard links, a zstd layer) is
 * pulled from a real registry; its tree as a container of the image shows it is compared with
 * the tree a container of the squashfs shows. Runs as root and as the unprivileged test user.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exec, removeAllSandboxes, removeContainers, sandbox, tmpdir, TREE_LISTING as TREE, type Sandbox } from './image-helpers';
import { BIN } from './helpers';
import { alive, cmdline } from './lifecycle.helpers';
import { startRegistry, type Registry } from '../harness/registry.mjs';
import { buildMainImage, buildUserImage, pushImage } from '../harness/images.mjs';
import { siftoolPath } from '../harness/siftool.mjs';

const work = fs.mkdtempSync(path.join(tmpdir(), 'burrow-squash-test-'));
let registry: Registry;
let ref: string;
let userRef: string;
let sb: Sandbox;
const sqfs = path.join(work, 'main.sqfs');

/**
 * The type of the file system on /, and whether squashfuse serves this container: its daemon
 * is a process of the container's pid namespace (its mount is not in the container's table:
 * the union holds it, and pivot_root detached the old root it was mounted in).
 */
const MOUNTS = `awk '$5 == "/" { for (i = 7; i <= NF; i++) if ($i == "-") { print "root " $(i + 1); exit } }' /proc/self/mountinfo; if cat /proc/[0-9]*/comm 2>/dev/null | grep -q '^squashfuse'; then echo squashfuse; fi`;

/** Live squashfuse processes of this test (their command line names a file under `work`). */
function squashDaemons(): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const c = cmdline(Number(d));
    if (c.startsWith('squashfuse') && c.includes(work) && alive(Number(d))) out.push(Number(d));
  }
  return out;
}

const sha = (f: string): string => createHash('sha256').update(fs.readFileSync(f)).digest('hex');

/** A SIF made by siftool from `dir` (mksquashfs'd here): primary system partition unless told. */
function makeSif(dir: string, out: string, parttype = 2): string {
  const part = `${out}.squashfs`;
  execFileSync('mksquashfs', [dir, part, '-noappend', '-quiet', '-no-progress', '-all-root'], { stdio: 'ignore' });
  const siftool = siftoolPath();
  fs.rmSync(out, { force: true });
  execFileSync(siftool, ['new', out]);
  execFileSync(siftool, ['add', '--datatype', '2', out, path.join(dir, '.singularity.d', 'env', '90-test.sh')]);
  execFileSync(siftool, ['add', '--datatype', '4', '--parttype', String(parttype), '--partfs', '1', '--partarch', '2', out, part]);
  return out;
}

/** An Apptainer-like tree: busybox, a runscript that prints its environment's greeting. */
function sifTree(dir: string): string {
  for (const d of ['bin', 'etc', '.singularity.d/env', 'data']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(dir, 'bin', 'busybox'));
  fs.chmodSync(path.join(dir, 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'cat', 'echo', 'id', 'ls']) fs.symlinkSync('busybox', path.join(dir, 'bin', a));
  fs.writeFileSync(path.join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  fs.writeFileSync(path.join(dir, 'data', 'in-sif.txt'), 'from the sif\n');
  fs.writeFileSync(path.join(dir, '.singularity.d', 'runscript'), '#!/bin/sh\necho "runscript: $GREETING $*"\n', { mode: 0o755 });
  fs.writeFileSync(path.join(dir, '.singularity.d', 'env', '90-test.sh'), 'export GREETING=hello-from-sif-env\n');
  return dir;
}

beforeAll(async () => {
  const main = buildMainImage(path.join(work, 'main'), { tag: 'v1', bigSize: 1024 * 1024 });
  const user = buildUserImage(path.join(work, 'user'));
  registry = await startRegistry({ mode: 'anonymous' });
  ref = await pushImage(registry, main, 'test/squash');
  userRef = await pushImage(registry, user, 'test/squash-user');
  sb = sandbox(work, 'store');
  await sb.ok(['pull', '-q', ref]);
  await sb.ok(['pull', '-q', userRef]);
}, 180_000);

afterAll(async () => {
  if (sb) await removeContainers(sb);
  for (const pid of squashDaemons()) process.kill(pid, 'SIGKILL');
  await registry?.stop();
  await removeAllSandboxes();
  fs.rmSync(work, { recursive: true, force: true });
}, 120_000);

describe('image convert --format squashfs and run FILE.sqfs', () => {
  it('writes the flattened image (whiteouts applied, owners as in the image) and a container of it shows the image tree', async () => {
    const r = await sb.ok(['image', 'convert', '--format', 'squashfs', '--processors', '2', ref, sqfs]);
    expect(r.stdout.trim()).toBe(sqfs);
    // No temporary file left beside it.
    expect(fs.readdirSync(work).filter((n) => n.includes('.tmp-'))).toEqual([]);
    // The file itself: whiteouts applied, no whiteout entries, container owners (uid 33, 1000).
    const list = execFileSync('unsquashfs', ['-lln', sqfs], { encoding: 'utf8' });
    const names = list.split('\n').map((l) => l.replace(/^.* squashfs-root/, '')).filter(Boolean);
    expect(names).toContain('/.burrow/config.json');
    expect(names).toContain('/opaque/new.txt');
    for (const gone of ['/todelete.txt', '/deldir', '/opaque/a', '/opaque/sub']) expect(names).not.toContain(gone);
    expect(names.some((n) => n.includes('.wh.'))).toBe(false);
    expect(list).toMatch(/ 1000\/1000 .* squashfs-root\/home\/user\/notes\.txt/);
    expect(list).toMatch(/ 33\/33 .* squashfs-root\/var\/www/);

    const before = sha(sqfs);
    const fromImage = await sb.ok(['run', '--rm', '--network', 'none', ref, 'sh', '-c', TREE], { timeoutMs: 120_000 });
    const fromFile = await sb.ok(['run', '--rm', '--network', 'none', sqfs, 'sh', '-c', `${TREE}\n${MOUNTS}\necho mine > /written.txt && cat /written.txt`], { timeoutMs: 120_000 });
    expect(fromFile.stdout).toContain('/home/user/notes.txt regular file 1000 1000');
    const lines = fromFile.stdout.trim().split('\n');
    const tail = lines.slice(-3);
    expect(tail).toEqual([`root ${sb.settings().driver === 'overlay' ? 'overlay' : 'fuse.fuse-overlayfs'}`, 'squashfuse', 'mine']);
    expect(lines.slice(0, -3).join('\n')).toBe(fromImage.stdout.trim());
    // Its write stayed its own: the file is as it was, and no squashfuse outlived the container.
    expect(sha(sqfs)).toBe(before);
    expect(squashDaemons()).toEqual([]);
  }, 300_000);

  it('works under fuse-overlayfs too (the union where the kernel overlay cannot be used), with the same tree', async () => {
    const fromImage = await sb.ok(['run', '--rm', '--network', 'none', ref, 'sh', '-c', TREE], { timeoutMs: 120_000 });
    const fromFile = await sb.ok(['--storage-driver', 'fuse-overlayfs', 'run', '--rm', '--network', 'none', sqfs, 'sh', '-c', `${TREE}\n${MOUNTS}\necho mine > /written.txt && cat /written.txt`], { timeoutMs: 120_000 });
    const lines = fromFile.stdout.trim().split('\n');
    expect(lines.slice(-3)).toEqual(['root fuse.fuse-overlayfs', 'squashfuse', 'mine']);
    expect(lines.slice(0, -3).join('\n')).toBe(fromImage.stdout.trim());
    expect(squashDaemons()).toEqual([]);
  }, 300_000);

  it("takes the image's config from the file: default command, user by name, working directory, env", async () => {
    const file = path.join(work, 'user.sqfs');
    await sb.ok(['image', 'convert', '--format', 'squashfs', userRef, file]);
    const img = await sb.ok(['run', '--rm', '--network', 'none', userRef]);
    const sq = await sb.ok(['run', '--rm', '--network', 'none', file]);
    expect(sq.stdout).toBe(img.stdout);
    expect(sq.stdout).toMatch(/^uid=1000\(app\) gid=1000\(app\)/);
    const pwd = await sb.ok(['run', '--rm', '--network', 'none', file, 'sh', '-c', 'pwd; echo $PATH']);
    expect(pwd.stdout.split('\n')[0]).toBe('/home/app');
    expect(pwd.stdout.split('\n')[1]).toContain('/usr/bin');
  }, 120_000);

  it('looks the file up once at a start, and writes nothing of it into the store (metadata requests on a parallel file system)', async () => {
    // `create` spawns unsquashfs only (no newuidmap), so strace -f works as the test user too.
    const log = path.join(work, 'create.strace');
    const r = await exec('strace', ['-f', '-y', '-o', log, '-e', 'trace=%file,%stat,%lstat,%fstat,getdents64', process.execPath, BIN, '--root', sb.root, '--runroot', sb.runroot, 'create', '--network', 'none', sqfs, 'true'], { env: sb.env, timeoutMs: 120_000 });
    if (r.code === 0) await sb.ok(['rm', r.stdout.trim()]);
    expect(r.code, r.stderr).toBe(0);
    const lines = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean);
    const cli = lines[0]!.split(/\s+/)[0];
    // The CLI's calls naming the file, by path or by descriptor: one open, then one fstat (it
    // used to stat it by name first). unsquashfs and, at start, squashfuse open it once each.
    const naming = lines.filter((l) => l.startsWith(`${cli} `) && !/^\d+\s+(execve|<\.\.\.)/.test(l) && (l.includes(`"${sqfs}"`) || l.includes(`<${sqfs}>`)));
    // The image's /etc/passwd and /etc/group are looked up in memory, not copied into the
    // container's directory (a dozen calls there per container, made and removed again).
    const etcWrites = lines.filter((l) => /O_CREAT/.test(l) && /\/etc\/(passwd|group)"/.test(l) && l.includes(sb.root));
    expect({ naming: naming.map((l) => /^\d+\s+(\w+)\(/.exec(l)?.[1]), etcWrites }, naming.join('\n')).toEqual({ naming: ['openat', expect.stringMatching(/^(statx|newfstatat|fstat)$/)], etcWrites: [] });
  }, 120_000);

  it('ends the squashfuse daemon with the container (detached, then rm -f)', async () => {
    const id = (await sb.ok(['run', '-d', '--network', 'none', sqfs, 'sleep', '600'])).stdout.trim();
    const daemons = squashDaemons();
    expect(daemons.length).toBe(1);
    await sb.ok(['rm', '-f', id]);
    expect(daemons.filter((p) => alive(p))).toEqual([]);
    expect(squashDaemons()).toEqual([]);
  }, 120_000);

  it('refuses what it cannot do with the cause: an unknown image, another format, an unwritable place', async () => {
    const none = await sb.burrow(['image', 'convert', '--format', 'squashfs', 'no-such-image:1', path.join(work, 'x.sqfs')]);
    expect(none.code).toBe(125);
    expect(none.stderr).toMatch(/no such image: no-such-image:1/);
    const fmt = await sb.burrow(['image', 'convert', '--format', 'tar', ref, path.join(work, 'x.sqfs')]);
    expect(fmt.code).toBe(125);
    expect(fmt.stderr).toMatch(/invalid --format tar: want squashfs/);
    const dir = await sb.burrow(['image', 'convert', '--format', 'squashfs', ref, path.join(work, 'no-such-dir', 'x.sqfs')]);
    expect(dir.code).toBe(125);
    expect(dir.stderr).toMatch(/no-such-dir does not exist/);
    expect(fs.existsSync(path.join(work, 'x.sqfs'))).toBe(false);
    // No container of the conversions is left.
    expect((await sb.ok(['ps', '-aq'])).stdout.trim()).toBe('');
  }, 120_000);
});

describe('SIF images', () => {
  let sif: string;
  beforeAll(() => {
    sif = makeSif(sifTree(path.join(work, 'sif-tree')), path.join(work, 'app.sif'));
  });

  it('runs a SIF: its runscript by default with its environment, and a given command with it too', async () => {
    const def = await sb.ok(['run', '--rm', '--network', 'none', sif]);
    expect(def.stdout).toBe('runscript: hello-from-sif-env \n');
    const cmd = await sb.ok(['run', '--rm', '--network', 'none', sif, 'sh', '-c', `echo $GREETING; cat /data/in-sif.txt; ${MOUNTS}`]);
    expect(cmd.stdout).toBe(`hello-from-sif-env\nfrom the sif\nroot ${sb.settings().driver === 'overlay' ? 'overlay' : 'fuse.fuse-overlayfs'}\nsquashfuse\n`);
    expect(squashDaemons()).toEqual([]);
  }, 120_000);

  it('imports a SIF as an image of the store, with its runscript and environment', async () => {
    const r = await sb.ok(['image', 'import', sif, 'sif/app:1']);
    expect(r.stdout.trim()).toMatch(/^sha256:[a-f0-9]{64}$/);
    const def = await sb.ok(['run', '--rm', '--network', 'none', 'sif/app:1']);
    expect(def.stdout).toBe('runscript: hello-from-sif-env \n');
    const data = await sb.ok(['run', '--rm', '--network', 'none', 'sif/app:1', 'cat', '/data/in-sif.txt']);
    expect(data.stdout).toBe('from the sif\n');
    expect((await sb.ok(['ps', '-aq'])).stdout.trim()).toBe('');
  }, 120_000);

  it('refuses a file that is not an image, a truncated squashfs or SIF, and a SIF without a system partition', async () => {
    const cases: [string, RegExp][] = [];
    const notImage = path.join(work, 'bad.sqfs');
    fs.writeFileSync(notImage, 'not an image\n'.repeat(100));
    cases.push([notImage, /not a squashfs or SIF image/]);
    const shortSq = path.join(work, 'short.sqfs');
    fs.writeFileSync(shortSq, fs.readFileSync(sqfs).subarray(0, Math.floor(fs.statSync(sqfs).size / 2)));
    cases.push([shortSq, /truncated: its squashfs needs \d+ bytes, the file has \d+/]);
    const shortSif = path.join(work, 'short.sif');
    fs.writeFileSync(shortSif, fs.readFileSync(sif).subarray(0, fs.statSync(sif).size - 4096));
    cases.push([shortSif, /truncated/]);
    const dataSif = makeSif(path.join(work, 'sif-tree'), path.join(work, 'data.sif'), 3);
    cases.push([dataSif, /no primary system partition with a squashfs/]);
    for (const [file, why] of cases) {
      const r = await sb.burrow(['run', '--rm', '--network', 'none', file, 'true']);
      expect(r.code, file).toBe(125);
      expect(r.stderr, file).toMatch(why);
      expect(r.stderr).toContain(file);
    }
    const imp = await sb.burrow(['image', 'import', shortSif, 'sif/short:1']);
    expect(imp.code).toBe(125);
    expect(imp.stderr).toMatch(/truncated/);
    expect((await sb.ok(['ps', '-aq'])).stdout.trim()).toBe('');
  }, 120_000);
});
