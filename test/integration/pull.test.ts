/**
 * `burrow pull` and the local image commands, end to end: the real CLI against Debian's
 * docker-registry (test/harness/registry.mjs) in its four modes, with images the harness builds
 * from busybox-static (test/harness/images.mjs). Each test has its own store, runtime root and
 * HOME under os.tmpdir(); runs as root and as the unprivileged test user.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostPlatform } from '../../ts/image/manifest';
import { IS_ROOT } from './helpers';
import { checkBlobs, endImageTest, exec, layerRecords, sandbox, sha256, sha256FileSync, startProxy, tmpdir } from './image-helpers';
import { blobDataPath, startRegistry, type RegistryByMode } from '../harness/registry.mjs';
import { buildHostileImages, buildImage, buildMainImage, buildMultiPlatformImage, buildSmallImage, HOSTILE, pushImage, tarDirectory, ustar } from '../harness/images.mjs';
import type { BuiltImage, HostileImage, HostileName, MainImage, MultiPlatformImage } from '../harness/images.mjs';

const MiB = 1024 * 1024;
const work = fs.mkdtempSync(path.join(tmpdir(), 'burrow-pull-test-'));
/** One per mode, started by beforeAll (no test runs when it fails); afterAll stops those that started. */
const registries = {} as RegistryByMode;
let main: MainImage;
let multi: MultiPlatformImage;
let tamper: BuiltImage;
let hostile: Record<HostileName, HostileImage>;
let mixed: BuiltImage;

const HOST_ARCH = hostPlatform().architecture === 'arm64' ? 'arm64' : 'amd64';
const OTHER_ARCH = HOST_ARCH === 'amd64' ? 'arm64' : 'amd64';

beforeAll(async () => {
  main = buildMainImage(path.join(work, 'main'), { tag: 'v1' });
  multi = buildMultiPlatformImage(path.join(work, 'multi'));
  tamper = buildSmallImage(path.join(work, 'tamper'), { tag: 't' });
  hostile = buildHostileImages(path.join(work, 'hostile'));
  // A hostile layer next to a large one: the refusal comes while the large one downloads.
  const m = path.join(work, 'mixed-src');
  fs.mkdirSync(path.join(m, 'big', 'big'), { recursive: true });
  fs.writeFileSync(path.join(m, 'bad.tar'), ustar(HOSTILE.dotdot.entries));
  fs.writeFileSync(path.join(m, 'big', 'big', 'random.bin'), crypto.randomBytes(24 * MiB));
  mixed = buildImage(path.join(work, 'mixed'), {
    tag: 'latest',
    layers: [
      { tar: path.join(m, 'bad.tar'), compression: 'gzip', comment: 'hostile' },
      { tar: tarDirectory(path.join(m, 'big'), path.join(m, 'big.tar')), compression: 'gzip', comment: 'large' },
    ],
  });
  registries.anonymous = await startRegistry({ mode: 'anonymous' });
  registries.htpasswd = await startRegistry({ mode: 'htpasswd' });
  registries.token = await startRegistry({ mode: 'token' });
  registries.tls = await startRegistry({ mode: 'tls' });
  const { anonymous, htpasswd, token, tls } = registries;
  await Promise.all([
    pushImage(anonymous, main, 'test/main'),
    pushImage(anonymous, multi, 'test/multi'),
    pushImage(anonymous, tamper, 'test/tamper'),
    ...Object.values(hostile).map((h) => pushImage(anonymous, h, `hostile/${h.name}`)),
    pushImage(anonymous, mixed, 'hostile/mixed'),
    pushImage(htpasswd, multi, 'test/multi'),
    pushImage(token, multi, 'test/multi'),
    pushImage(tls, multi, 'test/multi'),
  ]);
}, 120_000);

afterAll(() => endImageTest(work, Object.values(registries)));

const anon = (rest: string): string => `${registries.anonymous.host}/${rest}`;

// ---- rootfs comparison -----------------------------------------------------------------------

interface Entry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  sha?: string;
  target?: string;
  mtime?: number;
  ino: number;
  nlink: number;
}

const TYPES: Record<number, string> = { 0o040000: 'dir', 0o100000: 'file', 0o120000: 'symlink', 0o020000: 'char', 0o060000: 'block', 0o010000: 'fifo', 0o140000: 'socket' };
const typeOf = (mode: number): string => TYPES[mode & 0o170000] ?? 'unknown';

/** What the comparison looks at: kind, permission bits, owner, and for files size and content,
 * for symlinks the target, for non-directories the mtime. Directory mtimes and sizes are left
 * out: the runtime adds mount points to /etc (changing its mtime), and sizes of directories
 * depend on the filesystem. */
function view(e: Entry): object {
  return {
    type: e.type,
    mode: (e.mode & 0o7777).toString(8),
    owner: `${e.uid}:${e.gid}`,
    ...(e.type === 'file' ? { size: e.size, sha: e.sha } : {}),
    ...(e.type === 'symlink' ? { target: e.target } : {}),
    ...(e.type !== 'dir' ? { mtime: e.mtime } : {}),
  };
}

/** Sets of paths that are one inode (hard links), as sorted lists. */
function linkGroups(tree: Map<string, Entry>): string[][] {
  const by = new Map<number, string[]>();
  for (const [p, e] of tree) if (e.type === 'file' && e.nlink > 1) by.set(e.ino, [...(by.get(e.ino) ?? []), p]);
  return [...by.values()].map((g) => g.sort()).sort((a, b) => a[0]!.localeCompare(b[0]!));
}

/** The shell script run in the container: mount points, then stat/readlink/sha256 of every entry. */
const OBSERVE = [
  'echo @@mounts; cut -d" " -f5 /proc/self/mountinfo',
  'echo @@stat; find / -xdev -exec stat -c "%n|%f|%u|%g|%s|%h|%i|%Y" {} +',
  'echo @@links; find / -xdev -type l -exec stat -c "%N" {} +',
  'echo @@sums; find / -xdev -type f -exec sha256sum {} +',
].join('; ');

const rel = (p: string): string => p.replace(/^\/+/, '');

/** Parses OBSERVE's output into path → entry (paths relative to /), and the mount points. */
function parseObserved(out: string): { tree: Map<string, Entry>; mounts: string[] } {
  const tree = new Map<string, Entry>();
  const mounts: string[] = [];
  let section = '';
  for (const line of out.split('\n')) {
    if (line.startsWith('@@')) {
      section = line.slice(2);
      continue;
    }
    if (!line) continue;
    if (section === 'mounts') mounts.push(rel(line));
    else if (section === 'stat') {
      const [name = '', hex = '0', uid, gid, size, nlink, ino, mtime] = line.split('|');
      const mode = parseInt(hex, 16);
      tree.set(rel(name), { type: typeOf(mode), mode, uid: Number(uid), gid: Number(gid), size: Number(size), nlink: Number(nlink), ino: Number(ino), mtime: Number(mtime) });
    } else if (section === 'links') {
      const m = /^'(.*)' -> '(.*)'$/.exec(line);
      if (!m) throw new Error(`unexpected stat %N line: ${line}`);
      tree.get(rel(m[1]!))!.target = m[2]!;
    } else if (section === 'sums') {
      const m = /^([a-f0-9]{64}) {2}(.*)$/.exec(line);
      if (!m) throw new Error(`unexpected sha256sum line: ${line}`);
      const e = tree.get(rel(m[2]!));
      if (e) e.sha = `sha256:${m[1]}`;
    }
  }
  return { tree, mounts };
}

/** go-mtree's vis encoding of names: `\NNN` octal escapes. */
const unvis = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/**
 * Owners umoci recorded for a rootless unpack: it cannot chown, so it keeps each file's image
 * owner in the `user.rootlesscontainers` xattr (a protobuf: field 1 uid, field 2 gid; absent
 * means 0:0), which its mtree manifest lists. Returns path → [uid, gid] for files not 0:0.
 */
function umociOwners(mtreeFile: string): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  const stack: string[] = [];
  let defaults: Record<string, string> = {};
  for (const raw of fs.readFileSync(mtreeFile, 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [first = '', ...kws] = line.split(/\s+/);
    const kv = Object.fromEntries(kws.map((k) => [k.slice(0, k.indexOf('=')), k.slice(k.indexOf('=') + 1)]));
    if (first === '/set') {
      defaults = { ...defaults, ...kv };
      continue;
    }
    if (first === '/unset') continue;
    if (first === '..') {
      stack.pop();
      continue;
    }
    const name = unvis(first);
    const p = name === '.' ? '' : [...stack, name].join('/');
    const all = { ...defaults, ...kv };
    const x = all['xattr.user.rootlesscontainers'];
    if (x) {
      const b = Buffer.from(x, 'base64');
      const ids: Record<number, number> = {};
      for (let i = 0; i < b.length; ) {
        const field = b[i++]! >> 3;
        let v = 0;
        for (let shift = 0; ; shift += 7) {
          const byte = b[i++]!;
          v += (byte & 0x7f) * 2 ** shift;
          if (!(byte & 0x80)) break;
        }
        ids[field] = v;
      }
      out.set(p, [ids[1] ?? 0, ids[2] ?? 0]);
    }
    if (all.type === 'dir' && name !== '.') stack.push(name);
  }
  return out;
}

/** Walks umoci's rootfs on the host. */
function walkUmoci(rootfs: string, owners: Map<string, [number, number]>): Map<string, Entry> {
  const tree = new Map<string, Entry>();
  const visit = (p: string): void => {
    const abs = path.join(rootfs, p);
    const st = fs.lstatSync(abs);
    const [uid, gid] = owners.get(p) ?? [0, 0];
    const e: Entry = { type: typeOf(st.mode), mode: st.mode, uid, gid, size: st.size, nlink: st.nlink, ino: st.ino, mtime: Math.floor(st.mtimeMs / 1000) };
    if (e.type === 'symlink') e.target = fs.readlinkSync(abs);
    if (e.type === 'file') e.sha = sha256FileSync(abs);
    tree.set(p, e);
    if (e.type === 'dir') for (const n of fs.readdirSync(abs)) visit(p ? `${p}/${n}` : n);
  };
  visit('');
  return tree;
}

describe('pull from an anonymous registry', () => {
  it('unpacks the main image exactly as skopeo + umoci do, file by file, seen from inside a container', async () => {
    // Why this comparison: burrow's layers are overlay lower directories with whiteouts as 0/0
    // character devices and opaque xattrs, and their owners are shifted into the store's
    // subordinate range when rootless; reading those directories would test our reading of
    // them. What matters is what a container sees, so the burrow side is observed from inside
    // `burrow run` (find/stat/sha256sum over the overlay root, ids as the container's user
    // namespace maps them). The reference is an independent implementation: skopeo copies the
    // image to an OCI layout and umoci unpacks it rootless onto one tree, applying whiteouts
    // itself, with image owners kept in its rootless xattrs. umoci 0.4 cannot read zstd layers,
    // so skopeo recompresses that layer to gzip; diff ids (the uncompressed tars) are unchanged.
    const sb = sandbox(work, 'compare');
    const ref = anon('test/main:v1');
    const pull = await sb.ok(['pull', '-q', ref]);
    console.log(`burrow pull of the main image (${main.layers.length} layers, ${(main.layers.reduce((s: number, l: { size: number }) => s + l.size, 0) / MiB).toFixed(1)} MiB): ${pull.ms} ms`);
    expect(pull.stdout.trim()).toBe(main.config.digest);

    const layout = path.join(sb.dir, 'oci');
    const bundle = path.join(sb.dir, 'bundle');
    const tools = { env: { ...sb.env, TMPDIR: sb.dir }, timeoutMs: 60_000 };
    const copy = await exec('skopeo', ['--insecure-policy', 'copy', '--quiet', '--src-tls-verify=false', '--dest-compress', '--dest-compress-format', 'gzip', `docker://${ref}`, `oci:${layout}:v1`], tools);
    expect(copy.stderr).toBe('');
    expect(copy.code).toBe(0);
    const unpack = await exec('umoci', ['unpack', '--rootless', '--image', `${layout}:v1`, bundle], tools);
    expect(unpack.code, unpack.stderr).toBe(0);
    const mtree = fs.readdirSync(bundle).find((n) => n.endsWith('.mtree'))!;
    const expected = walkUmoci(path.join(bundle, 'rootfs'), umociOwners(path.join(bundle, mtree)));

    const run = await sb.burrow(['run', '--rm', ref, 'sh', '-c', OBSERVE]);
    expect(run.code, run.stderr).toBe(0);
    const { tree: seen, mounts } = parseObserved(run.stdout);

    // Mount points are the runtime's, not the image's: /proc, /dev, /sys are directories in
    // the image too (compared by kind only); /etc/hosts and friends are not in it at all.
    for (const m of mounts.filter((x) => x !== '' && seen.has(x))) {
      if (expected.has(m)) {
        expect(seen.get(m)!.type, m).toBe(expected.get(m)!.type);
        expected.delete(m);
      }
      seen.delete(m);
    }
    expect(mounts).toEqual(expect.arrayContaining(['proc', 'etc/hosts']));

    const asObject = (t: Map<string, Entry>): Record<string, object> => Object.fromEntries([...t].sort(([a], [b]) => a.localeCompare(b)).map(([p, e]) => [p, view(e)]));
    expect(seen.size).toBeGreaterThan(250); // busybox's applet links and the rest
    expect(asObject(seen)).toEqual(asObject(expected));
    expect(linkGroups(seen)).toEqual(linkGroups(expected));
    expect(linkGroups(seen)).toEqual(main.expect.hardlinks.map((g: string[]) => [...g].sort()));

    // And what the harness says the image must look like.
    for (const p of main.expect.present) expect(seen.has(p), p).toBe(true);
    for (const p of main.expect.absent) expect(seen.has(p), p).toBe(false);
    for (const [p, t] of Object.entries(main.expect.symlinks)) expect(seen.get(p)?.target, p).toBe(t);
    // Owners as the image says, inside the container: as root they are the files' real owners;
    // rootless (uid map 0:me:1,1:subuid:65536) uid 33 and 1000 live in the subordinate range
    // on the host and map back to 33 and 1000 inside.
    for (const [p, uid] of Object.entries(main.expect.owners)) expect(seen.get(p)?.uid, p).toBe(uid);
    for (const [p, c] of Object.entries(main.expect.contents)) expect(seen.get(p)?.sha, p).toBe(sha256(c as string));
    expect(seen.get(main.expect.big.path)).toMatchObject({ size: main.expect.big.size, sha: main.expect.big.digest });
    expect([...seen.keys()].filter((p) => p.startsWith('opaque/'))).toEqual(['opaque/new.txt']);
    const settings = sb.settings();
    expect(settings.idMode).toBe(IS_ROOT ? 'root' : 'subuid');
    if (!IS_ROOT) {
      // On the host, the layer file of uid 1000 belongs to the subordinate id 1000 maps to.
      const sub = settings.uidMap.find(([c, , n]) => c <= 1000 && 1000 < c + n)!;
      const layer = main.layers[0]!.diffId.slice(7);
      expect(fs.statSync(path.join(sb.root, 'layers', layer, 'home', 'user', 'notes.txt')).uid).toBe(sub[1] + 1000 - sub[0]);
    }
  });

  it('picks this host from a multi-platform index, or the platform asked for', async () => {
    const sb = sandbox(work, 'multi');
    const ref = anon('test/multi:multi');
    const mine = (await sb.ok(['pull', '-q', ref])).stdout.trim();
    expect(mine).toBe(multi.images[HOST_ARCH].config.digest);
    const arch = async (id: string): Promise<string> => (await sb.ok(['inspect', '--type', 'image', '--format', '{{.Architecture}} {{.Os}} {{.Variant}}', id])).stdout.trim();
    expect(await arch(mine)).toMatch(new RegExp(`^${HOST_ARCH} linux`));
    const other = (await sb.ok(['pull', '-q', '--platform', `linux/${OTHER_ARCH}`, ref])).stdout.trim();
    expect(other).toBe(multi.images[OTHER_ARCH].config.digest);
    expect(await arch(other)).toBe(OTHER_ARCH === 'arm64' ? 'arm64 linux v8' : 'amd64 linux <no value>');
    // The layer unpacked is that platform's.
    const diffId = multi.images[OTHER_ARCH].layers[0]!.diffId.slice(7);
    expect(fs.readFileSync(path.join(sb.root, 'layers', diffId, 'arch'), 'utf8')).toBe(`${OTHER_ARCH}\n`);
    // The tag follows the last pull, as in Docker; the other image stays, untagged, with the
    // index digest it was pulled by.
    const rows = (await sb.ok(['images', '--no-trunc', '--format', '{{.Repository}} {{.Tag}} {{.ID}} {{.Digest}}'])).stdout.trim().split('\n').sort();
    expect(rows).toEqual(
      [`${registries.anonymous.host}/test/multi multi ${other} ${multi.index.digest}`, `${registries.anonymous.host}/test/multi <none> ${mine} ${multi.index.digest}`].sort(),
    );
    const bad = await sb.burrow(['pull', '-q', '--platform', 'linux/s390x', ref]);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/s390x/);
  });

  it('refuses hostile layers with a message naming the entry, writes nothing outside the store and trusts nothing', async () => {
    const cases: Record<Exclude<HostileName, 'device'>, RegExp> = {
      dotdot: /layer entry "\.\.\/escape-dotdot\.txt" is unsafe: it contains '\.\.'/,
      absolute: /layer entry "\/escape-absolute\.txt" is unsafe: it is an absolute path/,
      symlink: /layer entry "link\/evil" is unsafe: its directory is reached through a symlink that leaves the layer/,
      hardlink: /layer entry "passwd-link" is unsafe: hard link to \/etc\/passwd leaves the layer/,
      whiteout: /layer entry "dir\/\.wh\.\.\." is unsafe: a whiteout must name a file, not '\.' or '\.\.'/,
    };
    // Where the entries aim: the absolute paths they name, and the directories around the
    // store (`../` from a layer directory climbs towards them).
    const targets = ['/escape-absolute.txt', '/tmp/burrow-escape-absolute.txt', '/tmp/burrow-hostile-x', '/tmp/burrow-hostile-evil2', '/tmp/escape-dotdot.txt', '/tmp/escape-dotdot2.txt'];
    for (const t of targets) expect(fs.existsSync(t), `${t} exists before the test`).toBe(false);
    const passwd = fs.statSync('/etc/passwd');
    const snapshot = (dir: string, skip: string): string[] => {
      const out: string[] = [];
      const walk = (d: string): void => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
          const p = path.join(d, e.name);
          if (p === skip) continue;
          const st = fs.lstatSync(p);
          out.push(`${path.relative(dir, p)} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs}`);
          if (e.isDirectory()) walk(p);
        }
      };
      walk(dir);
      return out.sort();
    };
    await Promise.all(
      (Object.entries(cases) as [keyof typeof cases, RegExp][]).map(async ([name, message]) => {
        // The store sits inside a canary directory with a file of its own.
        const sb = sandbox(work, `hostile-${name}`);
        fs.writeFileSync(path.join(sb.dir, 'canary.txt'), 'untouched\n');
        // burrow's first command in a HOME writes its code cache there (bin/burrow.js): let that
        // happen before the snapshot, so that the pull is judged alone.
        await sb.ok(['images', '-q']);
        const before = snapshot(sb.dir, sb.root);
        const h = hostile[name];
        const r = await sb.burrow(['pull', anon(`hostile/${name}:latest`)]);
        expect(r.code, `${name}: ${r.stderr}`).toBe(125);
        expect(r.stderr, name).toMatch(message);
        expect(r.stderr, name).toContain(`hostile/${name}:latest: layer 1 of 1 (${h.layers[0]!.digest})`);
        expect(r.stderr, name).toMatch(/^fix: .*refuses to use it/m);
        expect(snapshot(sb.dir, sb.root), name).toEqual(before);
        // Nothing trusted: no image, no layer record or directory, no temporary tree left.
        expect((await sb.ok(['images', '-q'])).stdout, name).toBe('');
        expect(fs.readdirSync(path.join(sb.root, 'layers')), name).toEqual([]);
        expect(fs.readdirSync(path.join(sb.root, 'images')), name).toEqual([]);
        expect(fs.readdirSync(path.join(sb.root, 'tmp')), name).toEqual([]);
        expect(checkBlobs(sb.root).bad, name).toEqual([]);
        const run = await sb.burrow(['run', '--rm', anon(`hostile/${name}:latest`), 'true']);
        expect(run.code, name).toBe(125);
      }),
    );
    for (const t of targets) expect(fs.existsSync(t), t).toBe(false);
    const after = fs.statSync('/etc/passwd');
    expect([after.nlink, after.size, after.mtimeMs]).toEqual([passwd.nlink, passwd.size, passwd.mtimeMs]);

    // Device nodes cannot be made rootless and are never made from an image: skipped, with a
    // warning, and the rest of the layer (a fifo) is there.
    const sb = sandbox(work, 'hostile-device');
    const r = await sb.burrow(['pull', anon('hostile/device:latest')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: device nodes in the layer were skipped/);
    const dir = path.join(sb.root, 'layers', hostile.device.layers[0]!.diffId.slice(7));
    expect(fs.existsSync(`${dir}.json`)).toBe(true);
    expect(fs.lstatSync(path.join(dir, 'dev', 'fifo')).isFIFO()).toBe(true);
    expect(fs.existsSync(path.join(dir, 'dev', 'evil-mem'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'dev', 'evil-sda'))).toBe(false);
  });

  it('stops the other downloads when a layer is refused, and fails cleanly (no crash, nothing trusted)', async () => {
    // The large layer takes 3 s: the refusal comes long before.
    const proxy = await startProxy(registries.anonymous.host, { rate: 8 * MiB });
    const sb = sandbox(work, 'mixed');
    const r = await sb.burrow(['pull', `${proxy.host}/hostile/mixed:latest`]);
    expect(r.code, r.stderr).toBe(125);
    expect(r.stderr).toMatch(/hostile\/mixed:latest: layer 1 of 2 \(sha256:[a-f0-9]{64}\): layer entry "\.\.\/escape-dotdot\.txt" is unsafe/);
    expect(r.stderr).not.toMatch(/\n\s+at |UnhandledPromiseRejection|Node\.js v/);
    const big = mixed.layers[1]!;
    // The large download was stopped, not waited for: less than that layer went through the
    // proxy, and nothing more flows once the pull has exited (its connection is closed).
    const sent = proxy.bytesDown;
    expect(sent).toBeLessThan(big.size);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(proxy.bytesDown).toBe(sent);
    expect(fs.existsSync(path.join(sb.root, 'blobs', 'sha256', big.digest.slice(7)))).toBe(false);
    // What arrived of the large layer, if its download had begun before the refusal stopped it,
    // is kept for a later pull to resume; it is never complete, and nothing is trusted.
    const partial = path.join(sb.root, 'blobs', 'sha256', `${big.digest.slice(7)}.partial`);
    if (fs.existsSync(partial)) expect(fs.statSync(partial).size).toBeLessThan(big.size);
    expect(fs.readdirSync(path.join(sb.root, 'layers'))).toEqual([]);
    expect(fs.readdirSync(path.join(sb.root, 'images'))).toEqual([]);
    expect(fs.readdirSync(path.join(sb.root, 'tmp'))).toEqual([]);
  });

  it('reports a tampered blob as a digest mismatch, keeps nothing of it, and pulls once it is repaired', async () => {
    const sb = sandbox(work, 'tamper');
    const layer = tamper.layers[0]!;
    const data = blobDataPath(registries.anonymous, layer.digest);
    const good = fs.readFileSync(data);
    const bad = Buffer.from(good);
    bad.writeUInt8(bad.readUInt8(bad.length >> 1) ^ 0xff, bad.length >> 1); // same size, other content
    fs.writeFileSync(data, bad);
    try {
      const r = await sb.burrow(['pull', '-q', anon('test/tamper:t')]);
      expect(r.code).toBe(125);
      expect(r.stderr).toContain(`blob ${layer.digest} from ${registries.anonymous.host}/test/tamper failed verification: expected digest ${layer.digest}, got ${sha256(bad)}`);
      expect(fs.existsSync(path.join(sb.root, 'blobs', 'sha256', layer.digest.slice(7)))).toBe(false);
      expect(checkBlobs(sb.root).bad).toEqual([]);
      expect(Object.keys(layerRecords(sb.root))).toEqual([]);
      expect((await sb.ok(['images', '-q'])).stdout).toBe('');
    } finally {
      fs.writeFileSync(data, good);
    }
    const r = await sb.ok(['pull', '-q', anon('test/tamper:t')]);
    expect(r.stdout.trim()).toBe(tamper.config.digest);
    expect(Object.keys(layerRecords(sb.root))).toEqual([layer.diffId.slice(7)]);
  });
});

describe('a killed pull', () => {
  it('leaves nothing a later pull trusts; the next pull resumes and ends with the same image', async () => {
    const big = main.layers[3]!;
    const proxy = await startProxy(registries.anonymous.host, { rate: 16 * MiB });
    const ref = `${proxy.host}/test/main:v1`;
    const sb = sandbox(work, 'killed');
    const partial = path.join(sb.root, 'blobs', 'sha256', `${big.digest.slice(7)}.partial`);
    let pid = 0;
    let killedAt = -1;
    // The pull runs in its own process group, so that SIGKILL takes the CLI and any unpack it
    // has running at once, as a killed job or a lost session would.
    const running = sb.burrow(['pull', '-q', ref], { detached: true, onSpawn: (p) => (pid = p) });
    const poll = setInterval(() => {
      const size = fs.statSync(partial, { throwIfNoEntry: false })?.size ?? 0;
      const layersDone = Object.keys(layerRecords(sb.root)).length;
      if (killedAt < 0 && pid && size >= 12 * MiB && (layersDone > 0 || size >= 40 * MiB)) {
        killedAt = size;
        process.kill(-pid, 'SIGKILL');
      }
    }, 10);
    const r = await running.finally(() => clearInterval(poll));
    expect(r.signal, `the pull ended before it was killed: ${r.stderr}`).toBe('SIGKILL');
    expect(killedAt).toBeGreaterThan(0);
    const before = layerRecords(sb.root);
    expect(Object.keys(before).length).toBeGreaterThan(0);
    expect(Object.keys(before)).not.toContain(big.diffId.slice(7));
    expect(fs.readdirSync(path.join(sb.root, 'images'))).toEqual([]);
    expect((await sb.ok(['images', '-q'])).stdout).toBe('');
    expect(fs.statSync(partial).size).toBeGreaterThanOrEqual(killedAt);

    // What an unpack killed half-way leaves (named, as all temporary trees, by the pid of the
    // process that made it, now dead): the next pull removes it.
    const stale = path.join(sb.root, 'tmp', `layer-${pid}-${'d'.repeat(12)}-x1y2z3`);
    fs.mkdirSync(path.join(stale, 'diff', 'etc'), { recursive: true });
    fs.writeFileSync(path.join(stale, 'diff', 'etc', 'half-written'), 'x');

    proxy.rate = undefined;
    proxy.bytesDown = 0;
    const again = await sb.ok(['pull', '-q', ref]);
    expect(again.stdout.trim()).toBe(main.config.digest);
    // The .partial was continued, not downloaded again.
    expect(proxy.bytesDown).toBeLessThan(big.size - killedAt + 4 * MiB);
    const after = layerRecords(sb.root);
    for (const [k, v] of Object.entries(before)) expect(after[k], 'a layer committed before the kill is kept as it was').toEqual(v);

    // The same as a pull that was never interrupted.
    const ref2 = sandbox(work, 'uninterrupted');
    expect((await ref2.ok(['pull', '-q', anon('test/main:v1')])).stdout.trim()).toBe(main.config.digest);
    const strip = (recs: Record<string, Record<string, unknown>>): object => Object.fromEntries(Object.entries(recs).map(([k, { unpackedAt: _u, ...v }]) => [k, v]));
    expect(strip(after)).toEqual(strip(layerRecords(ref2.root)));
    expect(Object.keys(after).sort()).toEqual(main.layers.map((l: { diffId: string }) => l.diffId.slice(7)).sort());
    const rec = (root: string): Record<string, unknown> => JSON.parse(fs.readFileSync(path.join(root, 'images', `${main.config.digest.slice(7)}.json`), 'utf8'));
    expect(rec(sb.root).layers).toEqual(rec(ref2.root).layers);
    expect(rec(sb.root).manifestDigest).toBe(main.manifest.digest);

    // No leftovers: no temporary trees, no half-written files, every blob what its name says,
    // every layer directory recorded.
    expect(fs.readdirSync(path.join(sb.root, 'tmp'))).toEqual([]);
    expect(checkBlobs(sb.root).bad).toEqual([]);
    const layerDir = fs.readdirSync(path.join(sb.root, 'layers'));
    expect(layerDir.filter((n) => !n.endsWith('.json')).sort()).toEqual(layerDir.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5)).sort());
    const sum = await sb.burrow(['run', '--rm', ref, 'sha256sum', `/${main.expect.big.path}`]);
    expect(sum.code, sum.stderr).toBe(0);
    expect(`sha256:${sum.stdout.split(' ')[0]}`).toBe(main.expect.big.digest);
  });
});

describe('local images', () => {
  it('images -q/--digests/--format, a second pull that reuses every layer, tag, and rmi guarding images in use', async () => {
    const sb = sandbox(work, 'local');
    const ref = anon('test/main:v1');
    const repo = anon('test/main');
    const id = main.config.digest;
    await sb.ok(['pull', '-q', ref]);
    const stamp = (): Record<string, number> => Object.fromEntries(fs.readdirSync(path.join(sb.root, 'layers')).map((n) => [n, fs.statSync(path.join(sb.root, 'layers', n)).mtimeMs]));
    const recs = layerRecords(sb.root);
    const stamps = stamp();
    const second = await sb.ok(['pull', ref]);
    expect(second.stderr.match(/: Already exists/g)).toHaveLength(main.layers.length);
    expect(second.stderr).not.toMatch(/Download complete|Pull complete/);
    expect(layerRecords(sb.root)).toEqual(recs);
    expect(stamp()).toEqual(stamps);

    expect((await sb.ok(['images', '-q'])).stdout).toBe(`${id.slice(7, 19)}\n`);
    expect((await sb.ok(['images', '-q', '--no-trunc'])).stdout).toBe(`${id}\n`);
    const table = (await sb.ok(['images', '--digests'])).stdout.split('\n');
    expect(table[0]).toMatch(/^REPOSITORY\s+TAG\s+DIGEST\s+IMAGE ID\s+CREATED\s+SIZE$/);
    expect(table[1]).toMatch(new RegExp(`^${repo}\\s+v1\\s+${main.manifest.digest}\\s+${id.slice(7, 19)}\\s+`));
    expect((await sb.ok(['images', '--format', '{{.Repository}}|{{.Tag}}|{{.ID}}|{{.Digest}}'])).stdout).toBe(`${repo}|v1|${id.slice(7, 19)}|${main.manifest.digest}\n`);
    const json = JSON.parse((await sb.ok(['images', '--format', 'json'])).stdout);
    expect(json).toMatchObject({ Repository: repo, Tag: 'v1', Digest: main.manifest.digest });
    const t = (await sb.ok(['images', '--format', 'table {{.Repository}} {{.Tag}}'])).stdout.split('\n');
    expect(t.slice(0, 2)).toEqual(['REPOSITORY TAG', `${repo} v1`]);

    await sb.ok(['tag', ref, 'mine']);
    await sb.ok(['tag', id.slice(7, 19), 'other/name:2']);
    const names = (await sb.ok(['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}'])).stdout.trim().split('\n').sort();
    expect(names).toEqual([`mine:latest ${id.slice(7, 19)}`, `other/name:2 ${id.slice(7, 19)}`, `${repo}:v1 ${id.slice(7, 19)}`].sort());
    // An id names every tag: refused without -f, as in Docker.
    const byId = await sb.burrow(['rmi', id.slice(7, 19)]);
    expect(byId.code).not.toBe(0);
    expect(byId.stderr).toMatch(/referenced by several names/);
    // Named as `images` shows them (Docker Hub's names short).
    expect((await sb.ok(['rmi', 'mine'])).stdout).toBe('Untagged: mine:latest\n');
    expect((await sb.ok(['rmi', 'other/name:2'])).stdout).toBe('Untagged: other/name:2\n');

    // An image a container uses is kept unless -f.
    const ctr = (await sb.ok(['create', ref, 'true'])).stdout.trim();
    const inUse = await sb.burrow(['rmi', ref]);
    expect(inUse.code).not.toBe(0);
    expect(inUse.stderr).toContain(`in use by container ${ctr.slice(0, 12)}`);
    expect((await sb.ok(['images', '-q'])).stdout).toBe(`${id.slice(7, 19)}\n`);
    const forced = await sb.ok(['rmi', '-f', ref]);
    expect(forced.stdout).toBe(`Untagged: ${ref}\nDeleted: ${id}\n`);
    expect((await sb.ok(['images', '-q'])).stdout).toBe('');
    await sb.ok(['rm', ctr]);
    const gone = await sb.burrow(['rmi', ref]);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toMatch(/no such image/);
  });
});

describe('authenticated and TLS registries', () => {
  it('pulls from an htpasswd registry after `burrow login`', async () => {
    const r = registries.htpasswd;
    const sb = sandbox(work, 'htpasswd');
    const ref = `${r.host}/test/multi:multi`;
    const denied = await sb.burrow(['pull', '-q', ref]);
    expect(denied.code).toBe(125);
    expect(denied.stderr).toContain(`fix: burrow login ${r.host}`);
    const wrong = await sb.burrow(['login', r.host, '-u', r.user, '--password-stdin'], { input: 'wrong\n' });
    expect(wrong.code).toBe(125);
    const login = await sb.ok(['login', r.host, '-u', r.user, '--password-stdin'], { input: `${r.password}\n` });
    expect(login.stdout).toBe('Login Succeeded!\n');
    const auth = path.join(sb.home, '.config', 'burrow', 'auth.json');
    expect(fs.statSync(auth).mode & 0o777).toBe(0o600);
    expect((await sb.ok(['pull', '-q', ref])).stdout.trim()).toBe(multi.images[HOST_ARCH].config.digest);
    await sb.ok(['logout', r.host]);
    expect((await sb.burrow(['pull', '-q', '--platform', `linux/${OTHER_ARCH}`, ref])).code).toBe(125);
  });

  it('pulls from a token registry after `burrow login`', async () => {
    const r = registries.token;
    const sb = sandbox(work, 'token');
    const ref = `${r.host}/test/multi:multi`;
    const denied = await sb.burrow(['pull', '-q', ref]);
    expect(denied.code).toBe(125);
    expect(denied.stderr).toContain(`fix: burrow login ${r.host}`);
    await sb.ok(['login', r.host, '-u', r.user, '-p', r.password]);
    const before = r.stats.tokenRequests;
    expect((await sb.ok(['pull', '-q', ref])).stdout.trim()).toBe(multi.images[HOST_ARCH].config.digest);
    expect(r.stats.tokenRequests).toBeGreaterThan(before);
  });

  it('pulls over TLS once the CA is in certs.d, and says where it goes until then', async () => {
    const r = registries.tls;
    const sb = sandbox(work, 'tls');
    const ref = `${r.host}/test/multi:multi`;
    const untrusted = await sb.burrow(['pull', '-q', ref]);
    expect(untrusted.code).toBe(125);
    expect(untrusted.stderr).toContain(`certs.d/${r.host}/ca.crt`);
    const dir = path.join(sb.home, '.config', 'burrow', 'certs.d', r.host);
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(r.caFile, path.join(dir, 'ca.crt'));
    expect((await sb.ok(['pull', '-q', ref])).stdout.trim()).toBe(multi.images[HOST_ARCH].config.digest);
  });
});
