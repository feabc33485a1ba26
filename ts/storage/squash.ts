/**
 * One-file images (docs/hpc-images.md): a squashfs made by `burrow image convert`, or an
 * Apptainer/Singularity SIF, run without unpacking. The runtime's init mounts the file system
 * with squashfuse inside the container's user namespace (the kernel's squashfs cannot be mounted
 * there) and the container's union (kernel overlay, else fuse-overlayfs) puts a writable layer
 * in the container's directory on top (`run.burrow.rootfs.squashfuse*`,
 * crates/burrow-core/src/runtime/rootfs.rs).
 *
 * What a file carries besides its tree:
 *   squashfs  `/.burrow/config.json`, the image's config blob as `image convert` found it
 *             (Env, Entrypoint, Cmd, User, WorkingDir); without it a command must be given.
 *   SIF       its primary system partition (a squashfs at an offset in the file); the default
 *             command is `/.singularity.d/runscript`, run through a /bin/sh wrapper that first
 *             sources `/.singularity.d/env/*.sh` (as Apptainer's actions do), for a given
 *             command too.
 *
 * Owners: a squashfs holds the container's ids (0 for root, 1000 for a user of the image), as
 * `burrow export` writes them; squashfuse, running in the container's user namespace, hands
 * them to the kernel, which maps them through the container's id map (single-id mode: ids other
 * than 0 show as nobody, as for every other driver there).
 */
import type * as ChildProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import type { ImageConfig } from '../image/manifest';
import { ustarHeader } from '../image/tar';
import { sha256Hex } from '../native';
import { mkdirp, writeJsonAtomic } from './fsutil';
import type { RootfsPlan } from './rootfs';
import { fuseOverlayfsProgram } from './rootfs';
import { localRoot } from './settings';
import type { ImageRecord, StorageSettings } from './store';

// node:child_process is required when used, not imported (and hashes go through the addon:
// sha256Hex): every `burrow run` loads this module (openFileImageArg), and loading node:crypto
// and node:child_process (with node:net and node:stream under it) cost a run of a store image
// several milliseconds it never needed.
function childProcess(): typeof ChildProcess {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('node:child_process') as typeof ChildProcess;
}

export type FileImageKind = 'squashfs' | 'sif';

export interface FileImage {
  kind: FileImageKind;
  /** Absolute path of the file. */
  file: string;
  /** Where the squashfs starts in it (a SIF's partition; 0 for a plain squashfs). */
  offset: number;
  config: ImageConfig;
  /** A stand-in record for what a container keeps of its image (id, name, platform). */
  record: ImageRecord;
  /** Its /etc/passwd and /etc/group, for user lookups. */
  etc: { passwd: Buffer | undefined; group: Buffer | undefined };
}

/** Where burrow keeps an image's config inside a squashfs it made. */
export const CONFIG_PATH = '/.burrow/config.json';

const SQUASH_MAGIC = Buffer.from('hsqs');
const SIF_MAGIC = Buffer.from('SIF_MAGIC\0');
/** The /bin/sh wrapper of a SIF's commands: its environment scripts, then the command. */
export const SIF_ENTRYPOINT = ['/bin/sh', '-c', 'for f in /.singularity.d/env/*.sh; do if [ -f "$f" ]; then . "$f"; fi; done; exec "$@"', 'sif'];
export const SIF_RUNSCRIPT = '/.singularity.d/runscript';

/** A one-file image opened once: its descriptor and fstat serve every later check of the file. */
export interface OpenedFile {
  /** Absolute path of the file. */
  file: string;
  fd: number;
  st: fs.Stats;
}

/**
 * A `run`/`create` argument that names a one-file image rather than an image reference (an
 * existing regular file, named as a path, with a `/`, or by a one-file image's suffix), opened;
 * undefined for anything else. One open and one fstat: on a parallel file system each lookup of
 * the file is a request to its metadata servers, so it is not looked up again to read its
 * headers. O_NONBLOCK and O_NOCTTY: a FIFO or a terminal named by mistake is not waited on or
 * taken as the controlling terminal; it is then refused as not a regular file.
 */
export function openFileImageArg(arg: string): OpenedFile | undefined {
  if (!(arg.includes('/') || /\.(sqfs|squashfs|sif)$/.test(arg))) return undefined;
  const file = path.resolve(arg);
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch {
    return undefined;
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isFile()) return { file, fd, st };
  } catch {
    /* not usable: an image reference then */
  }
  fs.closeSync(fd);
  return undefined;
}

/** Whether a `run`/`create` argument names a one-file image (see openFileImageArg). */
export function isFileImageArg(arg: string): boolean {
  const f = openFileImageArg(arg);
  if (f) fs.closeSync(f.fd);
  return f !== undefined;
}

/** Whether `file` starts as a SIF does (its magic after the launch line). */
export function isSifFile(file: string): boolean {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      return readAt(fd, 32, 10).equals(SIF_MAGIC);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

function bad(file: string, why: string, fix?: string): BurrowError {
  return new BurrowError('EFILE_IMAGE', `${file}: ${why}`, fix);
}

function readAt(fd: number, pos: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  const n = fs.readSync(fd, b, 0, len, pos);
  return b.subarray(0, n);
}

/**
 * The squashfs superblock at `offset`: its magic, and its size (bytes_used) against the file's,
 * so that a truncated copy (an interrupted transfer to a parallel file system) is refused here,
 * with its cause, rather than failing inside the container on the first read past the end.
 */
function checkSquashfs(fd: number, file: string, offset: number, end: number): void {
  const sb = readAt(fd, offset, 96);
  if (sb.length < 96 || !sb.subarray(0, 4).equals(SQUASH_MAGIC)) throw bad(file, offset ? `no squashfs at offset ${offset}` : 'not a squashfs or SIF image (no squashfs or SIF magic at its start)', 'give a file made by `burrow image convert --format squashfs`, mksquashfs or Apptainer');
  const major = sb.readUInt16LE(28);
  if (major !== 4) throw bad(file, `squashfs version ${major}.x: only 4.x is supported`);
  const used = Number(sb.readBigUInt64LE(40));
  if (offset + used > end) throw bad(file, `truncated: its squashfs needs ${offset + used} bytes, the ${offset ? 'partition' : 'file'} has ${end}`, 'copy the file again');
}

interface SifPartition {
  offset: number;
  size: number;
}

/**
 * A SIF's primary system partition (github.com/sylabs/sif, pkg/sif: a little-endian global
 * header of 128 bytes, then descriptors of 585 bytes each). Only what is needed is read: the
 * descriptors' table, and in it the used partition descriptor whose type is the primary system
 * one (PartPrimSys) with a squashfs (FsSquash).
 */
function sifPartition(fd: number, file: string, size: number): SifPartition {
  const h = readAt(fd, 0, 128);
  if (h.length < 128) throw bad(file, 'truncated: shorter than a SIF header', 'copy the file again');
  const version = h.subarray(42, 45).toString('latin1').replace(/\0.*$/, '');
  if (version !== '01') throw bad(file, `SIF version ${JSON.stringify(version)}: only 01 is supported`);
  const total = Number(h.readBigInt64LE(88));
  const descOff = Number(h.readBigInt64LE(96));
  const DESC = 585;
  if (total < 0 || total > 4096 || descOff < 128 || descOff + total * DESC > size) throw bad(file, 'truncated or damaged: its descriptors lie outside the file', 'copy the file again');
  const table = readAt(fd, descOff, total * DESC);
  const PARTITION = 0x4004;
  const FS_SQUASH = 1;
  const FS_ENCRYPTED_SQUASH = 5;
  const PART_PRIMSYS = 2;
  let encrypted = false;
  for (let i = 0; i < total; i++) {
    const d = table.subarray(i * DESC, (i + 1) * DESC);
    if (d.readInt32LE(0) !== PARTITION || d[4] === 0) continue;
    const fstype = d.readInt32LE(201);
    const parttype = d.readInt32LE(205);
    if (parttype !== PART_PRIMSYS) continue;
    if (fstype === FS_ENCRYPTED_SQUASH) encrypted = true;
    if (fstype !== FS_SQUASH) continue;
    const offset = Number(d.readBigInt64LE(17));
    const len = Number(d.readBigInt64LE(25));
    if (offset + len > size) throw bad(file, `truncated: its system partition ends at ${offset + len}, the file has ${size} bytes`, 'copy the file again');
    return { offset, size: len };
  }
  throw bad(file, encrypted ? 'its system partition is encrypted: burrow cannot decrypt it' : 'no primary system partition with a squashfs in this SIF', encrypted ? undefined : 'Apptainer images have one; a data-only SIF cannot be run');
}

/** The program of a squashfs tool on PATH, or an error naming the package. */
export function squashTool(name: 'mksquashfs' | 'unsquashfs' | 'squashfuse' | 'squashfuse_ll'): string | undefined {
  for (const d of (process.env.PATH ?? '').split(':').filter((x) => path.isAbsolute(x)).concat(['/usr/bin', '/usr/sbin'])) {
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

function needTool(name: 'mksquashfs' | 'unsquashfs'): string {
  const p = squashTool(name);
  if (!p) throw new BurrowError('ESQUASH_TOOL', `${name} is not installed`, 'install squashfs-tools (Debian: apt-get install squashfs-tools)');
  return p;
}

/**
 * The few files burrow reads from an image before it runs (its config, /etc/passwd, /etc/group),
 * extracted without mounting by one unsquashfs into a temporary directory and read back: one
 * process per create, not one per file (a container start pays for it).
 */
function readFiles(file: string, offset: number, inner: string[]): Map<string, Buffer> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-sqfs-'));
  try {
    const r = childProcess().spawnSync(needTool('unsquashfs'), ['-n', '-q', '-d', path.join(tmp, 'x'), '-o', String(offset), file, ...inner], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    if (r.status !== 0) throw bad(file, `unsquashfs cannot read it: ${(r.stderr || `exit ${r.status}`).trim().split('\n').pop()}`, 'copy the file again, or make it again');
    const out = new Map<string, Buffer>();
    for (const i of inner) {
      try {
        out.set(i, fs.readFileSync(path.join(tmp, 'x', i)));
      } catch {
        /* not in the image */
      }
    }
    return out;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** How old a file's last change must be before what was read from it is kept (see readFilesKept; run plans too). */
export const SETTLED_MS = 2000;

/**
 * readFiles, kept per path in `dir` (the store's `file-images/`) and used again while the file is
 * the same one: device, inode, size, modification and change time all as they were. A job array
 * starts one file hundreds of times; each start then reads one small JSON file instead of running
 * unsquashfs (a process and a temporary tree: about a tenth of a start's own time). A file
 * rewritten in place has a new change time, which no user can set back; a replaced one a new
 * inode. What is read from a file changed less than SETTLED_MS ago is not kept: on a file system
 * whose times are coarse (one or two seconds on some NFS servers), a second change within the
 * same tick would leave the time as it was (git's "racy" index entries).
 */
function readFilesKept(file: string, offset: number, inner: string[], st: fs.Stats, dir: string | undefined): Map<string, Buffer> {
  if (!dir) return readFiles(file, offset, inner);
  const key = [st.dev, st.ino, st.size, st.mtimeMs, st.ctimeMs, offset, ...inner].join(' ');
  const entry = path.join(dir, `${sha256Hex(file)}.json`);
  try {
    const e: unknown = JSON.parse(fs.readFileSync(entry, 'utf8'));
    if (isKept(e) && e.key === key) return new Map(Object.entries(e.files).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
  } catch {
    /* none yet, or unreadable: read the file */
  }
  const files = readFiles(file, offset, inner);
  if (Date.now() - st.ctimeMs >= SETTLED_MS) {
    try {
      mkdirp(dir);
      // Not fsynced: an entry lost or emptied by a crash is read as none.
      writeJsonAtomic(entry, { key, file, files: Object.fromEntries([...files].map(([k, v]) => [k, v.toString('base64')])) } satisfies Kept, { durable: false });
    } catch {
      /* a store we cannot write to: the next start reads the file again */
    }
  }
  return files;
}

interface Kept {
  key: string;
  /** The path, for whoever looks into the directory. */
  file: string;
  /** The files found (base64), by their path inside the image. */
  files: Record<string, string>;
}

function isKept(v: unknown): v is Kept {
  const e = v as Kept;
  return typeof v === 'object' && v !== null && typeof e.key === 'string' && typeof e.files === 'object' && e.files !== null && Object.values(e.files).every((x) => typeof x === 'string');
}

function openOrRefuse(arg: string): OpenedFile {
  const file = path.resolve(arg);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw bad(file, `cannot open it: ${(err as Error).message}`);
  }
  try {
    return { file, fd, st: fs.fstatSync(fd) };
  } catch (err) {
    fs.closeSync(fd);
    throw bad(file, `cannot stat it: ${(err as Error).message}`);
  }
}

/**
 * What a file is and where its squashfs starts, from its headers alone (nothing is mounted or
 * extracted): a squashfs at 0, or a SIF's primary system partition; refused with the cause.
 */
export function locateSquashfs(arg: string | OpenedFile): { file: string; kind: FileImageKind; offset: number; st: fs.Stats } {
  const { file, fd, st } = typeof arg === 'string' ? openOrRefuse(arg) : arg;
  try {
    const head = readAt(fd, 0, 64);
    if (head.subarray(0, 4).equals(SQUASH_MAGIC)) {
      checkSquashfs(fd, file, 0, st.size);
      return { file, kind: 'squashfs', offset: 0, st };
    }
    if (head.subarray(32, 42).equals(SIF_MAGIC)) {
      const p = sifPartition(fd, file, st.size);
      checkSquashfs(fd, file, p.offset, p.offset + p.size);
      return { file, kind: 'sif', offset: p.offset, st };
    }
    throw bad(file, 'not a squashfs or SIF image (no squashfs or SIF magic at its start)', 'give a file made by `burrow image convert --format squashfs`, mksquashfs or Apptainer');
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Opens a one-file image: what it is, where its squashfs is, and the config its containers get.
 * Every refusal (not such a file, truncated, no system partition) names the file and the cause.
 * `keepIn`: a directory where what was read from the file is kept for the next start of the
 * same file (readFilesKept).
 */
export async function openFileImage(arg: string | OpenedFile, opts: { keepIn?: string } = {}): Promise<FileImage> {
  const { file, kind, offset, st } = locateSquashfs(arg);
  const files = readFilesKept(file, offset, kind === 'sif' ? ['/etc/passwd', '/etc/group'] : [CONFIG_PATH, '/etc/passwd', '/etc/group'], st, opts.keepIn);
  let config: ImageConfig;
  if (kind === 'sif') {
    config = { architecture: process.arch === 'x64' ? 'amd64' : process.arch, os: 'linux', config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Entrypoint: SIF_ENTRYPOINT, Cmd: [SIF_RUNSCRIPT] } } as ImageConfig;
  } else {
    const bytes = files.get(CONFIG_PATH);
    const { parseImageConfig } = await import('../image/manifest');
    config = bytes ? parseImageConfig(bytes) : ({ architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] } } as ImageConfig);
  }
  // The file's identity as far as a container record needs one: its path, size and mtime.
  const id = `sha256:${sha256Hex(`${file}\0${st.size}\0${st.mtimeMs}`)}`;
  const record: ImageRecord = {
    id,
    configDigest: id,
    manifestDigest: id,
    manifestMediaType: kind === 'sif' ? 'application/vnd.sylabs.sif' : 'application/vnd.burrow.squashfs',
    layers: [],
    repoTags: [],
    repoDigests: [],
    os: 'linux',
    architecture: config.architecture ?? 'amd64',
    size: st.size,
    pulledAt: new Date(st.mtimeMs).toISOString(),
  };
  return { kind, file, offset, config, record, etc: { passwd: files.get('/etc/passwd'), group: files.get('/etc/group') } };
}

/**
 * The container's root for a one-file image: the file mounted by squashfuse on `lower`, with the
 * store's union driver on top and its writable part where the other drivers keep theirs. The
 * copy driver has no union: there fuse-overlayfs is used when installed, else the run is refused.
 */
export function planSquashRootfs(settings: StorageSettings, img: FileImage, id: string, containerDir: string): RootfsPlan {
  const program = squashTool('squashfuse_ll') ?? squashTool('squashfuse');
  if (!program) throw new BurrowError('ESQUASH_TOOL', 'squashfuse is not installed: a one-file image is mounted with it', 'install squashfuse (Debian: apt-get install squashfuse)');
  if (!fs.existsSync('/dev/fuse')) throw new BurrowError('ESQUASH_TOOL', '/dev/fuse does not exist: squashfuse cannot mount the image', 'load the fuse module (modprobe fuse)');
  let driver = settings.driver;
  const fuseProgram = driver === 'overlay' ? undefined : fuseOverlayfsProgram();
  if (driver === 'copy') {
    if (!fuseProgram) throw new BurrowError('ESTORAGE_DRIVER', 'the copy storage driver has no union to put over a one-file image, and fuse-overlayfs is not installed', 'install fuse-overlayfs, or use a store whose driver is overlay');
    driver = 'fuse-overlayfs';
  }
  const local = localRoot(settings);
  const dir = local ? path.join(local, 'containers', id) : containerDir;
  for (const d of ['lower', 'upper', 'work']) mkdirp(path.join(dir, d), 0o755);
  const options = `lowerdir=${path.join(dir, 'lower')},upperdir=${path.join(dir, 'upper')},workdir=${path.join(dir, 'work')}`;
  const squash = {
    'run.burrow.rootfs.squashfuse': img.file,
    'run.burrow.rootfs.squashfuse.offset': String(img.offset),
    'run.burrow.rootfs.squashfuse.lower': path.join(dir, 'lower'),
    'run.burrow.rootfs.squashfuse.program': program,
  };
  const record = { driver, dir };
  if (driver === 'overlay') return { record, overlay: { options, cwd: dir }, annotations: squash };
  if (!fuseProgram) throw new BurrowError('ESTORAGE_DRIVER', 'storage driver fuse-overlayfs cannot work here: fuse-overlayfs is not installed', 'install fuse-overlayfs');
  // noacl: fuse-overlayfs passes the kernel's ACL lookups on to the lower layer, and squashfuse
  // answers system.posix_acl_access with EOPNOTSUPP (not ENODATA), which the kernel's permission
  // check of a file owned by another user than the caller then returns: root inside could not
  // open a directory of uid 1000. Without ACL support the kernel checks the modes only.
  return { record, annotations: { ...squash, 'run.burrow.rootfs.fuse-overlayfs': `${options},noacl`, 'run.burrow.rootfs.fuse-overlayfs.program': fuseProgram } };
}

/** A tar header block for the prelude of a conversion's stream (ustar, owner 0:0, dated now). */
const tarHeader = (name: string, size: number, type: '0' | '5', mode: number): Buffer => ustarHeader(name, size, type, mode, Math.floor(Date.now() / 1000));

/**
 * The entries that go before the image's own tree: `/.burrow/` and its config.json. A tar
 * stream has no end marker before its two zero blocks, so these are simply written first.
 */
export function configPrelude(configBytes: Buffer): Buffer {
  const pad = (512 - (configBytes.length % 512)) % 512;
  return Buffer.concat([tarHeader('.burrow/', 0, '5', 0o755), tarHeader('.burrow/config.json', configBytes.length, '0', 0o444), configBytes, Buffer.alloc(pad, 0)]);
}

export interface SquashWriter {
  /** mksquashfs's stdin: the flattened tree as a tar stream. */
  stdin: NodeJS.WritableStream;
  /** Resolves once mksquashfs made the file (renamed into place); rejects with its error. */
  done: Promise<void>;
  /** Stops it and removes the partial file. */
  abort(): void;
  /** Its own failure, when it ended by itself before abort(): the cause to report. */
  failure(): Error | undefined;
}

/**
 * mksquashfs reading a tar on its stdin (`-tar`, which Debian 12's 4.5.1 has): the tree never
 * lands on disk, and mksquashfs compresses with `processors` threads. The file is written under
 * a temporary name beside `out` and renamed when complete, so `out` is never a partial image.
 */
export function squashWriter(out: string, processors: number): SquashWriter {
  const mk = needTool('mksquashfs');
  const dest = path.resolve(out);
  if (fs.existsSync(dest) && fs.statSync(dest).isDirectory()) throw new BurrowError('EUSAGE', `${dest} is a directory: give the file to write`);
  if (!fs.existsSync(path.dirname(dest))) throw new BurrowError('EUSAGE', `cannot write ${dest}: directory ${path.dirname(dest)} does not exist`, 'create it first');
  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.tmp-${process.pid}`);
  fs.rmSync(tmp, { force: true });
  // -root-*: a tar's `./` entry is skipped by mksquashfs, whose root would otherwise be 0777.
  const args = ['-', tmp, '-tar', '-noappend', '-quiet', '-no-progress', '-processors', String(processors), '-root-mode', '0755', '-root-uid', '0', '-root-gid', '0'];
  const child = childProcess().spawn(mk, args, { stdio: ['pipe', 'ignore', 'pipe'] });
  let aborted = false;
  let failed: Error | undefined;
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  // A failing mksquashfs closes its stdin: the writer's error is the process's, reported below.
  child.stdin.on('error', () => undefined);
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (e) => reject(new BurrowError('ESQUASH_TOOL', `cannot run ${mk}: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) {
        try {
          fs.renameSync(tmp, dest);
          resolve();
        } catch (e) {
          fs.rmSync(tmp, { force: true });
          reject(new BurrowError('ESQUASH_TOOL', `cannot put the squashfs in place at ${dest}: ${(e as Error).message}`));
        }
        return;
      }
      fs.rmSync(tmp, { force: true });
      if (!aborted) failed = new BurrowError('ESQUASH_TOOL', `mksquashfs failed (${signal ?? `exit ${code}`}): ${err.trim().split('\n').slice(-3).join('; ') || 'no message'}`);
      reject(failed ?? new BurrowError('ESQUASH_TOOL', `mksquashfs failed (${signal ?? `exit ${code}`}): ${err.trim().split('\n').slice(-3).join('; ') || 'no message'}`));
    });
  });
  // Awaited only once the tree is written: until then a failure must not be an unhandled one.
  done.catch(() => undefined);
  return {
    stdin: child.stdin,
    done,
    abort: () => {
      aborted = true;
      child.kill('SIGKILL');
    },
    failure: () => failed,
  };
}
