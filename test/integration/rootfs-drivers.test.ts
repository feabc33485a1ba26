/**
 * The rootfs drivers (ts/storage/rootfs.ts): kernel overlay, fuse-overlayfs and copy, each driven
 * through the CLI with the harness's main image pulled from a real registry (a file and a
 * directory whited out, an opaque directory, files of uid 1000, hard links, a zstd layer). For
 * each: what a container sees, that its writes stay its own, that the store's layers are left
 * as they were, that the driver is recorded and used again by start, cp and rm, and that `rm`
 * leaves no process (the fuse-overlayfs daemon, checked in /proc by pid) and no directory.
 * Runs as root and as the unprivileged test user.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { burrow, IS_ROOT, testUser } from './helpers';
import { endImageTest, removeContainers, sandbox, tmpdir, type Sandbox } from './image-helpers';
import { alive, cmdline } from './lifecycle.helpers';
import { fuseDaemons } from '../../ts/storage/rootfs';
import type { Driver } from '../../ts/storage/store';
import { startRegistry, type Registry } from '../harness/registry.mjs';
import { buildMainImage, pushImage } from '../harness/images.mjs';

const work = fs.mkdtempSync(path.join(tmpdir(), 'burrow-rootfs-test-'));
let registry: Registry;
let ref: string;
let sb: Sandbox;
/** The store's layers as they were right after the pull. */
let layersBefore: string[];

const DRIVERS: Driver[] = ['overlay', 'fuse-overlayfs', 'copy'];

/**
 * Every entry of the store's unpacked layers: its metadata (ctime included, which any change
 * of content, owner, mode or xattr moves) and, where this user can read it, its content's hash.
 */
function fingerprint(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string) => {
    let names: string[];
    try {
      names = fs.readdirSync(dir).sort();
    } catch {
      out.push(`${rel}/ (unreadable)`);
      return;
    }
    for (const n of names) {
      const p = path.join(dir, n);
      const r = `${rel}/${n}`;
      const st = fs.lstatSync(p, { bigint: true });
      let hash = '';
      if (st.isFile()) {
        try {
          hash = createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 16);
        } catch {
          hash = 'unreadable';
        }
      }
      out.push(`${r} mode=${st.mode.toString(8)} uid=${st.uid} gid=${st.gid} size=${st.size} nlink=${st.nlink} ino=${st.ino} mtime=${st.mtimeNs} ctime=${st.ctimeNs} rdev=${st.rdev} ${hash}`);
      if (st.isDirectory()) walk(p, r);
    }
  };
  const layers = path.join(root, 'layers');
  for (const l of fs.readdirSync(layers).filter((n) => /^[a-f0-9]{64}$/.test(n)).sort()) walk(path.join(layers, l), l);
  return out;
}

function record(id: string): { rootfs?: { driver: string; dir: string } } {
  return JSON.parse(fs.readFileSync(path.join(sb.root, 'containers', id, 'record.json'), 'utf8'));
}

async function idOf(name: string): Promise<string> {
  return (await sb.ok(['inspect', '-f', '{{.Id}}', name])).stdout.trim();
}

/** fuse-overlayfs processes of this store, whoever their container (none may outlive one). */
function storeDaemons(): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const c = cmdline(Number(d));
    if (c.startsWith('fuse-overlayfs') && c.includes(sb.dir) && alive(Number(d))) out.push(Number(d));
  }
  return out;
}

/** The type of the filesystem mounted on / in a container, from its /proc/self/mountinfo. */
const ROOT_FSTYPE = `awk '$5 == "/" { for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 1); exit } }' /proc/self/mountinfo`;

/** What a container of the main image must show: every layer kind applied, then its own write. */
const LOOK = [
  'cat /etc/motd /zstd/hello.txt',
  'ls -A /opaque',
  'for p in /todelete.txt /deldir /deldir/inside.txt /opaque/a /opaque/b /opaque/sub; do test -e $p && echo "present: $p"; done',
  'stat -c "%u %h" /home/user/notes.txt /data/hard1',
  'echo mine > /written.txt && cat /written.txt',
  'rm /data/target.txt',
  ROOT_FSTYPE,
].join('; ');

function checkRootFs(driver: Driver, fstype: string | undefined): void {
  if (driver === 'overlay') expect(fstype).toBe('overlay');
  else if (driver === 'fuse-overlayfs') expect(fstype).toBe('fuse.fuse-overlayfs');
  else expect(fstype).not.toMatch(/^(overlay|fuse)/);
}

beforeAll(async () => {
  const main = buildMainImage(path.join(work, 'main'), { tag: 'v1', bigSize: 1024 * 1024 });
  registry = await startRegistry({ mode: 'anonymous' });
  ref = await pushImage(registry, main, 'test/rootfs');
  sb = sandbox(work, 'store');
  await sb.ok(['pull', '-q', ref]);
  layersBefore = fingerprint(sb.root);
}, 120_000);

afterAll(async () => {
  if (sb) await removeContainers(sb);
  await endImageTest(work, [registry]);
});

describe(`rootfs drivers as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  for (const driver of DRIVERS) {
    describe(driver, () => {
      it('shows the image with its whiteouts and opaque directory applied, keeps writes to the container and leaves the layers unchanged', async () => {
        const name = `look-${driver}`;
        const r = await sb.burrow(['--storage-driver', driver, 'run', '--name', name, ref, 'sh', '-c', LOOK]);
        expect(r.code, r.stderr).toBe(0);
        const lines = r.stdout.trim().split('\n');
        expect(lines.slice(0, 6)).toEqual(['layer 2', 'from a zstd layer', 'new.txt', '1000 1', '0 2', 'mine']);
        checkRootFs(driver, lines[6]);
        expect(lines).toHaveLength(7); // no "present: …" line: whited-out paths are gone
        const id = await idOf(name);
        const rec = record(id);
        expect(rec.rootfs?.driver).toBe(driver);
        // The container has exited: no daemon serves its root any more.
        expect(fuseDaemons(rec.rootfs!.dir)).toEqual([]);
        expect(storeDaemons()).toEqual([]);
        // Another container of the image sees neither the write nor the deletion.
        const other = await sb.burrow(['--storage-driver', driver, 'run', '--rm', ref, 'sh', '-c', 'test -e /written.txt; echo $?; cat /data/target.txt']);
        expect(other, other.stderr).toMatchObject({ code: 0, stdout: '1\nthe end of the chain\n' });
        // The first one still has both, read back from the host through `cp` (a transient
        // container over the stopped one's root, with the recorded driver).
        const copied = path.join(sb.dir, `written-${driver}.txt`);
        await sb.ok(['cp', `${name}:/written.txt`, copied]);
        expect(fs.readFileSync(copied, 'utf8')).toBe('mine\n');
        expect(storeDaemons()).toEqual([]);
        expect(fingerprint(sb.root)).toEqual(layersBefore);
        await sb.ok(['rm', name]);
        expect(fs.existsSync(path.join(sb.root, 'containers', id))).toBe(false);
        expect(fs.existsSync(rec.rootfs!.dir)).toBe(false);
      });

      it('is what inspect reports as GraphDriver, with the directories the container really uses', async () => {
        const name = `graph-${driver}`;
        await sb.ok(['--storage-driver', driver, 'run', '--name', name, ref, 'sh', '-c', 'echo from-inside > /graph.txt; rm /data/target.txt']);
        const id = await idOf(name);
        const dir = record(id).rootfs!.dir;
        const g = JSON.parse((await sb.ok(['inspect', '-f', '{{json .GraphDriver}}', name])).stdout) as { Name: string; Data: Record<string, string> };
        expect(g.Name).toBe(driver);
        if (driver === 'copy') {
          expect(g.Data).toEqual({ RootDir: path.join(dir, 'rootfs') });
          // The container's files, its write included and its deletion applied.
          expect(fs.readFileSync(path.join(g.Data.RootDir!, 'graph.txt'), 'utf8')).toBe('from-inside\n');
          expect(fs.existsSync(path.join(g.Data.RootDir!, 'bin', 'busybox'))).toBe(true);
          expect(fs.existsSync(path.join(g.Data.RootDir!, 'data', 'target.txt'))).toBe(false);
        } else {
          const layers = JSON.parse((await sb.ok(['inspect', '--type', 'image', '-f', '{{json .RootFS.Layers}}', ref])).stdout) as string[];
          expect(g.Data).toEqual({
            // Top layer first, as Docker lists them; the store's unpacked layers.
            LowerDir: [...layers].reverse().map((l) => path.join(sb.root, 'layers', l.slice(7))).join(':'),
            MergedDir: path.join(sb.root, 'containers', id, 'bundle', 'rootfs'),
            UpperDir: path.join(dir, 'upper'),
            WorkDir: path.join(dir, 'work'),
          });
          for (const l of g.Data.LowerDir!.split(':')) expect(fs.statSync(l).isDirectory(), l).toBe(true);
          expect(fs.statSync(g.Data.MergedDir!).isDirectory()).toBe(true);
          expect(fs.statSync(g.Data.WorkDir!).isDirectory()).toBe(true);
          // The container's write went to UpperDir, and its deletion is a whiteout there.
          expect(fs.readFileSync(path.join(g.Data.UpperDir!, 'graph.txt'), 'utf8')).toBe('from-inside\n');
          const wh = fs.lstatSync(path.join(g.Data.UpperDir!, 'data', 'target.txt'));
          expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
        }
        await sb.ok(['rm', name]);
      });

      it('is recorded at create: start and rm without the flag use it', async () => {
        const id = (await sb.ok(['--storage-driver', driver, 'create', ref, 'sh', '-c', ROOT_FSTYPE])).stdout.trim();
        expect(record(id).rootfs?.driver).toBe(driver);
        const started = await sb.burrow(['start', '-a', id]);
        expect(started.code, started.stderr).toBe(0);
        checkRootFs(driver, started.stdout.trim());
        await sb.ok(['rm', id]);
        expect(fs.existsSync(path.join(sb.root, 'containers', id))).toBe(false);
      });

      it('rm -f of a running container leaves no process and no root filesystem', async () => {
        const id = (await sb.ok(['--storage-driver', driver, 'run', '-d', ref, 'sleep', '60'])).stdout.trim();
        const dir = record(id).rootfs!.dir;
        let daemons: number[] = [];
        if (driver === 'fuse-overlayfs') {
          daemons = fuseDaemons(dir);
          expect(daemons).toHaveLength(1);
          expect(alive(daemons[0]!)).toBe(true);
          // It serves the container from inside its pid namespace (rootfs.rs says why).
          const init = Number((await sb.ok(['inspect', '-f', '{{.State.Pid}}', id])).stdout.trim());
          expect(fs.readlinkSync(`/proc/${daemons[0]}/ns/pid`)).toBe(fs.readlinkSync(`/proc/${init}/ns/pid`));
        }
        if (driver === 'copy') expect(fs.existsSync(path.join(dir, 'rootfs', 'bin', 'busybox'))).toBe(true);
        await sb.ok(['rm', '-f', id]);
        for (const pid of daemons) expect(alive(pid), `fuse-overlayfs ${pid} is still there`).toBe(false);
        expect(storeDaemons()).toEqual([]);
        expect(fs.existsSync(dir)).toBe(false);
        expect(fs.existsSync(path.join(sb.root, 'containers', id))).toBe(false);
      });
    });
  }

  it('BURROW_STORAGE_DRIVER chooses like the flag; the flag wins', async () => {
    const r = await sb.burrow(['run', '--rm', ref, 'sh', '-c', ROOT_FSTYPE], { env: { BURROW_STORAGE_DRIVER: 'copy' } });
    expect(r.code, r.stderr).toBe(0);
    checkRootFs('copy', r.stdout.trim());
    const f = await sb.burrow(['--storage-driver', 'fuse-overlayfs', 'run', '--rm', ref, 'sh', '-c', ROOT_FSTYPE], { env: { BURROW_STORAGE_DRIVER: 'copy' } });
    expect(f.code, f.stderr).toBe(0);
    checkRootFs('fuse-overlayfs', f.stdout.trim());
  });

  it('an unknown driver or one that cannot work here is refused with exit 125, the cause and the fix; nothing is created', async () => {
    const flag = await sb.burrow(['--storage-driver', 'zfs', 'run', '--rm', ref, 'true']);
    expect(flag.code).toBe(125);
    expect(flag.stderr).toMatch(/--storage-driver.*zfs.*overlay, fuse-overlayfs, copy/);
    const env = await sb.burrow(['run', '--rm', ref, 'true'], { env: { BURROW_STORAGE_DRIVER: 'zfs' } });
    expect(env.code).toBe(125);
    expect(env.stderr).toMatch(/BURROW_STORAGE_DRIVER=zfs/);
    // A host without fuse-overlayfs: a PATH where it is not.
    const empty = fs.mkdtempSync(path.join(sb.dir, 'empty-path-'));
    const missing = await sb.burrow(['--storage-driver', 'fuse-overlayfs', 'run', '--rm', ref, 'true'], { env: { PATH: empty } });
    expect(missing.code).toBe(125);
    expect(missing.stderr).toMatch(/storage driver fuse-overlayfs cannot work here: the fuse-overlayfs program is not installed/);
    expect(missing.stderr).toMatch(/fix: install it .*apt-get install fuse-overlayfs.*--storage-driver overlay\|fuse-overlayfs\|copy/);
    expect((await sb.ok(['ps', '-aq'])).stdout).toBe('');
    expect(fs.readdirSync(path.join(sb.root, 'containers')).filter((n) => !n.startsWith('.'))).toEqual([]);
  });
});

const user = testUser();

describe.runIf(IS_ROOT && user)('fuse-overlayfs for an unprivileged user when /dev/fuse is not open to them', () => {
  it('is refused with exit 125 naming /dev/fuse and the chmod fix', () => {
    const store = fs.mkdtempSync(path.join(work, 'user-store-'));
    fs.chownSync(store, user!.uid, user!.gid);
    fs.chmodSync(work, 0o755);
    const original = fs.statSync('/dev/fuse').mode & 0o7777;
    const as = (args: string[]) => burrow(['--root', path.join(store, 'root'), '--runroot', path.join(store, 'run'), ...args], { as: user });
    try {
      const pull = as(['pull', '-q', ref]);
      expect(pull.code, pull.stderr).toBe(0);
      fs.chmodSync('/dev/fuse', 0o600);
      const r = as(['--storage-driver', 'fuse-overlayfs', 'run', '--rm', ref, 'true']);
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(/storage driver fuse-overlayfs cannot work here: \/dev\/fuse cannot be opened by this user \(EACCES; mode 0600\)/);
      expect(r.stderr).toMatch(/fix: .*chmod 0666 \/dev\/fuse/);
      expect(as(['ps', '-aq']).stdout).toBe('');
    } finally {
      fs.chmodSync('/dev/fuse', original);
      // Root may delete the files of the user's subordinate ids.
      fs.rmSync(store, { recursive: true, force: true });
    }
  });
});
