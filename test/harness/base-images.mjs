// Debian base images for the build tests (issue 15), made from Debian packages by debootstrap,
// built once and cached outside the checkout (like docker-clients.mjs's downloads), as OCI image
// layouts that tests push to their loopback registry (images.mjs's pushImage) or `burrow load`
// as an OCI archive. Nothing but Debian's own mirror (an apt source of this machine) is used.
//
//   baseImage('minbase')   debootstrap --variant=minbase bookworm: bash, apt, coreutils, passwd
//   baseImage('gcc')       the same plus gcc and libc6-dev (the multi-stage C build test)
//
// Each returns {name, recipe, layout, tag, archive, config, seconds}: `layout` an OCI layout
// directory with the image tagged `tag` (pushImage(registry, image, NAME) takes it as it is),
// `archive` the same image as an oci-archive that `burrow load -i` tags `name`
// (localhost/burrow-test/debian-minbase:bookworm), `seconds` how long the first build took.
//
// Building needs root (debootstrap chroots and creates device nodes): the integration lane as
// root runs before the rootless one, and `node test/harness/base-images.mjs` (as root) builds
// both ahead of time. As the unprivileged user a missing image is an error that says so, never
// a skip. The first build takes about 2 minutes (minbase) and 3 more (gcc): see FIRST_BUILD;
// later calls only check that the cache is complete (milliseconds).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildImage } from './images.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const CACHE = process.env.BURROW_TEST_CACHE || '/var/cache/burrow-test';
/** Bump when a recipe changes: the cached images are then rebuilt under a new directory. */
const RECIPE = 2;
export const BASE_DIR = path.join(CACHE, 'base-images');
const SUITE = 'bookworm';
/**
 * Measured on the session VM (2 cores shared with other builds), debootstrap from
 * deb.debian.org: minbase 105 s with an empty package cache, gcc 194 s after it (its 30 extra
 * packages downloaded, minbase's reused from BASE_DIR/debs); with every package cached, 130 s
 * and 186 s (dpkg, not the download, is the cost); plus ~20 s each for the oci-archive and
 * removing the work tree. 82 MB of .debs, 102 MB (minbase) and 261 MB (gcc) of images.
 */
export const FIRST_BUILD = { minbase: 105, gcc: 194 };

export const RECIPES = {
  minbase: { include: [], cmd: ['bash'] },
  gcc: { include: ['gcc', 'libc6-dev'], cmd: ['bash'] },
};

const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const TAR_ARGS = ['--format=posix', '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime', '--sort=name', '--numeric-owner', '--xattrs', '--xattrs-include=security.capability'];

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26, ...opts });
}

/** The Debian mirror this machine's apt uses (so the tests need no other network). */
export function debianMirror() {
  if (process.env.BURROW_DEBIAN_MIRROR) return process.env.BURROW_DEBIAN_MIRROR;
  const files = ['/etc/apt/sources.list', ...(fs.existsSync('/etc/apt/sources.list.d') ? fs.readdirSync('/etc/apt/sources.list.d').map((f) => path.join('/etc/apt/sources.list.d', f)) : [])];
  for (const f of files) {
    let text;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    // deb822 (URIs: ... with Suites: bookworm) or one-line (deb URI bookworm main).
    for (const block of text.split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/m.exec(block)?.[1];
      const suites = /^Suites:\s*(.+)$/m.exec(block)?.[1]?.split(/\s+/) ?? [];
      if (uri && suites.includes(SUITE)) return uri;
    }
    const m = new RegExp(`^deb\\s+(?:\\[[^\\]]*\\]\\s+)?(\\S+)\\s+${SUITE}\\s`, 'm').exec(text);
    if (m) return m[1];
  }
  return 'http://deb.debian.org/debian';
}

function imageDir(name) {
  return path.join(BASE_DIR, `${name}-${SUITE}-r${RECIPE}`);
}

function readDone(dir) {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, 'done.json'), 'utf8'));
  } catch {
    return undefined;
  }
}

/** The name the archive loads as (`burrow load` takes it from io.containerd.image.name). */
export function localName(name) {
  return `localhost/burrow-test/debian-${name}:${SUITE}`;
}

function result(name, dir, done) {
  return { name: localName(name), recipe: name, layout: path.join(dir, 'oci'), tag: done.tag, archive: path.join(dir, ARCHIVE), config: done.config, seconds: done.seconds };
}

const ARCHIVE = 'image.oci.tar';

/**
 * The oci-archive of the layout, its index naming the image in full (as `docker save` and
 * burrow save write it), so that `burrow load -i` tags it localName(name).
 */
function writeArchive(name, dir, tag) {
  const layout = path.join(dir, 'oci');
  const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8'));
  index.manifests = index.manifests
    .filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag)
    .map((m) => ({ ...m, annotations: { 'org.opencontainers.image.ref.name': localName(name), 'io.containerd.image.name': localName(name) } }));
  const tmp = fs.mkdtempSync(path.join(dir, '.archive-'));
  try {
    fs.writeFileSync(path.join(tmp, 'index.json'), JSON.stringify(index));
    const out = path.join(tmp, ARCHIVE);
    sh('tar', ['-cf', out, '--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-C', layout, 'oci-layout', 'blobs', '-C', tmp, 'index.json']);
    fs.chmodSync(out, 0o644);
    fs.renameSync(out, path.join(dir, ARCHIVE));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The base image `name` ('minbase' or 'gcc'), built now if it is not in the cache (as root), else
 * from the cache. Concurrent callers wait for one builder (a lock directory with its PID).
 */
export function baseImage(name) {
  const recipe = RECIPES[name];
  if (!recipe) throw new Error(`no base image recipe "${name}" (have ${Object.keys(RECIPES).join(', ')})`);
  const dir = imageDir(name);
  let done = readDone(dir);
  if (done && fs.existsSync(path.join(dir, ARCHIVE))) return result(name, dir, done);
  if (process.getuid() !== 0) {
    throw new Error(`the Debian base image "${name}" is not in ${BASE_DIR} and only root can make it (debootstrap): run \`node test/harness/base-images.mjs\` as root, or the integration lane as root first (test/run.mjs does)`);
  }
  withLock(() => {
    done = readDone(dir);
    if (!done) {
      done = build(name, recipe, dir);
      // Images of older recipes are of no use any more.
      for (const old of fs.readdirSync(BASE_DIR)) {
        if (old.startsWith(`${name}-${SUITE}-r`) && path.join(BASE_DIR, old) !== dir) fs.rmSync(path.join(BASE_DIR, old), { recursive: true, force: true });
      }
    }
    if (!fs.existsSync(path.join(dir, ARCHIVE))) writeArchive(name, dir, done.tag);
  });
  return result(name, dir, done);
}

function withLock(fn) {
  fs.mkdirSync(BASE_DIR, { recursive: true, mode: 0o755 });
  const lock = path.join(BASE_DIR, '.lock');
  for (;;) {
    try {
      fs.mkdirSync(lock);
      fs.writeFileSync(path.join(lock, 'pid'), String(process.pid));
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      let pid = 0;
      try {
        pid = Number(fs.readFileSync(path.join(lock, 'pid'), 'utf8'));
      } catch {
        /* being written */
      }
      let alive = true;
      if (pid > 0) {
        try {
          process.kill(pid, 0);
        } catch {
          alive = false;
        }
      }
      if (!alive) fs.rmSync(lock, { recursive: true, force: true });
      else sh('sleep', ['1']);
    }
  }
  try {
    fn();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

function build(name, recipe, dir) {
  const started = process.hrtime.bigint();
  const work = fs.mkdtempSync(path.join(BASE_DIR, `.build-${name}-`));
  try {
    const rootfs = path.join(work, 'rootfs');
    const debs = path.join(BASE_DIR, 'debs');
    fs.mkdirSync(debs, { recursive: true });
    const args = ['--variant=minbase', `--cache-dir=${debs}`];
    if (recipe.include.length) args.push(`--include=${recipe.include.join(',')}`);
    try {
      sh('debootstrap', [...args, SUITE, rootfs, debianMirror()], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 30 * 60_000 });
    } catch (e) {
      if (e.code === 'ENOENT') throw new Error('debootstrap is not installed: run .ci/setup as root (apt-get install debootstrap)');
      const log = path.join(rootfs, 'debootstrap', 'debootstrap.log');
      const tail = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').slice(-20).join('\n') : '';
      throw new Error(`debootstrap of ${name} failed: ${e.stderr || e.message}\n${tail}`);
    }
    cleanRootfs(rootfs);
    // One layer: the whole tree with its owners (root, and the groups of shadow, mail, utmp...).
    const tar = path.join(work, 'rootfs.tar');
    const top = fs.readdirSync(rootfs).sort();
    sh('tar', ['-cf', tar, '-C', rootfs, ...TAR_ARGS, ...top]);
    fs.rmSync(path.join(dir), { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    const config = { Env: [PATH_ENV], Cmd: recipe.cmd };
    const tag = `${name}-${SUITE}`;
    buildImage(path.join(dir, 'oci'), { tag, layers: [{ tar, compression: 'gzip', comment: `debootstrap --variant=minbase ${recipe.include.length ? `--include=${recipe.include.join(',')} ` : ''}${SUITE}` }], config });
    sh('chmod', ['-R', 'a+rX', dir]);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const done = { tag, config, seconds: Math.round(seconds), mirror: debianMirror(), builtAt: new Date().toISOString() };
    fs.writeFileSync(path.join(dir, 'done.json'), JSON.stringify(done, null, 2));
    fs.chmodSync(path.join(dir, 'done.json'), 0o644);
    return done;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * What an image's rootfs must not carry: device nodes (a rootless unpack cannot make them, and
 * Docker's debian images have an empty /dev), the package lists and .debs, logs of the build.
 * /etc/hostname, /etc/hosts and /etc/resolv.conf are there, empty: every engine bind-mounts its
 * own over them in RUN steps, and where they are missing buildah leaves the mountpoints it made
 * in the step's layer (an empty 0755 /etc/hostname), which the podman equivalence tests would
 * otherwise have to list as a difference.
 */
function cleanRootfs(rootfs) {
  const empty = (rel) => {
    const p = path.join(rootfs, rel);
    if (!fs.existsSync(p)) return;
    for (const e of fs.readdirSync(p)) fs.rmSync(path.join(p, e), { recursive: true, force: true });
  };
  for (const d of ['dev', 'proc', 'sys', 'run', 'tmp', 'var/tmp', 'var/lib/apt/lists', 'var/cache/apt/archives', 'var/log']) empty(d);
  fs.mkdirSync(path.join(rootfs, 'var/lib/apt/lists/partial'), { recursive: true });
  fs.mkdirSync(path.join(rootfs, 'var/cache/apt/archives/partial'), { recursive: true });
  for (const f of ['var/cache/apt/pkgcache.bin', 'var/cache/apt/srcpkgcache.bin']) fs.rmSync(path.join(rootfs, f), { force: true });
  for (const f of ['etc/machine-id', 'etc/hostname', 'etc/hosts', 'etc/resolv.conf']) {
    fs.rmSync(path.join(rootfs, f), { force: true });
    fs.writeFileSync(path.join(rootfs, f), '');
    fs.chmodSync(path.join(rootfs, f), 0o644);
  }
  fs.chmodSync(path.join(rootfs, 'tmp'), 0o1777);
}

// `node test/harness/base-images.mjs [name...]`: build (or check) the cached images now.
if (process.argv[1] && path.resolve(process.argv[1]) === path.join(HERE, 'base-images.mjs')) {
  const names = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(RECIPES);
  for (const n of names) {
    const t = Date.now();
    const img = baseImage(n);
    process.stdout.write(`${n}: ${img.layout} (tag ${img.tag}); first build took ${img.seconds}s; this call ${((Date.now() - t) / 1000).toFixed(1)}s\n`);
  }
}
